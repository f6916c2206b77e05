package layout

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestNetnsRoundTrip(t *testing.T) {
	l := ForLab("isp-6")
	for _, n := range []string{"pe101", "a-b", "underlay"} {
		ns := l.Netns(n)
		got, ok := l.NodeOfNetns(ns)
		if !ok || got != n {
			t.Errorf("NodeOfNetns(%q) = %q, %v; want %q", ns, got, ok, n)
		}
	}
	if _, ok := l.NodeOfNetns(ForLab("isp").Netns("x")); ok {
		t.Error("a namespace of lab isp was taken for one of lab isp-6")
	}
	if n, ok := ForLab("isp").NodeOfNetns(l.Netns("pe1")); ok {
		t.Errorf("lab isp-6's namespace of pe1 was taken for lab isp's node %q", n)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// The binary is copied once; a second install of the same file leaves the
// copy alone, a changed file replaces it with a new inode (a guest running
// the old one keeps it) and the copy is executable.
func TestInstallBinary(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "backbone")
	if err := os.WriteFile(src, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := Lab{Name: "t", StateDir: filepath.Join(dir, "state")}
	if err := l.InstallBinary(src); err != nil {
		t.Fatal(err)
	}
	first := inode(t, l.Binary())
	if err := l.InstallBinary(src); err != nil {
		t.Fatal(err)
	}
	if inode(t, l.Binary()) != first {
		t.Error("an unchanged binary was copied again")
	}
	if err := os.WriteFile(src, []byte("v2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(src, later, later); err != nil {
		t.Fatal(err)
	}
	if err := l.InstallBinary(src); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(l.Binary())
	if err != nil || string(data) != "v2, longer" {
		t.Fatalf("installed binary = %q, %v", data, err)
	}
	if inode(t, l.Binary()) == first {
		t.Error("the changed binary was written into the old inode")
	}
	if fi, _ := os.Stat(l.Binary()); fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("installed binary mode %v is not executable", fi.Mode())
	}
}
