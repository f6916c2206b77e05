// Package linux renders the Linux side of each router: kernel modules,
// sysctls, devices (VRFs, ip6gre, VXLAN), addresses and routes. The model
// (Host) is what the lab applies through netlink; Script renders the same
// model as an equivalent, human-readable ip/sysctl script.
package linux

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// Device kinds.
const (
	// KindPhysical is an interface that must already exist (a NIC on a
	// host; in the lab, a veth the lab wires up).
	KindPhysical = "physical"
	KindLoopback = "loopback"
	KindVRF      = "vrf"
	KindIP6GRE   = "ip6gre"
	KindGRE      = "gre"
	KindVXLAN    = "vxlan"
	// KindBridge is a Linux bridge (the lab's shared underlay LANs).
	KindBridge = "bridge"
)

// VRFUnreachableMetric is the metric of each VRF table's unreachable
// default route: the highest the kernel accepts, so that any real route wins.
const VRFUnreachableMetric = 4278198272

// VXLANPort is the IANA VXLAN port.
const VXLANPort = 4789

// Host is the Linux configuration of one router.
type Host struct {
	Router  string   `json:"router"`
	Role    string   `json:"role"`
	Modules []string `json:"modules,omitempty"`
	// Sysctls are applied in order; per-device ones after the devices exist.
	Sysctls []Sysctl `json:"sysctls"`
	// Devices are created (or, for physical/loopback, configured) in order.
	Devices   []Device  `json:"devices"`
	Addresses []Address `json:"addresses"`
	Routes    []Route   `json:"routes,omitempty"`
	// Guards are applied before any device: a tunnel never exists
	// without them.
	Guards []Guard `json:"guards,omitempty"`
}

// Sysctl is one kernel parameter, by its dotted name.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	// Device names the device the setting belongs to (applied after it exists).
	Device string `json:"device,omitempty"`
}

// Device is one network device.
type Device struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	MTU    int    `json:"mtu,omitempty"`
	Master string `json:"master,omitempty"`
	// Table is the routing table of a VRF device.
	Table int `json:"table,omitempty"`
	// Tunnel endpoints (ip6gre, gre, vxlan).
	Local  netip.Addr `json:"local,omitzero"`
	Remote netip.Addr `json:"remote,omitzero"`
	TTL    int        `json:"ttl,omitempty"`
	// EncapLimitNone drops ip6gre's 8-byte encapsulation-limit option.
	EncapLimitNone bool `json:"encap_limit_none,omitempty"`
	VNI            int  `json:"vni,omitempty"`
	Port           int  `json:"port,omitempty"`
	// Peer describes, for a physical device, what is at the other end.
	Peer string `json:"peer,omitempty"`
}

// Address on a device.
type Address struct {
	Device string       `json:"device"`
	Prefix netip.Prefix `json:"prefix"`
}

// Route types.
const (
	RouteUnicast     = "unicast"
	RouteUnreachable = "unreachable"
)

// Route is a kernel route that is not FRR's business (the underlay default
// and each VRF's unreachable default).
type Route struct {
	Type   string       `json:"type"`
	Dst    netip.Prefix `json:"dst"`
	Via    netip.Addr   `json:"via,omitzero"`
	Device string       `json:"device,omitempty"`
	Table  int          `json:"table,omitempty"`
	Metric uint32       `json:"metric,omitempty"`
}

