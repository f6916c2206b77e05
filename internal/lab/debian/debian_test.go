package debian

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A private archive keeps every piece of apt state under its directory;
// the system's adds nothing but the sandbox user.
func TestOptions(t *testing.T) {
	private := Archive{Dir: "/cache/uml/apt/testing", Mirror: "http://deb.debian.org/debian", Suite: "testing"}.options()
	for _, want := range []string{
		"Dir::Etc::sourcelist=/cache/uml/apt/testing/sources.list", "Dir::Etc::sourceparts=/dev/null",
		"Dir::State::Lists=/cache/uml/apt/testing/lists", "Dir::Cache=/cache/uml/apt/testing/cache", "APT::Sandbox::User=root",
	} {
		if !slices.Contains(private, want) {
			t.Errorf("private archive options lack %s: %v", want, private)
		}
	}
	for _, o := range (Archive{}).options() {
		if strings.HasPrefix(o, "Dir::") {
			t.Errorf("the system archive sets %s", o)
		}
	}
}

func TestRequire(t *testing.T) {
	if err := Require(Tool{"sh", "dash"}); err != nil {
		t.Errorf("sh: %v", err)
	}
	err := Require(Tool{"sh", "dash"}, Tool{"no-such-tool-bb", "bb-tools"})
	if err == nil || err.Error() != "no-such-tool-bb not found: run `apt-get install bb-tools`" {
		t.Errorf("missing tool: %v", err)
	}
}

// Command's error carries the program's standard error.
func TestCommandError(t *testing.T) {
	_, err := Command(context.Background(), t.TempDir(), "sh", "-c", "echo broken archive >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "broken archive") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("err = %v", err)
	}
}

// Unpack extracts a real .deb built here with dpkg-deb.
func TestUnpack(t *testing.T) {
	if _, err := os.Stat("/usr/bin/dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	os.MkdirAll(filepath.Join(pkg, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(pkg, "usr", "lib", "x"), 0o755)
	os.WriteFile(filepath.Join(pkg, "DEBIAN", "control"), []byte("Package: bbtest\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"), 0o644)
	os.WriteFile(filepath.Join(pkg, "usr", "lib", "x", "file"), []byte("payload"), 0o644)
	deb := filepath.Join(dir, "bbtest.deb")
	if _, err := Command(context.Background(), dir, "dpkg-deb", "--build", pkg, deb); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := Unpack(context.Background(), deb, root); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr", "lib", "x", "file")); err != nil || string(b) != "payload" {
		t.Errorf("unpacked file = %q, %v", b, err)
	}
}
