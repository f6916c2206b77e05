package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// moduleIndex is what modules.dep and modules.builtin say about a kernel's
// modules. It is used on the host (to put the boot modules into the
// initramfs) and in the guest (to load the lab's modules without spawning a
// modprobe per module).
type moduleIndex struct {
	dir     string              // .../lib/modules/<version>
	path    map[string]string   // name -> path relative to dir
	deps    map[string][]string // name -> names it depends on
	builtin map[string]bool
}

// moduleName normalises "kernel/net/9p/9pnet_virtio.ko.xz" or "9pnet-virtio"
// to "9pnet_virtio".
func moduleName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

func loadModuleIndex(dir string) (*moduleIndex, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("read module index: %w (run `depmod -b ROOT VERSION` on the unpacked kernel, or delete the kernel cache so it is fetched again)", err)
	}
	defer f.Close()
	idx, err := parseModulesDep(f)
	if err != nil {
		return nil, err
	}
	idx.dir = dir
	if b, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer b.Close()
		sc := bufio.NewScanner(b)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				idx.builtin[moduleName(l)] = true
			}
		}
	}
	return idx, nil
}

func parseModulesDep(r io.Reader) (*moduleIndex, error) {
	idx := &moduleIndex{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := moduleName(mod)
		idx.path[name] = strings.TrimSpace(mod)
		for _, d := range strings.Fields(deps) {
			idx.deps[name] = append(idx.deps[name], moduleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse modules.dep: %w", err)
	}
	return idx, nil
}

// resolve returns the modules to load for names, dependencies first, each
// once. Built-in modules are left out. Unknown names are returned in missing.
func (idx *moduleIndex) resolve(names []string) (order []string, missing []string) {
	seen := map[string]bool{}
	var visit func(n string, stack []string) bool
	visit = func(n string, stack []string) bool {
		if seen[n] {
			return true
		}
		if idx.builtin[n] {
			seen[n] = true
			return true
		}
		if _, ok := idx.path[n]; !ok {
			return false
		}
		seen[n] = true
		for _, d := range idx.deps[n] {
			visit(d, append(stack, n))
		}
		order = append(order, n)
		return true
	}
	for _, raw := range names {
		n := moduleName(raw)
		if !visit(n, nil) {
			missing = append(missing, n)
		}
	}
	return order, missing
}

// file returns the absolute path of module name.
func (idx *moduleIndex) file(name string) string {
	return filepath.Join(idx.dir, idx.path[name])
}
