package kmod

import (
	"slices"
	"testing"

	"github.com/backbone-net/backbone/internal/lab/kmod/kmodtest"
)

// fakeTree lays out a tiny lib/modules/<version> tree and returns its
// directory.
func fakeTree(t *testing.T) string {
	t.Helper()
	return kmodtest.Tree(t, t.TempDir(), "6.1.0-99-amd64")
}

func TestResolveModules(t *testing.T) {
	idx, err := LoadIndex(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	order, missing := idx.Resolve([]string{"virtio_pci", "9pnet-virtio", "9p", "overlay", "bridge", "nosuch"})
	want := []string{"virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "virtio", "virtio_pci",
		"9pnet", "9pnet_virtio", "netfs", "fscache", "9p", "overlay"}
	if !slices.Equal(order, want) {
		t.Errorf("order\n got %v\nwant %v", order, want)
	}
	if !slices.Equal(missing, []string{"nosuch"}) {
		t.Errorf("missing %v (bridge is built in, nosuch does not exist)", missing)
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[m] = i
	}
	for m := range pos {
		for _, d := range idx.Deps[m] {
			if pos[d] > pos[m] {
				t.Errorf("%s loaded before its dependency %s", m, d)
			}
		}
	}
}
