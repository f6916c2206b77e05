// Package netconf applies a router's rendered Linux configuration
// (render/linux's Host) to the current network namespace through netlink:
// sysctls, devices (loopback, VRF, ip6gre, GRE, VXLAN, bridges), addresses
// and routes. It runs wherever the router's kernel is: in a namespace on
// this machine, or inside the router's guest.
package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/backbone-net/backbone/internal/render/linux"
)

// Sysctl sets a sysctl in the calling thread's network namespace.
func Sysctl(key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// PrepareNode sets what every lab namespace needs before devices appear:
// loopback up, and no IPv6 duplicate address detection (the lab's
// addresses are unique by construction; DAD would only delay convergence).
func PrepareNode() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := Sysctl(k, "0"); err != nil {
			return err
		}
	}
	return nil
}

// AddVeth creates a veth pair from the current namespace (end a) to the
// named namespace (end b).
func AddVeth(a, peerNS, b string, mtu int) error {
	ns, err := netns.GetFromName(peerNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: mtu}, PeerName: b, PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s <-> %s/%s: %w", a, peerNS, b, err)
	}
	// The peer's MTU is set by the namespace that owns it.
	return nil
}

// NoGSO makes the kernel segment what it sends through dev itself (one
// MTU-sized frame per packet, no GSO super-frames): for a device whose
// peer cannot take larger frames.
func NoGSO(dev string) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetGSOMaxSegs(link, 1); err != nil {
		return fmt.Errorf("%s: gso_max_segs 1: %w", dev, err)
	}
	return nil
}

// Apply configures the current namespace as h describes. Tunnel
// devices are created down when holdTunnels is set, so that IPsec policies
// can be loaded before the first packet leaves (fail closed from the start).
func Apply(h *linux.Host, holdTunnels bool) error {
	for _, s := range h.Sysctls {
		if s.Device == "" {
			if err := Sysctl(s.Key, s.Value); err != nil {
				return err
			}
		}
	}
	for _, g := range h.Guards {
		if err := AddGuard(g); err != nil {
			return fmt.Errorf("%s: IPsec guard %s dir %s: %w", h.Router, g.Selector(), g.Dir, err)
		}
	}
	for _, d := range h.Devices {
		if err := applyDevice(d, holdTunnels); err != nil {
			return fmt.Errorf("%s: device %s (%s): %w", h.Router, d.Name, d.Kind, err)
		}
	}
	for _, a := range h.Addresses {
		link, err := netlink.LinkByName(a.Device)
		if err != nil {
			return fmt.Errorf("%s: address %s: %w", h.Router, a.Prefix, err)
		}
		addr := &netlink.Addr{IPNet: ipNet(a.Prefix), Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: address %s on %s: %w", h.Router, a.Prefix, a.Device, err)
		}
	}
	for _, r := range h.Routes {
		if err := addRoute(r); err != nil {
			return fmt.Errorf("%s: route %s: %w", h.Router, r.Dst, err)
		}
	}
	for _, s := range h.Sysctls {
		if s.Device != "" {
			if err := Sysctl(s.Key, s.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

func IsTunnel(kind string) bool {
	return kind == linux.KindIP6GRE || kind == linux.KindGRE || kind == linux.KindVXLAN
}

func applyDevice(d linux.Device, holdTunnels bool) error {
	switch d.Kind {
	case linux.KindLoopback, linux.KindPhysical:
		// exists already
	case linux.KindBridge:
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: d.Name, MTU: d.MTU}}); err != nil {
			return err
		}
	case linux.KindVRF:
		if err := netlink.LinkAdd(&netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: d.Name}, Table: uint32(d.Table)}); err != nil {
			return err
		}
	case linux.KindIP6GRE:
		if err := AddIP6GRE(d); err != nil {
			return err
		}
	case linux.KindGRE:
		g := &netlink.Gretun{LinkAttrs: netlink.LinkAttrs{Name: d.Name, MTU: d.MTU}, Local: net.IP(d.Local.AsSlice()), Remote: net.IP(d.Remote.AsSlice()), Ttl: uint8(d.TTL), PMtuDisc: 1}
		if err := netlink.LinkAdd(g); err != nil {
			return err
		}
	case linux.KindVXLAN:
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: d.Name, MTU: d.MTU},
			VxlanId:   d.VNI, SrcAddr: net.IP(d.Local.AsSlice()), Group: net.IP(d.Remote.AsSlice()),
			Port: d.Port, TTL: d.TTL, Learning: false, UDP6ZeroCSumTx: false,
		}
		if err := netlink.LinkAdd(v); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown device kind %q", d.Kind)
	}
	link, err := netlink.LinkByName(d.Name)
	if err != nil {
		return err
	}
	if d.MTU > 0 && link.Attrs().MTU != d.MTU {
		if err := netlink.LinkSetMTU(link, d.MTU); err != nil {
			return fmt.Errorf("mtu %d: %w", d.MTU, err)
		}
	}
	if d.Master != "" {
		m, err := netlink.LinkByName(d.Master)
		if err != nil {
			return fmt.Errorf("master %s: %w", d.Master, err)
		}
		if err := netlink.LinkSetMaster(link, m); err != nil {
			return fmt.Errorf("master %s: %w", d.Master, err)
		}
	}
	if holdTunnels && IsTunnel(d.Kind) {
		return nil
	}
	return netlink.LinkSetUp(link)
}

