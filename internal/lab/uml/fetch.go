package uml

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/backbone-net/backbone/internal/lab/debian"
)

// Kernel is a UML build unpacked in the cache.
type Kernel struct {
	// Package is the Debian package version, Suite where it came from.
	Package string `json:"package"`
	Suite   string `json:"suite"`
	// Release is the kernel release (uname -r in the guest).
	Release string `json:"release"`
	// Binary is linux.uml, patched to use the C library unpacked next to
	// it (the build needs a newer glibc than the host may have).
	Binary string `json:"binary"`
	// ModulesRoot holds lib/modules/<Release>.
	ModulesRoot string `json:"modules_root"`
	// Checked is when a guest last booted and passed the feature check.
	Checked time.Time `json:"checked,omitzero"`
}

// Suites are tried in order: which UML builds boot depends on the host
// CPU (older ones panic at the first process on CPUs with a large XSAVE
// area, e.g. with AMX).
var Suites = []string{"testing", "unstable"}

// Mirror is the Debian archive packages are fetched from.
var Mirror = "http://deb.debian.org/debian"

func umlDir(cacheDir string) string      { return filepath.Join(cacheDir, "uml") }
func currentFile(cacheDir string) string { return filepath.Join(umlDir(cacheDir), "current.json") }

// Load returns the cached kernel that passed its boot check.
func Load(cacheDir string) (Kernel, error) {
	data, err := os.ReadFile(currentFile(cacheDir))
	if err != nil {
		return Kernel{}, fmt.Errorf("no UML kernel in %s: run scripts/setup (or `backbone lab setup`)", umlDir(cacheDir))
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return Kernel{}, fmt.Errorf("%s: %w", currentFile(cacheDir), err)
	}
	if err := k.check(); err != nil {
		return Kernel{}, fmt.Errorf("UML kernel cache %s is incomplete: %w (run scripts/setup again)", umlDir(cacheDir), err)
	}
	return k, nil
}

// Save makes k the cache's kernel.
func Save(cacheDir string, k Kernel) error {
	data, _ := json.MarshalIndent(k, "", "  ")
	tmp := currentFile(cacheDir) + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, currentFile(cacheDir))
}

func (k Kernel) check() error {
	if k.Binary == "" || k.Release == "" {
		return errors.New("binary or release missing")
	}
	for _, p := range []string{k.Binary, filepath.Join(k.ModulesRoot, "lib", "modules", k.Release, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	return nil
}

// Fetch downloads user-mode-linux and the C library it needs from a
// Debian suite into the cache, without touching the system's package
// sources (a private sources list and package lists under the cache),
// and unpacks them. The result is not checked: boot it first.
func Fetch(ctx context.Context, cacheDir, suite string, progress func(string)) (Kernel, error) {
	if err := debian.Require(debian.Tool{Name: "apt-get", Package: "apt"}, debian.Tool{Name: "dpkg-deb", Package: "dpkg"}, debian.Tool{Name: "patchelf", Package: "patchelf"}); err != nil {
		return Kernel{}, err
	}
	archive := debian.Archive{Dir: filepath.Join(umlDir(cacheDir), "apt", suite), Mirror: Mirror, Suite: suite}
	progress(fmt.Sprintf("UML: reading Debian %s's package list (private to %s)", suite, archive.Dir))
	if err := archive.Update(ctx); err != nil {
		return Kernel{}, err
	}
	dl, err := os.MkdirTemp(umlDir(cacheDir), "download-")
	if err != nil {
		return Kernel{}, err
	}
	defer os.RemoveAll(dl)
	progress(fmt.Sprintf("UML: downloading user-mode-linux and libc6 from %s", suite))
	debs, err := archive.Download(ctx, dl, "user-mode-linux", "libc6")
	if err != nil {
		return Kernel{}, err
	}
	var version string
	root := filepath.Join(dl, "root")
	for _, d := range debs {
		if err := debian.Unpack(ctx, d, root); err != nil {
			return Kernel{}, err
		}
		if b := filepath.Base(d); strings.HasPrefix(b, "user-mode-linux_") {
			version = strings.Split(strings.TrimPrefix(b, "user-mode-linux_"), "_")[0]
		}
	}
	if version == "" {
		return Kernel{}, fmt.Errorf("apt-get download left no user-mode-linux package in %s", dl)
	}
	version = strings.ReplaceAll(version, "%3a", ":")
	mods, _ := filepath.Glob(filepath.Join(root, "usr", "lib", "uml", "modules", "*", "modules.dep"))
	if len(mods) != 1 {
		return Kernel{}, fmt.Errorf("user-mode-linux %s: want one usr/lib/uml/modules/<release>/modules.dep, found %d", version, len(mods))
	}
	release := filepath.Base(filepath.Dir(mods[0]))
	final := filepath.Join(umlDir(cacheDir), suite+"-"+strings.ReplaceAll(version, ":", "_"))
	libdir := filepath.Join(final, "root", "usr", "lib", "x86_64-linux-gnu")
	bin := filepath.Join(final, "linux.uml")
	// The tree is moved into place first: patchelf writes absolute paths.
	_ = os.RemoveAll(final)
	if err := os.MkdirAll(final, 0o755); err != nil {
		return Kernel{}, err
	}
	if err := os.Rename(root, filepath.Join(final, "root")); err != nil {
		return Kernel{}, err
	}
	if err := copyFile(filepath.Join(final, "root", "usr", "bin", "linux.uml"), bin, 0o755); err != nil {
		return Kernel{}, err
	}
	// Starting it through ld.so --library-path does not work (UML then
	// miscomputes its memory layout): the interpreter and rpath are
	// rewritten instead.
	if _, err := debian.Command(ctx, final, "patchelf", "--set-interpreter", filepath.Join(libdir, "ld-linux-x86-64.so.2"), "--set-rpath", libdir, bin); err != nil {
		return Kernel{}, err
	}
	modRoot := filepath.Join(final, "modroot")
	if err := os.MkdirAll(filepath.Join(modRoot, "lib", "modules"), 0o755); err != nil {
		return Kernel{}, err
	}
	if err := os.Symlink(filepath.Join(final, "root", "usr", "lib", "uml", "modules", release), filepath.Join(modRoot, "lib", "modules", release)); err != nil {
		return Kernel{}, err
	}
	k := Kernel{Package: version, Suite: suite, Release: release, Binary: bin, ModulesRoot: modRoot}
	if err := k.check(); err != nil {
		return Kernel{}, err
	}
	if out, err := debian.Command(ctx, final, bin, "--version"); err != nil {
		return Kernel{}, fmt.Errorf("%s does not run on this machine: %w", bin, err)
	} else {
		progress(fmt.Sprintf("UML: %s (%s) unpacked in %s", strings.TrimSpace(string(out)), version, final))
	}
	return k, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}
