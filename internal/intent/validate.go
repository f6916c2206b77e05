package intent

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	// MaxRouterName keeps "gre-<peer>" within Linux's 15-byte interface names.
	MaxRouterName = 11
	// MaxVRFName is Linux's interface-name limit (the VRF is a device).
	MaxVRFName = 15
)

// Known ESP/IKE proposal words (strongSwan names) that the MTU plan can size.
var knownProposalWords = map[string]bool{
	"chacha20poly1305": true, "aes128gcm16": true, "aes256gcm16": true, "aes128gcm": true, "aes256gcm": true,
	"aes128": true, "aes256": true, "sha256": true, "sha384": true, "sha512": true,
	"prfsha256": true, "prfsha384": true, "prfsha512": true,
	"x25519": true, "curve25519": true, "x448": true, "ecp256": true, "ecp384": true, "ecp521": true,
	"modp2048": true, "modp3072": true, "modp4096": true, "esn": true, "noesn": true,
}

// MaxName is the longest backbone name.
const MaxName = 16

// CheckName says why name cannot name a backbone (and its lab), or nil.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || len(name) > MaxName {
		return fmt.Errorf("%q is not a valid backbone name: use lower-case letters, digits and dashes, at most %d characters, e.g. lab1", name, MaxName)
	}
	return nil
}

func validate(in *Intent, c *collector) {
	if CheckName(in.Name) != nil {
		c.errorf("name", "use lower-case letters, digits and dashes, at most 16 characters, e.g. name: lab1",
			"%q is not a valid backbone name", in.Name)
	}
	if in.ASN == 0 || in.ASN == 23456 || in.ASN == 4294967295 {
		c.errorf("asn", "use a private ASN such as 65000", "%d is not a usable AS number", in.ASN)
	}
	if in.Underlay.MTU < 1280 || in.Underlay.MTU > 9216 {
		c.errorf("underlay.mtu", "IPv6 needs at least 1280; jumbo frames stop at 9216", "MTU %d is out of range", in.Underlay.MTU)
	}
	pools := validatePools(in, c)
	validateEncryption(in, c)
	validateProtocols(in, c)
	routers := validateRouters(in, pools, c)
	validateLinks(in, routers, pools, c)
	vrfs := validateVRFs(in, c)
	validateSites(in, routers, vrfs, pools, c)
}

type pool struct {
	path   string
	prefix netip.Prefix
}

func parsePrefix(c *collector, path, s string, wantV6 bool, required bool) (netip.Prefix, bool) {
	if s == "" {
		if required {
			c.errorf(path, "", "is required")
		}
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		c.errorf(path, "write an address with a prefix length, e.g. "+example(wantV6), "%q is not a prefix", s)
		return netip.Prefix{}, false
	}
	if p.Addr().Is6() != wantV6 || p.Addr().Is4In6() {
		c.errorf(path, "write an "+family(wantV6)+" prefix, e.g. "+example(wantV6), "%q is not an %s prefix", s, family(wantV6))
		return netip.Prefix{}, false
	}
	return p, true
}

func parseAddr(c *collector, path, s string, wantV6 bool) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != wantV6 || a.Is4In6() || a.Zone() != "" {
		c.errorf(path, "write a bare "+family(wantV6)+" address without prefix length", "%q is not an %s address", s, family(wantV6))
		return netip.Addr{}, false
	}
	if !a.IsGlobalUnicast() {
		c.errorf(path, "use a unicast address such as "+map[bool]string{false: "10.0.0.1", true: "fd00::1"}[wantV6], "%s is not a unicast address", a)
		return netip.Addr{}, false
	}
	return a, true
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func example(v6 bool) string {
	if v6 {
		return "fd00:1::/64"
	}
	return "10.0.0.0/24"
}

func validatePools(in *Intent, c *collector) []pool {
	specs := []struct {
		path    string
		val     string
		v6      bool
		maxBits int
	}{
		{"pools.loopback_v4", in.Pools.LoopbackV4, false, 32},
		{"pools.loopback_v6", in.Pools.LoopbackV6, true, 128},
		{"pools.link_v4", in.Pools.LinkV4, false, 31},
		{"pools.link_v6", in.Pools.LinkV6, true, 127},
	}
	var out []pool
	for _, s := range specs {
		p, ok := parsePrefix(c, s.path, s.val, s.v6, true)
		if !ok {
			continue
		}
		if p.Masked() != p {
			c.errorf(s.path, "write the network address, "+p.Masked().String(), "%s has host bits set", p)
			continue
		}
		if p.Bits() > s.maxBits {
			c.errorf(s.path, "use a shorter prefix length", "%s is too small to allocate from", p)
			continue
		}
		if s.path == "pools.link_v4" && p.Bits() < 8 {
			// VXLAN VNIs are 10000 + the link's /31 slot: 24 bits.
			c.errorf(s.path, "use a /8 or longer prefix (a /8 holds over 8 million links)", "%s is too large: link VNIs are derived from its /31 slots and must fit in 24 bits", p)
			continue
		}
		out = append(out, pool{s.path, p})
	}
	// A pool that overlaps an earlier one is reported once and left out, so
	// that later checks against the pools do not repeat the mistake.
	var clear []pool
	for _, p := range out {
		overlap := false
		for _, q := range clear {
			if q.prefix.Overlaps(p.prefix) {
				c.errorf(p.path, "give each pool its own range", "%s overlaps %s (%s)", p.prefix, q.path, q.prefix)
				overlap = true
				break
			}
		}
		if !overlap {
			clear = append(clear, p)
		}
	}
	return clear
}

