// Package debian fetches packages from Debian's archive into backbone's
// cache and unpacks them there, without installing them and without
// changing the system's package sources: the qemu backends' kernel and
// the UML backend's user-mode-linux come this way.
package debian

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Tool is a program a fetch needs and the package that provides it.
type Tool struct{ Name, Package string }

// Require reports the first missing tool and how to install it.
func Require(tools ...Tool) error {
	for _, t := range tools {
		if _, err := exec.LookPath(t.Name); err != nil {
			return fmt.Errorf("%s not found: run `apt-get install %s`", t.Name, t.Package)
		}
	}
	return nil
}

// Archive is where packages come from: the system's package lists (Dir
// empty; they must be current: `apt-get update`), or package lists of
// one Suite of Mirror kept privately under Dir.
type Archive struct {
	Dir    string
	Mirror string
	Suite  string
}

// options are apt's options for the archive: a private sources list and
// lists under Dir; the download sandbox user root in every case (apt
// would otherwise warn that _apt cannot write to the download directory).
func (a Archive) options() []string {
	opts := []string{"-q", "-o", "APT::Sandbox::User=root"}
	if a.Dir == "" {
		return opts
	}
	return append(opts,
		"-o", "Dir::Etc::sourcelist="+filepath.Join(a.Dir, "sources.list"), "-o", "Dir::Etc::sourceparts=/dev/null",
		"-o", "Dir::State::Lists="+filepath.Join(a.Dir, "lists"), "-o", "Dir::Cache="+filepath.Join(a.Dir, "cache"))
}

// Update reads a private archive's package lists (the system's are the
// system's business).
func (a Archive) Update(ctx context.Context) error {
	if a.Dir == "" {
		return nil
	}
	for _, d := range []string{filepath.Join(a.Dir, "lists", "partial"), filepath.Join(a.Dir, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "sources.list"), fmt.Appendf(nil, "deb %s %s main\n", a.Mirror, a.Suite), 0o644); err != nil {
		return err
	}
	_, err := Command(ctx, a.Dir, "apt-get", append(a.options(), "update")...)
	return err
}

// Depends is `apt-cache depends pkg` against the archive.
func (a Archive) Depends(ctx context.Context, pkg string) ([]byte, error) {
	return Command(ctx, "", "apt-cache", append(a.options(), "depends", pkg)...)
}

// Download fetches pkgs into dir and returns the .deb files.
func (a Archive) Download(ctx context.Context, dir string, pkgs ...string) ([]string, error) {
	if _, err := Command(ctx, dir, "apt-get", append(append(a.options(), "download"), pkgs...)...); err != nil {
		return nil, err
	}
	debs, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err == nil && len(debs) != len(pkgs) {
		err = fmt.Errorf("apt-get download %s left %d .deb files in %s, want %d", strings.Join(pkgs, " "), len(debs), dir, len(pkgs))
	}
	return debs, err
}

// Unpack extracts a .deb's files under root.
func Unpack(ctx context.Context, deb, root string) error {
	_, err := Command(ctx, filepath.Dir(deb), "dpkg-deb", "-x", deb, root)
	return err
}

// Command runs one of the programs a fetch uses in dir (C locale) and
// returns its output; its standard error is in the error.
func Command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
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
