package qemu

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/backbone-net/backbone/internal/lab/debian"
)

// DefaultCacheDir holds downloaded kernels (and the KVM probe result).
const DefaultCacheDir = "/var/cache/backbone"

// kernelMeta is the Debian meta package whose dependency names the kernel.
const kernelMeta = "linux-image-amd64"

// Kernel is an unpacked kernel package ready to boot.
type Kernel struct {
	Version string // e.g. 6.1.0-56-amd64
	Vmlinuz string // absolute path of the kernel image (bzImage)
	// Vmlinux is the uncompressed ELF extracted from Vmlinuz, when that
	// worked. qemu boots it directly through its PVH entry point, which
	// skips firmware decompression: about 3 s less per boot under TCG.
	Vmlinux string
	// ModulesDir is the unpacked lib/modules directory: it contains
	// <Version>/ with modules.dep. The guest bind-mounts it on /lib/modules.
	ModulesDir string
}

// currentFile is a small KEY=VALUE file (bash can source it) naming the
// kernel to use.
func currentFile(cacheDir string) string { return filepath.Join(cacheDir, "kernel", "current") }

// LoadKernel reads the cached kernel description without downloading.
func LoadKernel(cacheDir string) (Kernel, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	b, err := os.ReadFile(currentFile(cacheDir))
	if err != nil {
		return Kernel{}, fmt.Errorf("no kernel in cache %s: %w (run scripts/setup, or `backbone lab setup`)", cacheDir, err)
	}
	k := parseCurrent(b)
	if err := k.check(); err != nil {
		return Kernel{}, fmt.Errorf("kernel cache %s is incomplete: %w (delete %s and fetch again)", cacheDir, err, currentFile(cacheDir))
	}
	return k, nil
}

func parseCurrent(b []byte) Kernel {
	var k Kernel
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		val = strings.Trim(val, `"'`)
		switch key {
		case "version":
			k.Version = val
		case "vmlinuz":
			k.Vmlinuz = val
		case "modules":
			k.ModulesDir = val
		case "vmlinux":
			k.Vmlinux = val
		}
	}
	return k
}

func formatCurrent(k Kernel) []byte {
	b := fmt.Appendf(nil, "version=%s\nvmlinuz=%s\nmodules=%s\n", k.Version, k.Vmlinuz, k.ModulesDir)
	if k.Vmlinux != "" {
		b = fmt.Appendf(b, "vmlinux=%s\n", k.Vmlinux)
	}
	return b
}

// BootImage is the file qemu's -kernel gets.
func (k Kernel) BootImage() string {
	if k.Vmlinux != "" {
		if _, err := os.Stat(k.Vmlinux); err == nil {
			return k.Vmlinux
		}
	}
	return k.Vmlinuz
}

