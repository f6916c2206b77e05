package uml

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
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
	for _, tool := range []struct{ name, pkg string }{{"apt-get", "apt"}, {"dpkg-deb", "dpkg"}, {"patchelf", "patchelf"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return Kernel{}, fmt.Errorf("%s not found: run `apt-get install %s`", tool.name, tool.pkg)
		}
	}
	apt := filepath.Join(umlDir(cacheDir), "apt", suite)
	for _, d := range []string{filepath.Join(apt, "lists", "partial"), filepath.Join(apt, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Kernel{}, err
		}
	}
	sources := filepath.Join(apt, "sources.list")
	if err := os.WriteFile(sources, fmt.Appendf(nil, "deb %s %s main\n", Mirror, suite), 0o644); err != nil {
		return Kernel{}, err
	}
	opts := []string{
		"-o", "Dir::Etc::sourcelist=" + sources, "-o", "Dir::Etc::sourceparts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(apt, "lists"), "-o", "Dir::Cache=" + filepath.Join(apt, "cache"),
		"-o", "APT::Sandbox::User=root", "-q",
	}
	run := func(dir, name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	progress(fmt.Sprintf("UML: reading Debian %s's package list (private to %s)", suite, apt))
	if _, err := run(apt, "apt-get", append(opts, "update")...); err != nil {
		return Kernel{}, err
	}
	dl, err := os.MkdirTemp(umlDir(cacheDir), "download-")
	if err != nil {
		return Kernel{}, err
	}
	defer os.RemoveAll(dl)
	progress(fmt.Sprintf("UML: downloading user-mode-linux and libc6 from %s", suite))
	if _, err := run(dl, "apt-get", append(opts, "download", "user-mode-linux", "libc6")...); err != nil {
		return Kernel{}, err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	var version string
	root := filepath.Join(dl, "root")
	for _, d := range debs {
		if _, err := run(dl, "dpkg-deb", "-x", d, root); err != nil {
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
	if _, err := run(final, "patchelf", "--set-interpreter", filepath.Join(libdir, "ld-linux-x86-64.so.2"), "--set-rpath", libdir, bin); err != nil {
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
	if out, err := run(final, bin, "--version"); err != nil {
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
