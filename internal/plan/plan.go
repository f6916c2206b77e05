// Package plan derives the stable facts of a backbone from its intent:
// addresses, interface names, route distinguishers, BGP sessions and the
// MTU budget of every link. It is a pure function of the intent.
package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
)

// Plan is everything render, lab and verify need, derived once.
type Plan struct {
	Name       string     `json:"name"`
	ASN        uint32     `json:"asn"`
	Encryption Encryption `json:"encryption"`
	Protocols  Protocols  `json:"protocols"`
	Routers    []*Router  `json:"routers"`
	Links      []*Link    `json:"links"`
	VRFs       []*VRF     `json:"vrfs"`
	Sites      []*Site    `json:"sites"`
	// CustomerMTU is the largest customer IP packet that crosses the
	// backbone unfragmented over any path: the smallest link InnerMTU.
	CustomerMTU int `json:"customer_mtu"`
}

// Encryption is the resolved IPsec policy.
type Encryption struct {
	Enabled   bool   `json:"enabled"`
	Mode      string `json:"mode"`
	IKE       string `json:"ike"`
	ESP       string `json:"esp"`
	Auth      string `json:"auth"`
	UDPEncap  bool   `json:"udp_encap"`
	RekeyTime string `json:"rekey_time"`
}

// Protocols are the resolved control-plane knobs.
type Protocols struct {
	Area            string   `json:"ospf_area"`
	Hello           int      `json:"ospf_hello"`
	Dead            int      `json:"ospf_dead"`
	Retransmit      int      `json:"ospf_retransmit"`
	LDPSync         bool     `json:"ldp_sync"`
	LDPPreferIPv4   bool     `json:"ldp_prefer_ipv4"`
	LDPHello        int      `json:"ldp_hello"`
	LDPHold         int      `json:"ldp_hold"`
	LDPSyncWait     int      `json:"ldp_sync_wait"`
	LDPSession      int      `json:"ldp_session_holdtime"`
	BFD             bool     `json:"bfd"`
	BFDIntervalMS   int      `json:"bfd_interval_ms"`
	BFDMultiplier   int      `json:"bfd_multiplier"`
	ConnectRetry    int      `json:"bgp_connect_retry"`
	Keepalive       int      `json:"bgp_keepalive,omitempty"`
	Hold            int      `json:"bgp_hold,omitempty"`
	GracePeriod     int      `json:"ospf_grace_period"`
	BGPRestart      int      `json:"bgp_restart_time"`
	BGPStalepath    int      `json:"bgp_stalepath_time"`
	PlatformLabels  int      `json:"mpls_platform_labels"`
	LabelStack      int      `json:"mpls_label_stack"`
	RouteReflectors []string `json:"route_reflectors,omitempty"`
}

// Router is one router with everything it needs configured.
type Router struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// RouterID is the IPv4 loopback (OSPF, LDP and BGP router-id).
	LoopbackV4 netip.Addr `json:"loopback_v4,omitzero"`
	LoopbackV6 netip.Addr `json:"loopback_v6,omitzero"`
	ASN        uint32     `json:"asn"`
	Underlay   *Underlay  `json:"underlay,omitempty"`
	// Interfaces are the router's backbone tunnels, in link order.
	Interfaces []*Interface `json:"interfaces,omitempty"`
	// Peers are the router's iBGP VPN sessions (PEs only).
	Peers []*Peer `json:"bgp_peers,omitempty"`
	// RouteReflector makes the router reflect VPN routes to its clients.
	RouteReflector bool `json:"route_reflector,omitempty"`
	// VRFs on this PE, by name, sorted.
	VRFs []string `json:"vrfs,omitempty"`
	// Attachments are this router's PE-CE links (on a PE: one per site; on
	// a CE: its uplink).
	Attachments []*Attachment `json:"attachments,omitempty"`
	// Host is the system the router is deployed to (nil: lab only).
	Host *intent.Host `json:"host,omitempty"`
}

