// Package kmodtest lays out fake kernel module trees for tests.
package kmodtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Dep is the fake tree's modules.dep, shaped like Debian's: the virtio,
// 9p and overlay modules of the qemu initramfs, and MPLS.
const Dep = `kernel/drivers/virtio/virtio_ring.ko:
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

// Tree writes root/lib/modules/<version> with Dep, a module file for each
// entry and bridge built in, and returns that directory.
func Tree(tb testing.TB, root, version string) string {
	tb.Helper()
	dir := filepath.Join(root, "lib", "modules", version)
	for _, line := range strings.Split(strings.TrimSpace(Dep), "\n") {
		mod, _, _ := strings.Cut(line, ":")
		p := filepath.Join(dir, mod)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("fake "+mod), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for name, data := range map[string]string{"modules.dep": Dep, "modules.builtin": "kernel/net/bridge/bridge.ko\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