func validateEncryption(in *Intent, c *collector) {
	e := in.Encryption
	switch e.Type {
	case "ipsec", "none":
	default:
		c.errorf("encryption.type", `use "ipsec" or "none"`, "unknown encryption %q", e.Type)
	}
	switch e.Mode {
	case "transport":
	case "tunnel":
		if e.Type == "ipsec" {
			c.warnf("encryption.mode", "transport mode protects GRE/VXLAN between the same endpoints just as well",
				"ESP tunnel mode adds a second IPv6 header: 40 bytes more per packet and a smaller customer MTU")
		}
	default:
		c.errorf("encryption.mode", `use "transport" or "tunnel"`, "unknown IPsec mode %q", e.Mode)
	}
	switch e.Auth {
	case "psk", "pubkey":
	default:
		c.errorf("encryption.auth", `use "psk" or "pubkey"`, "unknown authentication %q", e.Auth)
	}
	checkProposal(c, "encryption.ike", e.IKE, true)
	checkProposal(c, "encryption.esp", e.ESP, false)
	if _, ok := ESPOverhead(e.ESP); !ok && e.ESP != "" {
		c.errorf("encryption.esp", "use chacha20poly1305, aes128gcm16, aes256gcm16, or aes128/aes256 with sha256/sha384/sha512",
			"cannot size the ESP overhead of %q", e.ESP)
	}
	if e.UDPEncap && e.Type == "ipsec" {
		c.warnf("encryption.udp_encap", "leave it off unless a NAT sits in the underlay",
			"UDP encapsulation adds 8 bytes per packet and fixes the ports at 4500: no ECMP entropy")
	}
	if e.Type == "none" {
		c.warnf("encryption.type", "use ipsec to encrypt the WAN", "backbone traffic crosses the underlay in clear")
	}
	if _, err := ParseDuration(e.RekeyTime); err != nil {
		c.errorf("encryption.rekey_time", "use a strongSwan duration such as 4h, 30m or 3600s", "%v", err)
	}
}