// Underlay is a router's WAN side.
type Underlay struct {
	Interface string       `json:"interface"`
	IPv6      netip.Prefix `json:"ipv6,omitzero"`
	IPv4      netip.Prefix `json:"ipv4,omitzero"`
	// Gateways are the first addresses of the underlay networks: the
	// provider's router (the lab's underlay router plays it).
	GatewayV6 netip.Addr `json:"gateway_v6,omitzero"`
	GatewayV4 netip.Addr `json:"gateway_v4,omitzero"`
}

// Interface is one end of a backbone link on a router.
type Interface struct {
	Name  string `json:"name"`
	Link  int    `json:"link"`
	Peer  string `json:"peer"`
	Encap string `json:"encap"`
	// Addresses on the tunnel, with the link prefix length.
	IPv4 netip.Prefix `json:"ipv4"`
	IPv6 netip.Prefix `json:"ipv6"`
	// PeerIPv4/PeerIPv6 are the far end's tunnel addresses.
	PeerIPv4 netip.Addr `json:"peer_ipv4"`
	PeerIPv6 netip.Addr `json:"peer_ipv6"`
	// Local and Remote are the underlay endpoints of the tunnel.
	Local      netip.Addr `json:"local"`
	Remote     netip.Addr `json:"remote"`
	MTU        int        `json:"mtu"`
	Cost       int        `json:"cost"`
	LDP        bool       `json:"ldp"`
	Encrypted  bool       `json:"encrypted"`
	VNI        int        `json:"vni,omitempty"`
	EncapLimit bool       `json:"encap_limit,omitempty"`
	// LDPMultihop: the IGP's best path to the peer's loopback does not
	// cross this link, so neither does their LDP session (GTSM disabled
	// for that neighbor).
	LDPMultihop bool `json:"ldp_multihop,omitempty"`
}

// Link is a backbone link and its MTU budget.
type Link struct {
	Index     int          `json:"index"`
	Name      string       `json:"name"`
	Ends      [2]string    `json:"ends"`
	Encap     string       `json:"encap"`
	IPv4      netip.Prefix `json:"ipv4"`
	IPv6      netip.Prefix `json:"ipv6"`
	Encrypted bool         `json:"encrypted"`
	LDP       bool         `json:"ldp"`
	VNI       int          `json:"vni,omitempty"`
	MTU       MTUBudget    `json:"mtu"`
}

// Peer is one iBGP session to another PE, over both address families.
type Peer struct {
	Name string     `json:"name"`
	IPv4 netip.Addr `json:"ipv4"`
	IPv6 netip.Addr `json:"ipv6"`
	// Client marks a route-reflector client (set on the reflector's side).
	Client bool `json:"rr_client,omitempty"`
}

// VRF is a customer VPN with its resolved identifiers.
type VRF struct {
	Name   string   `json:"name"`
	ID     int      `json:"id"`
	Table  int      `json:"table"`
	RD     string   `json:"rd,omitempty"` // fixed RD, or "" for per-PE auto
	Import []string `json:"import"`
	Export []string `json:"export"`
}

// RDOn returns the route distinguisher the VRF uses on a PE.
func (v *VRF) RDOn(r *Router) string {
	if v.RD != "" && v.RD != "auto" {
		return v.RD
	}
	return fmt.Sprintf("%s:%d", r.LoopbackV4, v.ID)
}