// Render returns the Linux configuration of router r.
func Render(p *plan.Plan, r *plan.Router) *Host {
	h := &Host{Router: r.Name, Role: r.Role}
	h.sysctl("net.ipv4.ip_forward", "1", "")
	h.sysctl("net.ipv6.conf.all.forwarding", "1", "")
	h.sysctl("net.ipv4.conf.all.rp_filter", "0", "")
	h.sysctl("net.ipv4.conf.default.rp_filter", "0", "")
	// Addresses are configured outside FRR: keep IPv6 ones when a link goes
	// down (e.g. "shutdown" in FRR), or they are gone after "no shutdown".
	h.sysctl("net.ipv6.conf.all.keep_addr_on_down", "1", "")
	h.sysctl("net.ipv6.conf.default.keep_addr_on_down", "1", "")
	h.Devices = append(h.Devices, Device{Name: "lo", Kind: KindLoopback})
	if r.Role == intent.RoleCE {
		renderCE(h, p, r)
		return h
	}
	h.Modules = modules(p, r)
	h.sysctl("net.mpls.platform_labels", fmt.Sprint(p.Protocols.PlatformLabels), "")
	if strongswanNeeded(r) {
		// Queue, rather than drop, what a trap policy holds while IKE
		// negotiates: the first hellos of a link are not lost.
		h.sysctl("net.core.xfrm_larval_drop", "0", "")
		h.Guards = guards(r)
	}
	h.Addresses = append(h.Addresses,
		Address{"lo", netip.PrefixFrom(r.LoopbackV4, 32)},
		Address{"lo", netip.PrefixFrom(r.LoopbackV6, 128)})
	u := r.Underlay
	h.Devices = append(h.Devices, Device{Name: u.Interface, Kind: KindPhysical, MTU: underlayMTU(p, r), Peer: "underlay"})
	if u.IPv6.IsValid() {
		h.Addresses = append(h.Addresses, Address{u.Interface, u.IPv6})
		h.Routes = append(h.Routes, Route{Type: RouteUnicast, Dst: netip.MustParsePrefix("::/0"), Via: u.GatewayV6, Device: u.Interface})
	}
	if u.IPv4.IsValid() {
		h.Addresses = append(h.Addresses, Address{u.Interface, u.IPv4})
		h.Routes = append(h.Routes, Route{Type: RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: u.GatewayV4, Device: u.Interface})
	}
	for _, vn := range r.VRFs {
		v := p.VRF(vn)
		h.Devices = append(h.Devices, Device{Name: v.Name, Kind: KindVRF, Table: v.Table})
		for _, dst := range []string{"0.0.0.0/0", "::/0"} {
			h.Routes = append(h.Routes, Route{Type: RouteUnreachable, Dst: netip.MustParsePrefix(dst), Table: v.Table, Metric: VRFUnreachableMetric})
		}
	}
	for _, i := range r.Interfaces {
		d := Device{Name: i.Name, MTU: i.MTU, Local: i.Local, Remote: i.Remote, TTL: 64}
		switch {
		case i.Encap == intent.EncapVXLAN:
			d.Kind, d.VNI, d.Port, d.TTL = KindVXLAN, i.VNI, VXLANPort, 64
		case i.Local.Is6():
			d.Kind, d.EncapLimitNone = KindIP6GRE, !i.EncapLimit
		default:
			d.Kind = KindGRE
		}
		h.Devices = append(h.Devices, d)
		h.Addresses = append(h.Addresses, Address{i.Name, i.IPv4}, Address{i.Name, i.IPv6})
		if i.LDP {
			h.sysctl("net.mpls.conf."+i.Name+".input", "1", i.Name)
		}
	}
	for _, a := range r.Attachments {
		s := p.Sites[a.Site]
		h.Devices = append(h.Devices, Device{Name: a.Interface, Kind: KindPhysical, MTU: s.MTU, Master: a.VRF, Peer: s.CE})
		for _, pfx := range []netip.Prefix{s.PEIPv4, s.PEIPv6} {
			if pfx.IsValid() {
				h.Addresses = append(h.Addresses, Address{a.Interface, pfx})
			}
		}
	}
	return h
}

func renderCE(h *Host, p *plan.Plan, r *plan.Router) {
	for _, a := range r.Attachments {
		s := p.Sites[a.Site]
		h.Devices = append(h.Devices, Device{Name: a.Interface, Kind: KindPhysical, MTU: s.MTU, Peer: s.PE})
		for _, pfx := range []netip.Prefix{s.CEIPv4, s.CEIPv6} {
			if pfx.IsValid() {
				h.Addresses = append(h.Addresses, Address{a.Interface, pfx})
			}
		}
		// The customer networks behind the CE: their first host on lo.
		for _, pfx := range s.Prefixes {
			h.Addresses = append(h.Addresses, Address{"lo", netip.PrefixFrom(plan.CEAddress(pfx), pfx.Bits())})
		}
	}
}

func (h *Host) sysctl(k, v, dev string) { h.Sysctls = append(h.Sysctls, Sysctl{k, v, dev}) }

// underlayMTU is the largest underlay MTU any of the router's links uses.
func underlayMTU(p *plan.Plan, r *plan.Router) int {
	m := 0
	for _, i := range r.Interfaces {
		if u := p.Links[i.Link].MTU.UnderlayMTU; u > m {
			m = u
		}
	}
	return m
}

// modules lists the kernel modules the router needs, sorted.
func modules(p *plan.Plan, r *plan.Router) []string {
	set := map[string]bool{"mpls_router": true, "mpls_iptunnel": true}
	if len(r.VRFs) > 0 {
		set["vrf"] = true
	}
	for _, i := range r.Interfaces {
		switch {
		case i.Encap == intent.EncapVXLAN:
			set["vxlan"] = true
		case i.Local.Is6():
			set["ip6_gre"] = true
		default:
			set["ip_gre"] = true
		}
		if i.Encrypted {
			set["xfrm_user"] = true
			if i.Local.Is6() {
				set["esp6"] = true
			} else {
				set["esp4"] = true
			}
			if strings.HasPrefix(p.Encryption.ESP, "chacha20poly1305") {
				set["chacha20poly1305"] = true
			}
		}
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// strongswanNeeded reports whether r has an encrypted link.
func strongswanNeeded(r *plan.Router) bool {
	for _, i := range r.Interfaces {
		if i.Encrypted {
			return true
		}
	}
	return false
}