// ParseDuration parses a strongSwan duration (s, m, h, d suffix) into seconds.
func ParseDuration(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	mult := 1
	switch s[len(s)-1] {
	case 's':
		s = s[:len(s)-1]
	case 'm':
		mult, s = 60, s[:len(s)-1]
	case 'h':
		mult, s = 3600, s[:len(s)-1]
	case 'd':
		mult, s = 86400, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 365*86400 {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return n * mult, nil
}

func checkProposal(c *collector, path, s string, ike bool) {
	if s == "" {
		c.errorf(path, "", "is required")
		return
	}
	for _, w := range strings.Split(s, "-") {
		if !knownProposalWords[w] {
			c.errorf(path, "see strongSwan's IKEv2 cipher suites, e.g. "+map[bool]string{true: DefaultIKE, false: DefaultESP}[ike],
				"unknown algorithm %q in proposal %q", w, s)
			return
		}
	}
}

// ESPOverhead describes what ESP adds around a payload for a proposal.
type ESPCost struct {
	IV, ICV, Align int
}

// ESPOverhead returns the per-packet ESP cost of an ESP proposal.
func ESPOverhead(proposal string) (ESPCost, bool) {
	words := strings.Split(proposal, "-")
	if len(words) == 0 {
		return ESPCost{}, false
	}
	switch words[0] {
	case "chacha20poly1305", "aes128gcm16", "aes256gcm16", "aes128gcm", "aes256gcm":
		return ESPCost{IV: 8, ICV: 16, Align: 4}, true
	case "aes128", "aes256":
		icv := 0
		for _, w := range words[1:] {
			switch w {
			case "sha256":
				icv = 16
			case "sha384":
				icv = 24
			case "sha512":
				icv = 32
			}
		}
		if icv == 0 {
			return ESPCost{}, false
		}
		return ESPCost{IV: 16, ICV: icv, Align: 16}, true
	}
	return ESPCost{}, false
}

func validateProtocols(in *Intent, c *collector) {
	p := in.Protocols
	if _, err := ParseArea(p.OSPF.Area); err != nil {
		c.errorf("protocols.ospf.area", "write an area as a number or dotted quad, e.g. 0 or 0.0.0.0", "%v", err)
	}
	if p.OSPF.HelloInterval < 1 || p.OSPF.HelloInterval > 65535 {
		c.errorf("protocols.ospf.hello_interval", "use 1 to 65535 seconds", "hello interval %d is out of range", p.OSPF.HelloInterval)
	}
	if p.OSPF.DeadInterval <= p.OSPF.HelloInterval || p.OSPF.DeadInterval > 65535 {
		c.errorf("protocols.ospf.dead_interval", "make it a multiple of the hello interval, usually 4x",
			"dead interval %d must be greater than the hello interval %d", p.OSPF.DeadInterval, p.OSPF.HelloInterval)
	}
	if p.OSPF.RetransmitInterval < 1 || p.OSPF.RetransmitInterval > 65535 {
		c.errorf("protocols.ospf.retransmit_interval", "use 1 to 65535 seconds (FRR's default is 5)", "retransmit interval %d is out of range", p.OSPF.RetransmitInterval)
	}
	if p.OSPF.Cost < 1 || p.OSPF.Cost > 65535 {
		c.errorf("protocols.ospf.cost", "use 1 to 65535", "cost %d is out of range", p.OSPF.Cost)
	}
	if *p.BFD.Enabled {
		if p.BFD.IntervalMS < 10 || p.BFD.IntervalMS > 60000 {
			c.errorf("protocols.bfd.interval_ms", "use 10 to 60000 ms", "BFD interval %d ms is out of range", p.BFD.IntervalMS)
		}
		if p.BFD.Multiplier < 2 || p.BFD.Multiplier > 255 {
			c.errorf("protocols.bfd.multiplier", "use 2 to 255", "BFD multiplier %d is out of range", p.BFD.Multiplier)
		}
	} else {
		c.warnf("protocols.bfd.enabled", "enable BFD: Linux GRE has no keepalive",
			"without BFD a dead far end is noticed only after the OSPF dead interval (%d s)", p.OSPF.DeadInterval)
	}
	if *p.LDP.Enabled && !*p.LDP.Sync {
		c.warnf("protocols.ldp.sync", "enable sync: measured recovery blackholes of 4-5 s without it",
			"without LDP-IGP synchronization OSPF moves traffic onto a restored link before LDP has labels there")
	}
	if !*p.LDP.Enabled {
		c.errorf("protocols.ldp.enabled", "enable LDP: the VPN routes resolve only over labelled paths",
			"L3VPN needs a labelled path between PEs and LDP is the only label protocol backbone renders")
	}
	if p.LDP.SessionHoldtime < 15 || p.LDP.SessionHoldtime > 65535 {
		c.errorf("protocols.ldp.session_holdtime", "use 15 to 65535 seconds (FRR's default is 180)", "LDP session hold time %d is out of range", p.LDP.SessionHoldtime)
	}
	if p.LDP.SyncWait < 1 || p.LDP.SyncWait > 10000 {
		c.errorf("protocols.ldp.sync_wait", "use 1 to 10000 seconds (FRR's default is 10)", "LDP sync wait %d is out of range", p.LDP.SyncWait)
	}
	if p.LDP.HelloInterval < 1 || p.LDP.HelloInterval > 65535 {
		c.errorf("protocols.ldp.hello_interval", "use 1 to 65535 seconds", "LDP hello interval %d is out of range", p.LDP.HelloInterval)
	}
	if p.LDP.HoldTime <= p.LDP.HelloInterval || p.LDP.HoldTime > 65535 {
		c.errorf("protocols.ldp.hold_time", "make it about 3x the hello interval", "LDP hold time %d must be greater than the hello interval %d", p.LDP.HoldTime, p.LDP.HelloInterval)
	}
	if p.OSPF.GracePeriod < 1 || p.OSPF.GracePeriod > 1800 {
		c.errorf("protocols.ospf.grace_period", "use 1 to 1800 seconds (default 120)", "OSPF grace period %d is out of range", p.OSPF.GracePeriod)
	}
	if p.BGP.RestartTime < 1 || p.BGP.RestartTime > 4095 {
		c.errorf("protocols.bgp.restart_time", "use 1 to 4095 seconds (default 120)", "BGP restart time %d is out of range", p.BGP.RestartTime)
	}
	if p.BGP.StalepathTime < 1 || p.BGP.StalepathTime > 4095 {
		c.errorf("protocols.bgp.stalepath_time", "use 1 to 4095 seconds (default 360)", "BGP stale-path time %d is out of range", p.BGP.StalepathTime)
	}
	if p.BGP.ConnectRetry < 1 || p.BGP.ConnectRetry > 65535 {
		c.errorf("protocols.bgp.connect_retry", "use 1 to 65535 seconds", "connect retry %d is out of range", p.BGP.ConnectRetry)
	}
	if p.BGP.Keepalive != 0 || p.BGP.Hold != 0 {
		if p.BGP.Hold < 3 || p.BGP.Keepalive < 1 || p.BGP.Keepalive*3 > p.BGP.Hold {
			c.errorf("protocols.bgp.hold", "set keepalive >= 1 and hold >= 3 x keepalive", "keepalive %d / hold %d is not a valid timer pair", p.BGP.Keepalive, p.BGP.Hold)
		}
	}
	if p.MPLS.PlatformLabels < 16 || p.MPLS.PlatformLabels > 1048575 {
		c.errorf("protocols.mpls.platform_labels", "FRR uses 100000", "platform_labels %d is out of range", p.MPLS.PlatformLabels)
	}
	if p.MPLS.LabelStack < 1 || p.MPLS.LabelStack > 8 {
		c.errorf("protocols.mpls.label_stack", "L3VPN needs 2 (transport + VPN)", "label stack %d is out of range", p.MPLS.LabelStack)
	}
}

// ParseArea accepts an OSPF area as a decimal number or a dotted quad and
// returns it as a dotted quad.
func ParseArea(s string) (string, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		return a.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("%q is not an OSPF area", s)
	}
	return a.String(), nil
}

// routerInfo is what link and site validation need to know of routers.
type routerInfo struct {
	index int
	role  string
	uv6   netip.Prefix
	uv4   netip.Prefix
}

func validateRouters(in *Intent, pools []pool, c *collector) map[string]routerInfo {
	routers := map[string]routerInfo{}
	type owner struct{ path, name string }
	addrs := map[netip.Addr]owner{}
	claim := func(path, name string, a netip.Addr) {
		if prev, ok := addrs[a]; ok {
			c.errorf(path, "give every router its own addresses", "address %s is already used by %s (%s)", a, prev.name, prev.path)
			return
		}
		addrs[a] = owner{path, name}
	}
	var underlayNets []pool
	for i, r := range in.Routers {
		path := fmt.Sprintf("routers[%d]", i)
		if !nameRE.MatchString(r.Name) || len(r.Name) > MaxRouterName {
			c.errorf(path+".name", fmt.Sprintf("use lower-case letters, digits and dashes, at most %d characters (interface names are built from it)", MaxRouterName),
				"%q is not a valid router name", r.Name)
		}
		if prev, ok := routers[r.Name]; ok {
			c.errorf(path+".name", "rename one of them", "router %q is already defined at routers[%d]", r.Name, prev.index)
			continue
		}
		info := routerInfo{index: i, role: r.Role}
		switch r.Role {
		case RolePE, RoleP:
			if p, ok := parsePrefix(c, path+".underlay.ipv6", r.Underlay.IPv6, true, false); ok {
				info.uv6 = p
				claim(path+".underlay.ipv6", r.Name, p.Addr())
				underlayNets = append(underlayNets, pool{path + ".underlay.ipv6", p.Masked()})
			}
			if p, ok := parsePrefix(c, path+".underlay.ipv4", r.Underlay.IPv4, false, false); ok {
				info.uv4 = p
				claim(path+".underlay.ipv4", r.Name, p.Addr())
				underlayNets = append(underlayNets, pool{path + ".underlay.ipv4", p.Masked()})
			}
			if !info.uv6.IsValid() && !info.uv4.IsValid() {
				c.errorf(path+".underlay", "add underlay: {ipv6: 2001:db8:1::2/64}", "router %q has no underlay address", r.Name)
			}
			if !nameRE.MatchString(r.Underlay.Interface) || len(r.Underlay.Interface) > 15 {
				c.errorf(path+".underlay.interface", "use a Linux interface name such as eth0", "%q is not a valid interface name", r.Underlay.Interface)
			}
			if r.ASN != 0 {
				c.errorf(path+".asn", "remove it: backbone routers use the backbone's asn", "only CE routers have their own ASN")
			}
			if h := r.Host; h != nil {
				switch h.OS {
				case OSRocky9, OSRHEL9, OSDebian12, OSUbuntu24:
				default:
					c.errorf(path+".host.os", "use rocky9, rhel9, debian12 or ubuntu24", "unknown operating system %q", h.OS)
				}
				switch h.Network {
				case NetworkManager, NetworkD:
				default:
					c.errorf(path+".host.network", "use networkmanager or networkd", "unknown network stack %q", h.Network)
				}
			}
		case RoleCE:
			if r.Host != nil {
				c.errorf(path+".host", "remove it: backbone deploys PE and P routers; a CE is the customer's", "CE %q cannot be deployed", r.Name)
			}
			if r.Underlay.IPv6 != "" || r.Underlay.IPv4 != "" {
				c.errorf(path+".underlay", "remove it: a CE connects to its PE through sites:", "a CE has no underlay address")
			}
			if r.Loopback.IPv4 != "" || r.Loopback.IPv6 != "" {
				c.errorf(path+".loopback", "put customer networks under sites[].prefixes", "a CE has no backbone loopback")
			}
		default:
			c.errorf(path+".role", `use "pe", "p" or "ce"`, "unknown role %q for router %q", r.Role, r.Name)
		}
		for _, lb := range []struct {
			path string
			val  string
			v6   bool
		}{{path + ".loopback.ipv4", r.Loopback.IPv4, false}, {path + ".loopback.ipv6", r.Loopback.IPv6, true}} {
			if a, ok := parseAddr(c, lb.path, lb.val, lb.v6); ok {
				claim(lb.path, r.Name, a)
				// The plan hands out link networks without looking at
				// loopbacks: one inside a link pool would be given to a link.
				for _, p := range pools {
					if (p.path == "pools.link_v4" || p.path == "pools.link_v6") && p.prefix.Contains(a) {
						c.errorf(lb.path, "pin loopbacks inside the loopback pools, or leave them out to have them allocated",
							"%s lies in %s (%s), which the plan carves into link networks", a, p.path, p.prefix)
					}
				}
			}
		}
		routers[r.Name] = info
	}
	// Underlay networks must stay clear of the pools the plan allocates from.
	for _, u := range underlayNets {
		for _, p := range pools {
			if u.prefix.Overlaps(p.prefix) {
				c.errorf(u.path, "move the underlay out of the backbone's own ranges", "underlay network %s overlaps %s (%s)", u.prefix, p.path, p.prefix)
			}
		}
	}
	return routers
}

func isBackbone(role string) bool { return role == RolePE || role == RoleP }

func validateLinks(in *Intent, routers map[string]routerInfo, pools []pool, c *collector) {
	seen := map[[2]string]int{}
	adj := map[string][]string{}
	for i, l := range in.Links {
		path := fmt.Sprintf("links[%d]", i)
		ok := true
		for j, name := range l.Between {
			p := fmt.Sprintf("%s.between[%d]", path, j)
			r, found := routers[name]
			switch {
			case name == "":
				c.errorf(p, "a link names two routers: between: [pe1, pe2]", "router name is missing")
				ok = false
			case !found:
				c.errorf(p, "define it under routers, or fix the name", "router %q is not defined", name)
				ok = false
			case !isBackbone(r.role):
				c.errorf(p, "attach CEs to PEs under sites:, not links:", "router %q is a CE; backbone links join PE and P routers", name)
				ok = false
			}
		}
		a, b := l.Between[0], l.Between[1]
		if a == b && a != "" {
			c.errorf(path+".between", "a link joins two different routers", "link from %q to itself", a)
			ok = false
		}
		key := [2]string{a, b}
		if b < a {
			key = [2]string{b, a}
		}
		if prev, dup := seen[key]; dup && ok {
			c.errorf(path, "remove one; parallel tunnels between the same underlay addresses are not supported", "duplicate link %s-%s (also links[%d])", a, b, prev)
			ok = false
		}
		if ok {
			seen[key] = i
			adj[a] = append(adj[a], b)
			adj[b] = append(adj[b], a)
			ra, rb := routers[a], routers[b]
			if !(ra.uv6.IsValid() && rb.uv6.IsValid()) && !(ra.uv4.IsValid() && rb.uv4.IsValid()) {
				c.errorf(path, "give both routers an underlay address of the same family", "routers %q and %q share no underlay address family", a, b)
			}
		}
		switch l.Encap {
		case EncapGRE:
			c.warnf(path+".encap", "use vxlan where providers hash on UDP ports",
				"GRE has no ports: all traffic between %s and %s is one flow to the provider's ECMP hash", a, b)
		case EncapVXLAN:
		default:
			c.errorf(path+".encap", `use "gre" (ip6gre) or "vxlan"`, "unknown encapsulation %q", l.Encap)
		}
		if l.Unnumbered {
			c.errorf(path+".unnumbered", "remove it: the plan gives every link a /31 and a /127",
				"unnumbered tunnels blackhole traffic: when one side is shut, zebra fails to install the nexthop on the other (\"Nexthop device is not up\") and never retries (FRR issue 14481)")
		}
		if l.Cost < 1 || l.Cost > 65535 {
			c.errorf(path+".cost", "use 1 to 65535", "cost %d is out of range", l.Cost)
		}
		if l.UnderlayMTU != 0 && (l.UnderlayMTU < 1280 || l.UnderlayMTU > 9216) {
			c.errorf(path+".underlay_mtu", "use 1280 to 9216", "underlay MTU %d is out of range", l.UnderlayMTU)
		}
		switch l.Encryption {
		case "ipsec":
			if in.Encryption.Type == "none" {
				c.errorf(path+".encryption", "set encryption.type: ipsec to configure proposals", "link asks for ipsec but the backbone has encryption.type none")
			}
		case "none":
			if in.Encryption.Type == "ipsec" {
				c.warnf(path+".encryption", "remove encryption: none to protect this link", "link %s-%s crosses the underlay in clear", a, b)
			}
		default:
			c.errorf(path+".encryption", `use "ipsec" or "none"`, "unknown encryption %q", l.Encryption)
		}
		if !l.LDPEnabled() && *in.Protocols.LDP.Enabled {
			c.warnf(path+".ldp", "enable LDP or raise the link's cost", "OSPF may route VPN traffic over this link, which has no labels: it will be dropped")
		}
		if p, ok := parsePrefix(c, path+".ipv4", l.IPv4, false, false); ok && p.Bits() != 31 {
			c.errorf(path+".ipv4", "links use /31 networks (RFC 3021)", "%s is not a /31", p)
		} else if ok {
			checkInPool(c, path+".ipv4", p, pools, "pools.link_v4")
		}
		if p, ok := parsePrefix(c, path+".ipv6", l.IPv6, true, false); ok && p.Bits() != 127 {
			c.errorf(path+".ipv6", "links use /127 networks (RFC 6164)", "%s is not a /127", p)
		} else if ok {
			checkInPool(c, path+".ipv6", p, pools, "pools.link_v6")
		}
	}
	checkConnected(in, routers, adj, c)
	for i, rr := range in.Protocols.BGP.RouteReflectors {
		if r, ok := routers[rr]; !ok {
			c.errorf(fmt.Sprintf("protocols.bgp.route_reflectors[%d]", i), "name a PE router", "router %q is not defined", rr)
		} else if r.role != RolePE {
			c.errorf(fmt.Sprintf("protocols.bgp.route_reflectors[%d]", i), "name a PE router: P routers run no BGP", "router %q is not a PE", rr)
		}
	}
}

func checkInPool(c *collector, path string, p netip.Prefix, pools []pool, want string) {
	for _, pl := range pools {
		if pl.path == want && !pl.prefix.Contains(p.Addr()) {
			c.errorf(path, "pin link networks inside "+pl.prefix.String(), "%s is outside %s", p, want)
		}
	}
}

func checkConnected(in *Intent, routers map[string]routerInfo, adj map[string][]string, c *collector) {
	var names []string
	for _, r := range in.Routers {
		if info, ok := routers[r.Name]; ok && isBackbone(info.role) && info.index >= 0 {
			names = append(names, r.Name)
		}
	}
	if len(names) == 0 {
		c.errorf("routers", "define at least two PE routers", "the backbone has no PE or P router")
		return
	}
	seen := map[string]bool{names[0]: true}
	queue := []string{names[0]}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, m := range adj[n] {
			if !seen[m] {
				seen[m] = true
				queue = append(queue, m)
			}
		}
	}
	var cut []string
	for _, n := range names {
		if !seen[n] {
			cut = append(cut, n)
		}
	}
	if len(cut) > 0 {
		sort.Strings(cut)
		c.errorf("links", "add links so that every PE and P router reaches every other",
			"the backbone is not connected: %s cannot reach %s", strings.Join(cut, ", "), names[0])
	}
}