// Site is a customer site with its PE-CE link.
type Site struct {
	CE      string `json:"ce"`
	PE      string `json:"pe"`
	VRF     string `json:"vrf"`
	Routing string `json:"routing"`
	CEASN   uint32 `json:"ce_asn,omitempty"`
	// MaxPrefixes caps the routes the PE takes from the CE per family.
	MaxPrefixes int64          `json:"max_prefixes,omitempty"`
	Prefixes    []netip.Prefix `json:"prefixes"`
	// PE and CE addresses on the attachment, with prefix length.
	PEIPv4 netip.Prefix `json:"pe_ipv4,omitzero"`
	CEIPv4 netip.Prefix `json:"ce_ipv4,omitzero"`
	PEIPv6 netip.Prefix `json:"pe_ipv6,omitzero"`
	CEIPv6 netip.Prefix `json:"ce_ipv6,omitzero"`
	// PEInterface and CEInterface name the two ends of the attachment.
	PEInterface string `json:"pe_interface"`
	CEInterface string `json:"ce_interface"`
	// MTU of the attachment: the backbone's CustomerMTU, so that an
	// oversize packet is refused at the CE instead of dropped in MPLS.
	MTU int `json:"mtu"`
}

// Attachment is a site seen from one of its two routers.
type Attachment struct {
	Site      int    `json:"site"`
	Interface string `json:"interface"`
	Peer      string `json:"peer"`
	VRF       string `json:"vrf,omitempty"`
}

