// Package features proves that a kernel can run the lab: each feature
// (MPLS forwarding and label push, VRF, ip6gre, VXLAN, ESP with the AEAD
// cipher, veth, dummy) is used for real in a throwaway network namespace.
package features

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/backbone-net/backbone/internal/lab/netconf"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// Feature is one kernel capability the lab needs.
type Feature struct {
	Name   string `json:"name"`
	Module string `json:"module"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// Check loads modules where the kernel can load them, then proves each
// feature by using it in a throwaway network namespace. Every feature is
// checked; Required keeps the ones a lab needs.
func Check(modules []string) []Feature {
	if path, err := exec.LookPath("modprobe"); err == nil {
		for _, m := range modules {
			_ = exec.Command(path, "-q", m).Run()
		}
	}
	var out []Feature
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread is discarded
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			out = append(out, Feature{Name: "network namespaces", OK: false, Error: err.Error()})
			return
		}
		out = probeFeatures()
	}()
	<-done
	return out
}

// Modules are the modules the checks exercise.
func Modules() []string {
	return []string{"veth", "dummy", "vrf", "ip6_gre", "vxlan", "mpls_router", "mpls_iptunnel", "esp6", "xfrm_user", "chacha20poly1305"}
}

// Required keeps the features whose module is among modules (and those
// that need no module).
func Required(fs []Feature, modules []string) []Feature {
	need := map[string]bool{}
	for _, m := range modules {
		need[m] = true
	}
	var out []Feature
	for _, f := range fs {
		if need[f.Module] || f.Module == "" {
			out = append(out, f)
		}
	}
	return out
}

// Missing returns the features that failed.
func Missing(fs []Feature) []Feature {
	var out []Feature
	for _, f := range fs {
		if !f.OK {
			out = append(out, f)
		}
	}
	return out
}

func probeFeatures() []Feature {
	check := func(name, module string, fn func() error) Feature {
		err := fn()
		f := Feature{Name: name, Module: module, OK: err == nil}
		if err != nil {
			f.Error = err.Error()
		}
		return f
	}
	lo, _ := netlink.LinkByName("lo")
	if lo != nil {
		_ = netlink.LinkSetUp(lo)
	}
	return []Feature{
		check("veth", "veth", func() error {
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bbchk0"}, PeerName: "bbchk1"})
		}),
		check("dummy", "dummy", func() error {
			return netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "bbchk2"}})
		}),
		check("VRF", "vrf", func() error {
			return netlink.LinkAdd(&netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: "bbchk3"}, Table: 4242})
		}),
		check("ip6gre", "ip6_gre", func() error {
			return netconf.AddIP6GRE(linux.Device{Name: "bbchk4", Kind: linux.KindIP6GRE, Local: netip.MustParseAddr("fd00::1"), Remote: netip.MustParseAddr("fd00::2"), TTL: 64, EncapLimitNone: true})
		}),
		check("VXLAN", "vxlan", func() error {
			return netlink.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "bbchk5"}, VxlanId: 42, SrcAddr: net.ParseIP("fd00::1"), Group: net.ParseIP("fd00::2"), Port: 4789})
		}),
		check("MPLS forwarding", "mpls_router", func() error {
			if _, err := os.Stat("/proc/sys/net/mpls/platform_labels"); err != nil {
				return errors.New("no /proc/sys/net/mpls: the kernel has no MPLS_ROUTING")
			}
			return netconf.Sysctl("net.mpls.platform_labels", "1000")
		}),
		check("MPLS tunnels (label push)", "mpls_iptunnel", func() error {
			if lo == nil {
				return errors.New("no loopback")
			}
			_, dst, _ := net.ParseCIDR("10.255.255.0/24")
			return netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Encap: &netlink.MPLSEncap{Labels: []int{100}}})
		}),
		check("ESP over IPv6 (chacha20poly1305)", "esp6", func() error {
			return netlink.XfrmStateAdd(&netlink.XfrmState{
				Src: net.ParseIP("fd00::1"), Dst: net.ParseIP("fd00::2"), Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TRANSPORT, Spi: 0x100,
				Aead: &netlink.XfrmStateAlgo{Name: "rfc7539esp(chacha20,poly1305)", Key: make([]byte, 36), ICVLen: 128},
			})
		}),
	}
}

// FormatMissing explains missing features and what to do about them.
func FormatMissing(missing []Feature) string {
	var parts []string
	for _, f := range missing {
		parts = append(parts, fmt.Sprintf("%s (module %s: %s)", f.Name, f.Module, f.Error))
	}
	return strings.Join(parts, "; ")
}