var (
	asnNN = regexp.MustCompile(`^(\d+):(\d+)$`)
	ipNN  = regexp.MustCompile(`^(\d+\.\d+\.\d+\.\d+):(\d+)$`)
)

// CheckRouteDistinguisher validates an RD or RT in ASN:NN or IPv4:NN form.
func CheckRouteDistinguisher(s string) error {
	if m := asnNN.FindStringSubmatch(s); m != nil {
		asn, err1 := strconv.ParseUint(m[1], 10, 32)
		nn, err2 := strconv.ParseUint(m[2], 10, 32)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%q: numbers out of range", s)
		}
		if asn > 65535 && nn > 65535 {
			return fmt.Errorf("%q: a 4-byte ASN leaves only 16 bits for the number", s)
		}
		return nil
	}
	if m := ipNN.FindStringSubmatch(s); m != nil {
		if _, err := netip.ParseAddr(m[1]); err != nil {
			return fmt.Errorf("%q: %s is not an IPv4 address", s, m[1])
		}
		if n, err := strconv.ParseUint(m[2], 10, 16); err != nil || n > 65535 {
			return fmt.Errorf("%q: an IPv4-address form leaves only 16 bits for the number", s)
		}
		return nil
	}
	return fmt.Errorf("%q is not in ASN:NN or IPv4:NN form", s)
}