// Router returns the router of that name, or nil.
func (p *Plan) Router(name string) *Router {
	for _, r := range p.Routers {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// VRF returns the VRF of that name, or nil.
func (p *Plan) VRF(name string) *VRF {
	for _, v := range p.VRFs {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// PEs returns the PE routers in declaration order.
func (p *Plan) PEs() []*Router {
	var out []*Router
	for _, r := range p.Routers {
		if r.Role == intent.RolePE {
			out = append(out, r)
		}
	}
	return out
}

// Build validates the document and derives its plan. On any error it
// returns nil and every problem; warnings come back with a plan.
func Build(doc *intent.Document) (*Plan, intent.Problems) {
	ps := doc.Validate()
	if len(ps.Errors()) > 0 {
		return nil, ps
	}
	b := &builder{doc: doc, in: doc.Intent}
	p := b.build()
	ps = append(ps, b.ps...)
	ps.Sort()
	if len(ps.Errors()) > 0 {
		return nil, ps
	}
	return p, ps
}

type builder struct {
	doc *intent.Document
	in  *intent.Intent
	ps  intent.Problems
}

func (b *builder) errorf(path, hint, format string, args ...any) {
	b.ps = append(b.ps, intent.Problem{Severity: intent.Error, Path: path, Line: b.doc.LineOf(path), Message: fmt.Sprintf(format, args...), Hint: hint})
}

func mustPrefix(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func mustAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func (b *builder) build() *Plan {
	in := b.in
	area, _ := intent.ParseArea(in.Protocols.OSPF.Area)
	p := &Plan{
		Name: in.Name,
		ASN:  in.ASN,
		Encryption: Encryption{
			Enabled: in.Encryption.Type == "ipsec", Mode: in.Encryption.Mode, IKE: in.Encryption.IKE, ESP: in.Encryption.ESP,
			Auth: in.Encryption.Auth, UDPEncap: in.Encryption.UDPEncap, RekeyTime: in.Encryption.RekeyTime,
		},
		Protocols: Protocols{
			Area: area, Hello: in.Protocols.OSPF.HelloInterval, Dead: in.Protocols.OSPF.DeadInterval, Retransmit: in.Protocols.OSPF.RetransmitInterval,
			LDPSync: *in.Protocols.LDP.Sync, LDPPreferIPv4: in.Protocols.LDP.PreferIPv4,
			LDPHello: in.Protocols.LDP.HelloInterval, LDPHold: in.Protocols.LDP.HoldTime, LDPSyncWait: in.Protocols.LDP.SyncWait,
			LDPSession: in.Protocols.LDP.SessionHoldtime,
			BFD:        *in.Protocols.BFD.Enabled, BFDIntervalMS: in.Protocols.BFD.IntervalMS, BFDMultiplier: in.Protocols.BFD.Multiplier,
			ConnectRetry: in.Protocols.BGP.ConnectRetry, Keepalive: in.Protocols.BGP.Keepalive, Hold: in.Protocols.BGP.Hold,
			GracePeriod: in.Protocols.OSPF.GracePeriod, BGPRestart: in.Protocols.BGP.RestartTime, BGPStalepath: in.Protocols.BGP.StalepathTime,
			PlatformLabels: in.Protocols.MPLS.PlatformLabels, LabelStack: in.Protocols.MPLS.LabelStack,
			RouteReflectors: in.Protocols.BGP.RouteReflectors,
		},
	}
	b.routers(p)
	b.links(p)
	b.ldpMultihop(p)
	b.vrfs(p)
	b.sites(p)
	b.bgp(p)
	return p
}

func (b *builder) routers(p *Plan) {
	in := b.in
	lb4 := newAllocator(mustPrefix(in.Pools.LoopbackV4), 32, true)
	lb6 := newAllocator(mustPrefix(in.Pools.LoopbackV6), 128, true)
	// Pinned loopbacks first, so that allocation never takes them.
	for _, r := range in.Routers {
		if a := mustAddr(r.Loopback.IPv4); a.IsValid() {
			lb4.pin(netip.PrefixFrom(a, 32), r.Name)
		}
		if a := mustAddr(r.Loopback.IPv6); a.IsValid() {
			lb6.pin(netip.PrefixFrom(a, 128), r.Name)
		}
	}
	for i, r := range in.Routers {
		pr := &Router{Name: r.Name, Role: r.Role, ASN: in.ASN}
		if r.Role == intent.RoleCE {
			pr.ASN = r.ASN
			p.Routers = append(p.Routers, pr)
			continue
		}
		path := fmt.Sprintf("routers[%d].loopback", i)
		pr.LoopbackV4 = mustAddr(r.Loopback.IPv4)
		if !pr.LoopbackV4.IsValid() {
			a, err := lb4.alloc(r.Name)
			if err != nil {
				b.errorf(path+".ipv4", "use a larger pools.loopback_v4", "no IPv4 loopback for %q: %v", r.Name, err)
			}
			pr.LoopbackV4 = a.Addr()
		}
		pr.LoopbackV6 = mustAddr(r.Loopback.IPv6)
		if !pr.LoopbackV6.IsValid() {
			a, err := lb6.alloc(r.Name)
			if err != nil {
				b.errorf(path+".ipv6", "use a larger pools.loopback_v6", "no IPv6 loopback for %q: %v", r.Name, err)
			}
			pr.LoopbackV6 = a.Addr()
		}
		u := &Underlay{Interface: r.Underlay.Interface, IPv6: mustPrefix(r.Underlay.IPv6), IPv4: mustPrefix(r.Underlay.IPv4)}
		if u.IPv6.IsValid() {
			u.GatewayV6 = nthAddr(u.IPv6, 1)
			if u.GatewayV6 == u.IPv6.Addr() {
				b.errorf(fmt.Sprintf("routers[%d].underlay.ipv6", i), "the first address of the network is the underlay gateway; use ::2 or another", "%s is the underlay gateway's address", u.IPv6.Addr())
			}
		}
		if u.IPv4.IsValid() {
			u.GatewayV4 = nthAddr(u.IPv4, 1)
			if u.GatewayV4 == u.IPv4.Addr() {
				b.errorf(fmt.Sprintf("routers[%d].underlay.ipv4", i), "the first address of the network is the underlay gateway; use .2 or another", "%s is the underlay gateway's address", u.IPv4.Addr())
			}
		}
		pr.Underlay = u
		if r.Host != nil {
			h := *r.Host
			pr.Host = &h
		}
		p.Routers = append(p.Routers, pr)
	}
}

// InterfaceName names the tunnel to peer on a router: "gre-<peer>" or
// "vx-<peer>". Router names are short enough (validated) to fit 15 bytes.
func InterfaceName(encap, peer string) string {
	if encap == intent.EncapVXLAN {
		return "vx-" + peer
	}
	return "gre-" + peer
}

func (b *builder) links(p *Plan) {
	in := b.in
	l4 := newAllocator(mustPrefix(in.Pools.LinkV4), 31, false)
	l6 := newAllocator(mustPrefix(in.Pools.LinkV6), 127, false)
	for i, l := range in.Links {
		path := fmt.Sprintf("links[%d]", i)
		if n := mustPrefix(l.IPv4); n.IsValid() {
			if prev, ok := l4.pin(n, linkKey(l)); !ok {
				b.errorf(path+".ipv4", "pin another /31", "%s is already pinned by link %s", n, prev)
			}
		}
		if n := mustPrefix(l.IPv6); n.IsValid() {
			if prev, ok := l6.pin(n, linkKey(l)); !ok {
				b.errorf(path+".ipv6", "pin another /127", "%s is already pinned by link %s", n, prev)
			}
		}
	}
	esp, _ := intent.ESPOverhead(in.Encryption.ESP)
	min := 0
	for i, l := range in.Links {
		path := fmt.Sprintf("links[%d]", i)
		key := linkKey(l)
		n4, n6 := mustPrefix(l.IPv4), mustPrefix(l.IPv6)
		var err error
		if !n4.IsValid() {
			if n4, err = l4.alloc(key); err != nil {
				b.errorf(path, fmt.Sprintf("use a larger pools.link_v4: %d links need %d /31 networks", len(in.Links), len(in.Links)), "no IPv4 link network: %v", err)
			}
		}
		if !n6.IsValid() {
			// Mirror the IPv4 slot when it is free, so that 10.20.0.6/31
			// pairs with <link_v6>::6/127 and the plan reads easily.
			if s, ok := l4.slotOf(n4); ok && s < l6.slots {
				if c := l6.prefixAt(s); l6.free(s) {
					l6.pin(c, key)
					n6 = c
				}
			}
		}
		if !n6.IsValid() {
			if n6, err = l6.alloc(key); err != nil {
				b.errorf(path, fmt.Sprintf("use a larger pools.link_v6: %d links need %d /127 networks", len(in.Links), len(in.Links)), "no IPv6 link network: %v", err)
			}
		}
		ra, rb := p.Router(l.Between[0]), p.Router(l.Between[1])
		outerV6 := ra.Underlay.IPv6.IsValid() && rb.Underlay.IPv6.IsValid()
		encapLimit := l.EncapLimit
		if nm := nmEnd(ra, rb); nm != "" && l.Encap == intent.EncapGRE && outerV6 && !encapLimit {
			// NetworkManager cannot create an ip6gre tunnel without the
			// encapsulation-limit option (nmcli refuses the
			// ip6-ign-encap-limit flag for mode ip6gre), and both ends
			// must agree on the MTU.
			encapLimit = true
			b.ps = append(b.ps, intent.Problem{Severity: intent.Warning, Path: path, Line: b.doc.LineOf(path),
				Message: fmt.Sprintf("%s runs NetworkManager, which cannot drop ip6gre's 8-byte encapsulation-limit option: this link keeps it on both ends, 8 bytes less MTU", nm),
				Hint:    "use networkd on both routers, or vxlan, to get the 8 bytes back"})
		}
		umtu := in.Underlay.MTU
		if l.UnderlayMTU != 0 {
			umtu = l.UnderlayMTU
		}
		bud := budget(stack{
			underlayMTU: umtu, outerV6: outerV6, encap: l.Encap, encapLimit: encapLimit,
			ipsec: l.Encrypted(), tunnelMode: in.Encryption.Mode == "tunnel", udpEncap: in.Encryption.UDPEncap,
			esp: esp, labels: in.Protocols.MPLS.LabelStack,
		})
		if l.MTU != 0 {
			if l.MTU > bud.MaxTunnelMTU {
				b.errorf(path+".mtu", fmt.Sprintf("use at most %d", bud.MaxTunnelMTU),
					"tunnel MTU %d exceeds the %d bytes the stack allows on a %d-byte underlay: larger packets would be dropped silently", l.MTU, bud.MaxTunnelMTU, umtu)
			} else {
				bud.pin(l.MTU)
			}
		}
		if bud.InnerMTU < 1280 {
			b.errorf(path, "raise the underlay MTU, use transport mode, or drop a layer",
				"after the encapsulation stack the largest customer packet is %d bytes, below IPv6's minimum of 1280", bud.InnerMTU)
		}
		if min == 0 || bud.InnerMTU < min {
			min = bud.InnerMTU
		}
		pl := &Link{
			Index: i, Name: JoinNames(l.Between[0], l.Between[1]), Ends: l.Between, Encap: l.Encap,
			IPv4: n4, IPv6: n6, Encrypted: l.Encrypted(), LDP: l.LDPEnabled(), MTU: bud,
		}
		if l.Encap == intent.EncapVXLAN {
			// Stable, because the /31 is: the VNI follows the link's slot.
			s, _ := l4.slotOf(n4)
			pl.VNI = 10000 + int(s)
		}
		p.Links = append(p.Links, pl)
		a4, b4 := pointToPoint(n4)
		a6, b6 := pointToPoint(n6)
		ends := [2]*Router{ra, rb}
		addr4 := [2]netip.Addr{a4, b4}
		addr6 := [2]netip.Addr{a6, b6}
		for e := 0; e < 2; e++ {
			me, peer := ends[e], ends[1-e]
			local, remote := me.Underlay.IPv6.Addr(), peer.Underlay.IPv6.Addr()
			if !outerV6 {
				local, remote = me.Underlay.IPv4.Addr(), peer.Underlay.IPv4.Addr()
			}
			me.Interfaces = append(me.Interfaces, &Interface{
				Name: InterfaceName(l.Encap, peer.Name), Link: i, Peer: peer.Name, Encap: l.Encap,
				IPv4: netip.PrefixFrom(addr4[e], 31), IPv6: netip.PrefixFrom(addr6[e], 127),
				PeerIPv4: addr4[1-e], PeerIPv6: addr6[1-e],
				Local: local, Remote: remote, MTU: bud.TunnelMTU, Cost: l.Cost, LDP: l.LDPEnabled(),
				Encrypted: l.Encrypted(), VNI: pl.VNI, EncapLimit: encapLimit,
			})
		}
	}
	p.CustomerMTU = min
}

// linkKey seeds a link's preferred allocation slot. Two links may share
// a seed (a-b with c, a with b-c): they then take neighbouring slots, which
// is harmless; names are never built from it.
func linkKey(l intent.Link) string {
	a, b := l.Between[0], l.Between[1]
	if b < a {
		a, b = b, a
	}
	return a + "-" + b
}

// JoinNames names the pair of routers a, b: "a-b", or "a--b" when a name
// has a dash of its own. Router names never contain "--", so the result
// always splits back into the same two names ("a-b" and "c" give
// "a-b--c", "a" and "b-c" give "a--b-c").
func JoinNames(a, b string) string {
	if strings.Contains(a, "-") || strings.Contains(b, "-") {
		return a + "--" + b
	}
	return a + "-" + b
}

// SplitNames is the inverse of JoinNames for names without a dash, and
// for the "--" form; for "a-b-c" it cannot know where to split and
// returns every candidate.
func SplitNames(s string) [][2]string {
	if a, b, ok := strings.Cut(s, "--"); ok {
		return [][2]string{{a, b}}
	}
	var out [][2]string
	for i := 0; i < len(s); i++ {
		if s[i] == '-' && i > 0 && i < len(s)-1 {
			out = append(out, [2]string{s[:i], s[i+1:]})
		}
	}
	return out
}

// LinkKey names the link between two routers whatever their order (the
// key of its pre-shared key in the secret store).
func LinkKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return JoinNames(a, b)
}

func (b *builder) vrfs(p *Plan) {
	for _, v := range b.in.VRFs {
		t := v.Table
		if t == 0 {
			t = 1000 + v.ID
		}
		p.VRFs = append(p.VRFs, &VRF{Name: v.Name, ID: v.ID, Table: t, RD: v.RD, Import: v.Import, Export: v.Export})
	}
}

func (b *builder) sites(p *Plan) {
	for i, s := range b.in.Sites {
		pe, ce := p.Router(s.PE), p.Router(s.CE)
		ps := &Site{
			CE: s.CE, PE: s.PE, VRF: s.VRF, Routing: s.Routing, CEASN: ce.ASN, MaxPrefixes: s.MaxPrefixes,
			PEInterface: "to-" + s.CE, CEInterface: "to-" + s.PE, MTU: p.CustomerMTU,
		}
		if s.Routing != intent.RoutingEBGP {
			ps.CEASN = 0
		}
		if n := mustPrefix(s.IPv4); n.IsValid() {
			a, c := pointToPoint(n)
			ps.PEIPv4, ps.CEIPv4 = netip.PrefixFrom(a, n.Bits()), netip.PrefixFrom(c, n.Bits())
		}
		if n := mustPrefix(s.IPv6); n.IsValid() {
			a, c := pointToPoint(n)
			ps.PEIPv6, ps.CEIPv6 = netip.PrefixFrom(a, n.Bits()), netip.PrefixFrom(c, n.Bits())
		}
		for _, x := range s.Prefixes {
			ps.Prefixes = append(ps.Prefixes, mustPrefix(x).Masked())
		}
		p.Sites = append(p.Sites, ps)
		pe.Attachments = append(pe.Attachments, &Attachment{Site: i, Interface: ps.PEInterface, Peer: s.CE, VRF: s.VRF})
		ce.Attachments = append(ce.Attachments, &Attachment{Site: i, Interface: ps.CEInterface, Peer: s.PE})
		if !contains(pe.VRFs, s.VRF) {
			pe.VRFs = append(pe.VRFs, s.VRF)
			sort.Strings(pe.VRFs)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (b *builder) bgp(p *Plan) {
	rrs := b.in.Protocols.BGP.RouteReflectors
	pes := p.PEs()
	for _, me := range pes {
		me.RouteReflector = contains(rrs, me.Name)
		for _, other := range pes {
			if other == me {
				continue
			}
			// Full mesh without reflectors; with them, clients peer only
			// with reflectors and reflectors with everyone.
			if len(rrs) > 0 && !me.RouteReflector && !contains(rrs, other.Name) {
				continue
			}
			me.Peers = append(me.Peers, &Peer{
				Name: other.Name, IPv4: other.LoopbackV4, IPv6: other.LoopbackV6,
				Client: me.RouteReflector && !contains(rrs, other.Name),
			})
		}
	}
}

// Address is where a site is reached for a family (4 or 6): the CE's
// address in its first customer prefix of that family, else its
// attachment address; invalid if the site has neither.
func (s *Site) Address(family int) netip.Addr {
	for _, p := range s.Prefixes {
		if (family == 4) == p.Addr().Is4() {
			return CEAddress(p)
		}
	}
	if family == 4 && s.CEIPv4.IsValid() {
		return s.CEIPv4.Addr()
	}
	if family == 6 && s.CEIPv6.IsValid() {
		return s.CEIPv6.Addr()
	}
	return netip.Addr{}
}

// nmEnd names a router of a link that runs NetworkManager ("" if none).
func nmEnd(a, b *Router) string {
	for _, r := range []*Router{a, b} {
		if r.Host != nil && r.Host.Network == intent.NetworkManager {
			return r.Name
		}
	}
	return ""
}
