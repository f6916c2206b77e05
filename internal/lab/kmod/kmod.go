// Package kmod reads a kernel's module index (modules.dep, modules.builtin)
// and loads modules with their dependencies through finit_module, without
// a modprobe per module: on the host (to pick the qemu initramfs modules)
// and inside the lab's guests (qemu and UML).
package kmod

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Index is what modules.dep and modules.builtin say about a kernel's
// modules. It is used on the host (to put the boot modules into the
// initramfs) and in the guest (to load the lab's modules without spawning a
// modprobe per module).
type Index struct {
	dir     string              // .../lib/modules/<version>
	path    map[string]string   // name -> path relative to dir
	Deps    map[string][]string // name -> names it depends on
	builtin map[string]bool
}

// Name normalises "kernel/net/9p/9pnet_virtio.ko.xz" or "9pnet-virtio"
// to "9pnet_virtio".
func Name(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

func LoadIndex(dir string) (*Index, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("read module index: %w (run `depmod -b ROOT VERSION` on the unpacked kernel, or delete the kernel cache so it is fetched again)", err)
	}
	defer f.Close()
	idx, err := ParseDep(f)
	if err != nil {
		return nil, err
	}
	idx.dir = dir
	if b, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer b.Close()
		sc := bufio.NewScanner(b)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				idx.builtin[Name(l)] = true
			}
		}
	}
	return idx, nil
}

func ParseDep(r io.Reader) (*Index, error) {
	idx := &Index{path: map[string]string{}, Deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := Name(mod)
		idx.path[name] = strings.TrimSpace(mod)
		for _, d := range strings.Fields(deps) {
			idx.Deps[name] = append(idx.Deps[name], Name(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse modules.dep: %w", err)
	}
	return idx, nil
}

// Resolve returns the modules to load for names, dependencies first, each
// once. Built-in modules are left out. Unknown names are returned in missing.
func (idx *Index) Resolve(names []string) (order []string, missing []string) {
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
		for _, d := range idx.Deps[n] {
			visit(d, append(stack, n))
		}
		order = append(order, n)
		return true
	}
	for _, raw := range names {
		n := Name(raw)
		if !visit(n, nil) {
			missing = append(missing, n)
		}
	}
	return order, missing
}

// File returns the absolute path of module name.
func (idx *Index) File(name string) string {
	return filepath.Join(idx.dir, idx.path[name])
}

// Load loads names and their dependencies with finit_module, in
// process (no modprobe per module: process starts are slow under
// emulation) and in parallel where the dependency graph allows. Names the
// kernel lacks or that fail are reported, not fatal.
func Load(dir string, names []string) (loaded []string, errs map[string]string) {
	errs = map[string]string{}
	idx, err := LoadIndex(dir)
	if err != nil {
		for _, n := range names {
			errs[Name(n)] = err.Error()
		}
		return nil, errs
	}
	order, missing := idx.Resolve(names)
	for _, m := range missing {
		errs[m] = "not in this kernel"
	}
	done := make(map[string]chan struct{}, len(order))
	for _, m := range order {
		done[m] = make(chan struct{})
	}
	var (
		mu      sync.Mutex
		results = map[string]error{}
		wg      sync.WaitGroup
		sem     = make(chan struct{}, runtime.NumCPU())
	)
	for _, m := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[m])
			var err error
			for _, d := range idx.Deps[m] {
				ch, ok := done[d]
				if !ok {
					continue // built in
				}
				<-ch
				mu.Lock()
				derr := results[d]
				mu.Unlock()
				if derr != nil && err == nil {
					err = fmt.Errorf("dependency %s failed", d)
				}
			}
			if err == nil {
				sem <- struct{}{}
				err = finit(idx.File(m))
				<-sem
			}
			mu.Lock()
			results[m] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	for m, err := range results {
		if err != nil {
			errs[m] = err.Error()
		}
	}
	for _, n := range names {
		if _, bad := errs[Name(n)]; !bad {
			loaded = append(loaded, Name(n))
		}
	}
	return loaded, errs
}

func finit(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags = 4 // MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err == nil || err == unix.EEXIST {
		return nil
	}
	return fmt.Errorf("finit_module %s: %w", filepath.Base(path), err)
}
