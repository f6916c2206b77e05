package verify

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/backbone-net/backbone/internal/frrstate"
	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// scope is what the checks look at: the collected state, and the routers
// checked (nil: every router).
type scope struct {
	p    *plan.Plan
	sts  map[string]*routerState
	only map[string]bool
	// peers, when set, narrows the checks to the sessions with these
	// neighbours (routers or CEs), and leaves out the backbone-wide ones
	// (every loopback reachable, LSPs to every router).
	peers map[string]bool
}

func (sc scope) in(name string) bool { return sc.only == nil || sc.only[name] }

func (sc scope) peer(name string) bool { return sc.peers == nil || sc.peers[name] }

// partial reports whether only some sessions are checked.
func (sc scope) partial() bool { return sc.peers != nil }

// state is a router's collected state; never nil, so that a router that
// could not be asked fails its checks instead of breaking them.
func (sc scope) state(name string) *routerState {
	if st := sc.sts[name]; st != nil {
		return st
	}
	return &routerState{err: fmt.Errorf("no data collected from %s", name), frr: &frrstate.State{}, shell: map[string]string{}}
}

// linkEnds yields every backbone interface in scope with its router and
// peer.
func (sc scope) linkEnds(fn func(r, peer *plan.Router, i *plan.Interface, st *routerState)) {
	for _, r := range sc.p.Routers {
		if !sc.in(r.Name) {
			continue
		}
		for _, i := range r.Interfaces {
			if sc.peer(i.Peer) {
				fn(r, sc.p.Router(i.Peer), i, sc.state(r.Name))
			}
		}
	}
}

// routers yields the backbone routers (not CEs) in scope.
func (sc scope) routers(fn func(r *plan.Router, st *routerState)) {
	for _, r := range sc.p.Routers {
		if r.Role != "ce" && sc.in(r.Name) {
			fn(r, sc.state(r.Name))
		}
	}
}

// why adds what made a state unknown: the router did not answer, or the
// daemon behind a query is down.
func why(state string, st *routerState, q frrstate.Query) string {
	if state != frrstate.Absent {
		return state
	}
	if st.err != nil {
		return state + " (" + st.err.Error() + ")"
	}
	if f, ok := st.frr.Failed[q]; ok {
		return state + " (" + f + ")"
	}
	return state
}

func checkIGP(sc scope, r *recorder) {
	sc.linkEnds(func(rt, peer *plan.Router, i *plan.Interface, st *routerState) {
		rid := peer.LoopbackV4.String()
		cause := fmt.Sprintf("tunnel %s down, IPsec SA missing, or OSPF timers/area/network type differ on %s and %s", i.Name, rt.Name, peer.Name)
		state := st.frr.OSPFState(rid, i.Name)
		r.check(frrstate.OSPFFull(state), GroupIGP, fmt.Sprintf("ospfv2 %s %s -> %s", rt.Name, i.Name, peer.Name), cause, "neighbor "+rid+": "+why(state, st, frrstate.OSPF))
		state = st.frr.OSPF6State(rid, i.Name)
		r.check(state == "Full", GroupIGP, fmt.Sprintf("ospfv3 %s %s -> %s", rt.Name, i.Name, peer.Name), cause+" (OSPFv3 also needs IPv6 link-local addresses on the tunnel)", "neighbor "+rid+": "+why(state, st, frrstate.OSPF6))
	})
	if sc.partial() {
		return
	}
	sc.routers(func(rt *plan.Router, st *routerState) {
		var missing []string
		for _, other := range sc.p.Routers {
			if other.Role == "ce" || other == rt {
				continue
			}
			if !frrstate.Installed(st.frr.RIB4[netip.PrefixFrom(other.LoopbackV4, 32).String()]) {
				missing = append(missing, netip.PrefixFrom(other.LoopbackV4, 32).String())
			}
			if !frrstate.Installed(st.frr.RIB6[netip.PrefixFrom(other.LoopbackV6, 128).String()]) {
				missing = append(missing, netip.PrefixFrom(other.LoopbackV6, 128).String())
			}
		}
		ev := "all loopbacks installed"
		if len(missing) > 0 {
			ev = "missing: " + strings.Join(missing, " ")
		}
		r.check(len(missing) == 0, GroupIGP, "loopbacks reachable from "+rt.Name, "OSPF has not converged or a router is isolated", ev)
	})
}