func (k Kernel) check() error {
	if k.Version == "" || k.Vmlinuz == "" || k.ModulesDir == "" {
		return fmt.Errorf("version, vmlinuz or modules missing")
	}
	for _, p := range []string{k.Vmlinuz, filepath.Join(k.ModulesDir, k.Version, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	return nil
}

var depRe = regexp.MustCompile(`(?m)^\s*\|?Depends:\s*(linux-image-[0-9][^\s:]*)`)

// parseKernelDepends finds the versioned kernel package in the output of
// `apt-cache depends linux-image-amd64`.
func parseKernelDepends(out []byte) (string, error) {
	m := depRe.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache does not know which kernel %s depends on: run `apt-get update` (output: %s)", kernelMeta, strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}

// kernelVersionFromPackage turns linux-image-6.1.0-56-amd64 into
// 6.1.0-56-amd64.
func kernelVersionFromPackage(pkg string) string {
	v := strings.TrimPrefix(pkg, "linux-image-")
	return strings.TrimSuffix(v, "-unsigned")
}

// EnsureKernel returns the cached kernel, downloading and unpacking the
// Debian kernel package that linux-image-amd64 depends on when the cache is
// empty. It needs apt-get, apt-cache, dpkg-deb and depmod (Debian, after
// `apt-get update`). progress may be nil.
func EnsureKernel(ctx context.Context, cacheDir string, progress func(string)) (Kernel, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	if progress == nil {
		progress = func(string) {}
	}
	if k, err := LoadKernel(cacheDir); err == nil {
		if k.Vmlinux == "" {
			// A cache written by an older backbone or by hand: add the
			// uncompressed image once.
			if err := addVmlinux(ctx, &k, progress); err != nil {
				progress("kernel: " + err.Error() + "; booting the compressed image (slower)")
			} else {
				writeFileAtomic(currentFile(cacheDir), formatCurrent(k), 0o644)
			}
		}
		return k, nil
	}
	if err := debian.Require(debian.Tool{Name: "apt-get", Package: "apt"}, debian.Tool{Name: "apt-cache", Package: "apt"},
		debian.Tool{Name: "dpkg-deb", Package: "dpkg"}, debian.Tool{Name: "depmod", Package: "kmod"}); err != nil {
		return Kernel{}, fmt.Errorf("the VM kernel is fetched from Debian's archive: %w", err)
	}
	kdir := filepath.Join(cacheDir, "kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("create kernel cache: %w", err)
	}
	var system debian.Archive
	out, err := system.Depends(ctx, kernelMeta)
	if err != nil {
		return Kernel{}, fmt.Errorf("%w (run `apt-get update` first)", err)
	}
	pkg, err := parseKernelDepends(out)
	if err != nil {
		return Kernel{}, err
	}
	version := kernelVersionFromPackage(pkg)
	progress(fmt.Sprintf("downloading kernel package %s", pkg))
	dl, err := os.MkdirTemp(kdir, "download-")
	if err != nil {
		return Kernel{}, err
	}
	defer os.RemoveAll(dl)
	debs, err := system.Download(ctx, dl, pkg)
	if err != nil {
		return Kernel{}, fmt.Errorf("%w (is the Debian archive reachable, and was `apt-get update` run?)", err)
	}
	progress(fmt.Sprintf("unpacking %s", filepath.Base(debs[0])))
	root := filepath.Join(dl, "root")
	if err := debian.Unpack(ctx, debs[0], root); err != nil {
		return Kernel{}, err
	}
	// The package layout may be lib/modules or usr/lib/modules.
	modules := ""
	for _, cand := range []string{"lib/modules", "usr/lib/modules"} {
		if _, err := os.Stat(filepath.Join(root, cand, version)); err == nil {
			modules = cand
			break
		}
	}
	if modules == "" {
		return Kernel{}, fmt.Errorf("package %s has no lib/modules/%s", pkg, version)
	}
	if modules == "usr/lib/modules" {
		// depmod -b looks in BASE/lib/modules.
		if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil && !os.IsExist(err) {
			return Kernel{}, err
		}
	}
	progress(fmt.Sprintf("running depmod for %s", version))
	if _, err := debian.Command(ctx, dl, "depmod", "-b", root, version); err != nil {
		return Kernel{}, err
	}
	final := filepath.Join(kdir, version)
	os.RemoveAll(final)
	if err := os.Rename(root, final); err != nil {
		return Kernel{}, err
	}
	k := Kernel{
		Version:    version,
		Vmlinuz:    filepath.Join(final, "boot", "vmlinuz-"+version),
		ModulesDir: filepath.Join(final, modules),
	}
	if err := k.check(); err != nil {
		return Kernel{}, fmt.Errorf("unpacked kernel %s is unusable: %w", pkg, err)
	}
	if err := addVmlinux(ctx, &k, progress); err != nil {
		progress("kernel: " + err.Error() + "; booting the compressed image (slower)")
	}
	if err := writeFileAtomic(currentFile(cacheDir), formatCurrent(k), 0o644); err != nil {
		return Kernel{}, err
	}
	progress(fmt.Sprintf("kernel %s cached in %s", version, final))
	return k, nil
}

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
