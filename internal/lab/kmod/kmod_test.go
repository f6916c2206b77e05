package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeTree lays out a tiny lib/modules/<version> tree with a modules.dep
// shaped like Debian's and returns its directory.
func fakeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-99-amd64")
	dep := `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/overlayfs/overlay.ko:
kernel/net/mpls/mpls_router.ko: kernel/net/ipv4/ip_tunnel.ko
kernel/net/ipv4/ip_tunnel.ko:
`
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		mod, _, _ := strings.Cut(line, ":")
		p := filepath.Join(dir, mod)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("fake "+mod), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/bridge/bridge.ko\n"), 0o644)
	return dir
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