func checkLDP(sc scope, r *recorder) {
	sc.linkEnds(func(rt, peer *plan.Router, i *plan.Interface, st *routerState) {
		if !i.LDP {
			return
		}
		state, af := st.frr.LDPSession(peer.LoopbackV4.String())
		cause := fmt.Sprintf("LDP not enabled on %s at one end, transport addresses unreachable, or dual-stack preference differs", i.Name)
		if i.LDPMultihop {
			cause += "; the session follows the IGP through another router, so GTSM must be off for this neighbor (neighbor ... ttl-security disable)"
		}
		r.check(frrstate.LDPUp(state), GroupLDP, fmt.Sprintf("session %s -> %s", rt.Name, peer.Name), cause,
			fmt.Sprintf("neighbor %s: %s (transport %s)", peer.LoopbackV4, why(state, st, frrstate.LDP), af))
		if sc.p.Protocols.LDPSync {
			s := st.frr.SyncState(i.Name)
			r.check(s == frrstate.SyncAchieved, GroupLDP, fmt.Sprintf("ldp-igp sync %s %s", rt.Name, i.Name),
				"LDP has no labels on this link yet: OSPF keeps advertising it at maximum cost", "state: "+orNone(s))
		}
	})
	if sc.partial() {
		return
	}
	sc.routers(func(rt *plan.Router, st *routerState) {
		if len(rt.Interfaces) == 0 {
			return
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			var missing []string
			for _, other := range sc.p.Routers {
				if other.Role == "ce" || other == rt {
					continue
				}
				pfx := netip.PrefixFrom(other.LoopbackV4, 32).String()
				if fam == "ipv6" {
					pfx = netip.PrefixFrom(other.LoopbackV6, 128).String()
				}
				if !st.frr.Labelled(pfx) {
					missing = append(missing, other.Name+" "+pfx)
				}
			}
			ev := "labelled path to every other router"
			if len(missing) > 0 {
				ev = "no label in use towards: " + strings.Join(missing, ", ")
			}
			r.check(len(missing) == 0, GroupLDP, fmt.Sprintf("LSPs %s from %s", fam, rt.Name),
				"LDP is off on a link the IGP uses, or a session is down: VPN routes over it cannot resolve", ev)
		}
	})
}

func checkBFD(sc scope, r *recorder) {
	if !sc.p.Protocols.BFD {
		return
	}
	sc.linkEnds(func(rt, peer *plan.Router, i *plan.Interface, st *routerState) {
		for _, v6 := range []bool{false, true} {
			fam := "ipv4"
			if v6 {
				fam = "ipv6"
			}
			state := st.frr.BFDState(i.Name, v6)
			r.check(frrstate.BFDUp(state), GroupIGP, fmt.Sprintf("bfd %s %s %s -> %s", fam, rt.Name, i.Name, peer.Name),
				"bfdd is down at one end, the profile differs, or packets are lost on the tunnel", "session: "+why(state, st, frrstate.BFD))
		}
	})
}