// ip6TnlIgnEncapLimit is IP6_TNL_F_IGN_ENCAP_LIMIT ("encaplimit none").
const ip6TnlIgnEncapLimit = 0x1

// AddIP6GRE creates an ip6gre device with a raw RTM_NEWLINK: the netlink
// library has no field for the tunnel flags that drop the 8-byte
// encapsulation-limit option.
func AddIP6GRE(d linux.Device) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(d.Name)))
	if d.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(d.MTU))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("ip6gre"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	local, remote := d.Local.As16(), d.Remote.As16()
	data.AddRtAttr(nl.IFLA_GRE_LOCAL, local[:])
	data.AddRtAttr(nl.IFLA_GRE_REMOTE, remote[:])
	data.AddRtAttr(nl.IFLA_GRE_TTL, nl.Uint8Attr(uint8(d.TTL)))
	var flags uint32
	encapLimit := uint8(4) // the kernel's default
	if d.EncapLimitNone {
		flags |= ip6TnlIgnEncapLimit
		encapLimit = 0
	}
	data.AddRtAttr(nl.IFLA_GRE_ENCAP_LIMIT, nl.Uint8Attr(encapLimit))
	data.AddRtAttr(nl.IFLA_GRE_FLAGS, nl.Uint32Attr(flags))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func addRoute(r linux.Route) error {
	rt := &netlink.Route{Dst: ipNet(r.Dst), Table: r.Table, Priority: int(r.Metric)}
	if r.Dst.Addr().Is4() {
		rt.Family = unix.AF_INET
	} else {
		rt.Family = unix.AF_INET6
	}
	switch r.Type {
	case linux.RouteUnreachable:
		rt.Type = unix.RTN_UNREACHABLE
	default:
		if r.Via.IsValid() {
			rt.Gw = net.IP(r.Via.AsSlice())
		}
		if r.Device != "" {
			link, err := netlink.LinkByName(r.Device)
			if err != nil {
				return err
			}
			rt.LinkIndex = link.Attrs().Index
		}
	}
	if err := netlink.RouteAdd(rt); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// SetUp brings the named devices up.
func SetUp(names []string) error {
	for _, n := range names {
		link, err := netlink.LinkByName(n)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("%s up: %w", n, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// AddGuard installs (or refreshes) an IPsec fail-closed guard policy.
func AddGuard(g linux.Guard) error {
	anyNet := ipNet(netip.PrefixFrom(netip.IPv6Unspecified(), 0))
	if g.Peer.Is4() {
		anyNet = ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	}
	peer := ipNet(netip.PrefixFrom(g.Peer, g.Peer.BitLen()))
	pol := &netlink.XfrmPolicy{Src: anyNet, Dst: peer, Dir: netlink.XFRM_DIR_OUT, Priority: linux.GuardPriority, Action: netlink.XFRM_POLICY_BLOCK, DstPort: g.Port}
	if g.Dir == "in" {
		pol.Src, pol.Dst, pol.Dir = peer, anyNet, netlink.XFRM_DIR_IN
	}
	switch g.Proto {
	case "gre":
		pol.Proto = netlink.Proto(unix.IPPROTO_GRE)
	case "udp":
		pol.Proto = netlink.Proto(unix.IPPROTO_UDP)
	default:
		return fmt.Errorf("unknown protocol %q", g.Proto)
	}
	return netlink.XfrmPolicyUpdate(pol)
}