func validateVRFs(in *Intent, c *collector) map[string]int {
	vrfs := map[string]int{}
	ids := map[int]int{}
	tables := map[int]int{}
	for i, v := range in.VRFs {
		path := fmt.Sprintf("vrfs[%d]", i)
		if !nameRE.MatchString(v.Name) || len(v.Name) > MaxVRFName {
			c.errorf(path+".name", "use lower-case letters, digits and dashes, at most 15 characters (it names a Linux device)", "%q is not a valid VRF name", v.Name)
		} else if clash := deviceClash(in, v.Name); clash != "" {
			c.errorf(path+".name", "rename the VRF: it becomes a Linux device next to the router's own", "VRF %q would clash with %s", v.Name, clash)
		}
		if prev, ok := vrfs[v.Name]; ok {
			c.errorf(path+".name", "rename one of them", "VRF %q is already defined at vrfs[%d]", v.Name, prev)
		} else {
			vrfs[v.Name] = i
		}
		dupID := false
		if v.ID < 1 || v.ID > 65535 {
			c.errorf(path+".id", "number every VRF from 1 to 65535; the id forms its RD and table", "VRF id %d is out of range", v.ID)
		} else if prev, ok := ids[v.ID]; ok {
			c.errorf(path+".id", "give every VRF its own id", "id %d is already used by vrfs[%d]", v.ID, prev)
			// Its derived table is a duplicate too: one mistake, one error.
			dupID = true
		} else {
			ids[v.ID] = i
		}
		table := v.Table
		if table == 0 {
			table = 1000 + v.ID
		}
		if dupID && v.Table == 0 {
			// Reported with the id.
		} else if table < 1 || table == 253 || table == 254 || table == 255 || table > 1<<31-1 {
			c.errorf(path+".table", "use a free kernel table such as 1100", "table %d is reserved or out of range", table)
		} else if prev, ok := tables[table]; ok {
			c.errorf(path+".table", "give every VRF its own table", "table %d is already used by vrfs[%d]", table, prev)
		} else {
			tables[table] = i
		}
		if v.RD != "" && v.RD != "auto" {
			if err := CheckRouteDistinguisher(v.RD); err != nil {
				c.errorf(path+".rd", "write ASN:NN (65000:100) or IPv4:NN (10.0.0.1:100), or leave it out for <loopback>:<id>", "malformed RD %v", err)
			}
		}
		if len(v.Import) == 0 && len(v.Export) == 0 {
			c.errorf(path, "add import: and export: route targets, e.g. [\"65000:100\"]", "VRF %q has no route targets: its sites would never see each other", v.Name)
		}
		for _, list := range []struct {
			name string
			rts  []string
		}{{"import", v.Import}, {"export", v.Export}} {
			for j, rt := range list.rts {
				if err := CheckRouteDistinguisher(rt); err != nil {
					c.errorf(fmt.Sprintf("%s.%s[%d]", path, list.name, j), "write ASN:NN such as 65000:100", "malformed route target %v", err)
				}
			}
		}
	}
	return vrfs
}