func checkBGP(sc scope, r *recorder) {
	p := sc.p
	for _, rt := range p.PEs() {
		if !sc.in(rt.Name) {
			continue
		}
		st := sc.state(rt.Name)
		for _, peer := range rt.Peers {
			if !sc.peer(peer.Name) {
				continue
			}
			for _, fam := range []struct {
				name, afi string
				addr      netip.Addr
			}{{"VPNv4", "ipv4Vpn", peer.IPv4}, {"VPNv6", "ipv6Vpn", peer.IPv6}} {
				state := st.frr.BGPPeerState("default", fam.afi, fam.addr)
				r.check(frrstate.BGPUp(state), GroupBGP, fmt.Sprintf("%s %s -> %s", fam.name, rt.Name, peer.Name),
					"loopback unreachable, or ASN/update-source/address-family differs on the two PEs",
					fmt.Sprintf("session to %s: %s", fam.addr, why(state, st, frrstate.BGP)))
			}
		}
		// eBGP with the CEs of the PE's sites.
		for _, s := range p.Sites {
			if s.PE != rt.Name || s.Routing != intent.RoutingEBGP || !sc.peer(s.CE) {
				continue
			}
			for _, fam := range []struct {
				afi  string
				addr netip.Prefix
			}{{"ipv4Unicast", s.CEIPv4}, {"ipv6Unicast", s.CEIPv6}} {
				if !fam.addr.IsValid() {
					continue
				}
				state := st.frr.BGPPeerState(s.VRF, fam.afi, fam.addr.Addr())
				r.check(frrstate.BGPUp(state), GroupBGP, fmt.Sprintf("eBGP %s -> %s %s", rt.Name, s.CE, fam.addr.Addr()),
					fmt.Sprintf("the CE link is down, or ASNs or addresses differ between %s and %s", rt.Name, s.CE),
					fmt.Sprintf("session in vrf %s: %s", s.VRF, why(state, st, frrstate.BGP)))
			}
		}
	}
	// Every remote site's networks in each VRF, installed with labels
	// (backbone-wide: their paths may cross routers not checked).
	if sc.partial() {
		return
	}
	for _, rt := range p.PEs() {
		if !sc.in(rt.Name) {
			continue
		}
		st := sc.state(rt.Name)
		for _, vn := range rt.VRFs {
			for _, s := range p.Sites {
				if s.VRF != vn || s.PE == rt.Name {
					continue
				}
				for _, pfx := range siteNetworks(s) {
					name := fmt.Sprintf("vrf %s on %s: %s (%s)", vn, rt.Name, pfx, s.CE)
					routes := st.frr.VRFRIB[vn][pfx.String()]
					labels := frrstate.Labels(routes)
					ok := labels != nil
					kernel := kernelRouteLine(st.shell, vn, pfx)
					ev := fmt.Sprintf("FRR labels %v; kernel: %s", labels, orNone(kernel))
					if !ok {
						ev = "not in the VRF's RIB with a label"
						if len(routes) > 0 {
							ev = "present but not selected/installed with a label"
						}
					}
					r.check(ok && strings.Contains(kernel, "encap mpls"), GroupBGP, name,
						fmt.Sprintf("route targets of %s do not match between %s and %s, the VPN session is down, or the nexthop has no labelled path", vn, s.PE, rt.Name), ev)
				}
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "no route"
	}
	return s
}

// siteNetworks are a site's customer prefixes and its attachment networks.
func siteNetworks(s *plan.Site) []netip.Prefix {
	out := append([]netip.Prefix(nil), s.Prefixes...)
	for _, p := range []netip.Prefix{s.CEIPv4, s.CEIPv6} {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// kernelRouteLine finds the kernel route of pfx in a VRF ("" if none).
func kernelRouteLine(shell map[string]string, vrf string, pfx netip.Prefix) string {
	sec := "kroute4 " + vrf
	if pfx.Addr().Is6() {
		sec = "kroute6 " + vrf
	}
	for _, line := range strings.Split(shell[sec], "\n") {
		if strings.HasPrefix(line, pfx.String()+" ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

type linkInfo struct {
	IfName   string `json:"ifname"`
	MTU      int    `json:"mtu"`
	Master   string `json:"master"`
	Linkinfo struct {
		InfoKind string `json:"info_kind"`
		InfoData struct {
			Table int `json:"table"`
		} `json:"info_data"`
	} `json:"linkinfo"`
}

func checkKernel(sc scope, r *recorder) {
	p := sc.p
	sc.routers(func(rt *plan.Router, st *routerState) {
		var links []linkInfo
		_ = json.Unmarshal([]byte(st.shell["links"]), &links)
		byName := map[string]linkInfo{}
		for _, l := range links {
			byName[l.IfName] = l
		}
		pl := strings.TrimSpace(st.shell["platform_labels"])
		r.check(pl == fmt.Sprint(p.Protocols.PlatformLabels), GroupKernel, "mpls platform_labels on "+rt.Name,
			"the mpls_router module is not loaded or the sysctl was not applied", "net.mpls.platform_labels = "+orNone(pl))
		for _, i := range rt.Interfaces {
			if i.LDP {
				v := strings.TrimSpace(st.shell["mpls_input "+i.Name])
				r.check(v == "1", GroupKernel, fmt.Sprintf("mpls input on %s %s", rt.Name, i.Name),
					"labelled packets arriving on this tunnel are dropped: set net.mpls.conf."+i.Name+".input=1", "input = "+orNone(v))
			}
			l, ok := byName[i.Name]
			r.check(ok && l.MTU == i.MTU, GroupKernel, fmt.Sprintf("tunnel mtu %s %s", rt.Name, i.Name),
				fmt.Sprintf("the tunnel MTU differs from the plan (%d): larger packets are dropped silently in MPLS or fragmented", i.MTU),
				fmt.Sprintf("mtu %d, planned %d", l.MTU, i.MTU))
		}
		for _, vn := range rt.VRFs {
			v := p.VRF(vn)
			l, ok := byName[vn]
			r.check(ok && l.Linkinfo.InfoKind == "vrf" && l.Linkinfo.InfoData.Table == v.Table, GroupKernel, fmt.Sprintf("vrf device %s on %s", vn, rt.Name),
				"the VRF device is missing or bound to another table", fmt.Sprintf("kind %q table %d, planned table %d", l.Linkinfo.InfoKind, l.Linkinfo.InfoData.Table, v.Table))
		}
		for _, a := range rt.Attachments {
			l := byName[a.Interface]
			r.check(l.Master == a.VRF, GroupKernel, fmt.Sprintf("%s on %s in vrf %s", a.Interface, rt.Name, a.VRF),
				"the CE interface is not enslaved to its VRF", fmt.Sprintf("master %q", l.Master))
		}
	})
}