// deviceClash names the device a VRF of that name would collide with on a
// PE, or returns "".
func deviceClash(in *Intent, name string) string {
	if name == "lo" {
		return "the loopback device"
	}
	for _, prefix := range []string{"gre-", "vx-", "to-"} {
		if strings.HasPrefix(name, prefix) {
			return "the names backbone gives tunnels and PE-CE interfaces (" + prefix + "<router>)"
		}
	}
	for _, r := range in.Routers {
		if r.Role == RolePE && r.Underlay.Interface == name {
			return "the underlay interface of " + r.Name
		}
	}
	return ""
}

func validateSites(in *Intent, routers map[string]routerInfo, vrfs map[string]int, pools []pool, c *collector) {
	ces := map[string]int{}
	type netOwner struct {
		path   string
		vrf    string
		prefix netip.Prefix
	}
	var nets []netOwner
	for i, s := range in.Sites {
		path := fmt.Sprintf("sites[%d]", i)
		ce, ok := routers[s.CE]
		switch {
		case !ok:
			c.errorf(path+".ce", "define it under routers with role: ce", "router %q is not defined", s.CE)
		case ce.role != RoleCE:
			c.errorf(path+".ce", "give it role: ce, or attach another router", "router %q is a %s, not a CE", s.CE, strings.ToUpper(ce.role))
		default:
			if prev, dup := ces[s.CE]; dup {
				c.errorf(path+".ce", "attach each CE once; add prefixes to its site instead", "CE %q is already attached at sites[%d]", s.CE, prev)
			}
			ces[s.CE] = i
		}
		if pe, ok := routers[s.PE]; !ok {
			c.errorf(path+".pe", "define it under routers with role: pe", "router %q is not defined", s.PE)
		} else if pe.role != RolePE {
			c.errorf(path+".pe", "attach customers to a PE router", "CE %q is attached to %q, which is a %s, not a PE", s.CE, s.PE, strings.ToUpper(pe.role))
		}
		if _, ok := vrfs[s.VRF]; !ok {
			c.errorf(path+".vrf", "define it under vrfs, or fix the name", "VRF %q is not defined", s.VRF)
		}
		switch s.Routing {
		case RoutingStatic:
		case RoutingEBGP:
			if ok && ce.role == RoleCE {
				asn := in.Routers[ce.index].ASN
				if asn == 0 {
					c.errorf(path+".routing", fmt.Sprintf("give router %q an asn:, e.g. 65001", s.CE), "eBGP site needs the CE's ASN")
				} else if asn == in.ASN {
					c.errorf(path+".routing", "give the CE a different ASN", "CE %q uses the backbone's own ASN %d", s.CE, asn)
				}
			}
		default:
			c.errorf(path+".routing", `use "static" or "ebgp"`, "unknown routing %q", s.Routing)
		}
		if s.MaxPrefixes < 1 || s.MaxPrefixes > 4294967295 {
			c.errorf(path+".max_prefixes", "use 1 to 4294967295 routes per address family (default 1000)", "maximum prefixes %d is out of range", s.MaxPrefixes)
		}
		p4, ok4 := parsePrefix(c, path+".ipv4", s.IPv4, false, false)
		p6, ok6 := parsePrefix(c, path+".ipv6", s.IPv6, true, false)
		if !ok4 && !ok6 && s.IPv4 == "" && s.IPv6 == "" {
			c.errorf(path, "add ipv4: and/or ipv6: PE-CE link networks", "site has no PE-CE link network")
		}
		if ok4 {
			if p4.Bits() > 31 {
				c.errorf(path+".ipv4", "use a /30 or /31", "%s has no room for a PE and a CE address", p4)
			} else {
				nets = append(nets, netOwner{path + ".ipv4", s.VRF, p4.Masked()})
			}
		}
		if ok6 {
			if p6.Bits() > 127 {
				c.errorf(path+".ipv6", "use a /64, /126 or /127", "%s has no room for a PE and a CE address", p6)
			} else {
				nets = append(nets, netOwner{path + ".ipv6", s.VRF, p6.Masked()})
			}
		}
		for j, ps := range s.Prefixes {
			pp := fmt.Sprintf("%s.prefixes[%d]", path, j)
			p, err := netip.ParsePrefix(ps)
			if err != nil {
				c.errorf(pp, "write a prefix such as 192.168.1.0/24", "%q is not a prefix", ps)
				continue
			}
			// Without a PE-CE network of its family the prefix would get
			// neither a static route nor a BGP session: unreachable.
			if v6 := p.Addr().Is6(); (v6 && s.IPv6 == "") || (!v6 && s.IPv4 == "") {
				c.errorf(pp, fmt.Sprintf("add %s: to the site, or remove the prefix", strings.ToLower(family(v6))),
					"%s is %s, but the site has no %s PE-CE network to reach it", p, family(v6), family(v6))
			}
			nets = append(nets, netOwner{pp, s.VRF, p.Masked()})
		}
	}
	for i := range nets {
		for _, p := range pools {
			if nets[i].prefix.Overlaps(p.prefix) {
				c.errorf(nets[i].path, "customer networks must not overlap the backbone's own ranges", "%s overlaps %s (%s)", nets[i].prefix, p.path, p.prefix)
			}
		}
		for j := 0; j < i; j++ {
			// Overlapping customer space is fine across VRFs: that is what VRFs are for.
			if nets[i].vrf == nets[j].vrf && nets[i].prefix.Overlaps(nets[j].prefix) {
				c.errorf(nets[i].path, "give every site of a VRF its own networks", "%s overlaps %s (%s)", nets[i].prefix, nets[j].path, nets[j].prefix)
			}
		}
	}
}
