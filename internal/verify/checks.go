package verify

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/backbone-net/backbone/internal/plan"
)

// linkEnds yields every backbone interface with its router and peer.
func linkEnds(p *plan.Plan, fn func(r, peer *plan.Router, i *plan.Interface)) {
	for _, r := range p.Routers {
		for _, i := range r.Interfaces {
			fn(r, p.Router(i.Peer), i)
		}
	}
}

func unreachable(st *routerState) string {
	if st == nil {
		return "no data collected"
	}
	if st.err != nil {
		return st.err.Error()
	}
	return ""
}

func checkIGP(p *plan.Plan, sts map[string]*routerState, r *recorder) {
	linkEnds(p, func(rt, peer *plan.Router, i *plan.Interface) {
		st := sts[rt.Name]
		name := fmt.Sprintf("ospfv2 %s %s -> %s", rt.Name, i.Name, peer.Name)
		cause := fmt.Sprintf("tunnel %s down, IPsec SA missing, or OSPF timers/area/network type differ on %s and %s", i.Name, rt.Name, peer.Name)
		state := "absent"
		if st != nil {
			for _, n := range st.ospf.Neighbors[peer.LoopbackV4.String()] {
				if strings.HasPrefix(n.IfName, i.Name+":") || n.IfName == i.Name {
					state = n.NbrState
				}
			}
		}
		if u := unreachable(st); u != "" && state == "absent" {
			state = u
		}
		r.check(strings.HasPrefix(state, "Full"), GroupIGP, name, cause, "neighbor "+peer.LoopbackV4.String()+": "+state)

		name = fmt.Sprintf("ospfv3 %s %s -> %s", rt.Name, i.Name, peer.Name)
		state = "absent"
		if st != nil {
			for _, n := range st.ospf6.Neighbors {
				if n.NeighborID == peer.LoopbackV4.String() && n.InterfaceName == i.Name {
					state = n.State
				}
			}
		}
		r.check(state == "Full", GroupIGP, name, cause+" (OSPFv3 also needs IPv6 link-local addresses on the tunnel)", "neighbor "+peer.LoopbackV4.String()+": "+state)
	})
	for _, rt := range p.Routers {
		if rt.Role == "ce" {
			continue
		}
		st := sts[rt.Name]
		var missing []string
		for _, other := range p.Routers {
			if other.Role == "ce" || other == rt {
				continue
			}
			for _, pfx := range []netip.Prefix{netip.PrefixFrom(other.LoopbackV4, 32), netip.PrefixFrom(other.LoopbackV6, 128)} {
				rib := st.rib4
				if pfx.Addr().Is6() {
					rib = st.rib6
				}
				if !installed(rib[pfx.String()]) {
					missing = append(missing, pfx.String())
				}
			}
		}
		ev := "all loopbacks installed"
		if len(missing) > 0 {
			ev = "missing: " + strings.Join(missing, " ")
		}
		r.check(len(missing) == 0, GroupIGP, "loopbacks reachable from "+rt.Name, "OSPF has not converged or a router is isolated", ev)
	}
}

func installed(routes []ribRoute) bool {
	for _, rt := range routes {
		if rt.Selected && rt.Installed {
			return true
		}
	}
	return false
}

func checkLDP(p *plan.Plan, sts map[string]*routerState, r *recorder) {
	linkEnds(p, func(rt, peer *plan.Router, i *plan.Interface) {
		if !i.LDP {
			return
		}
		st := sts[rt.Name]
		state := "absent"
		af := ""
		if st != nil {
			for _, n := range st.ldp.Neighbors {
				if n.NeighborID == peer.LoopbackV4.String() {
					state, af = n.State, n.AddressFamily
				}
			}
		}
		r.check(state == "OPERATIONAL", GroupLDP, fmt.Sprintf("session %s -> %s", rt.Name, peer.Name),
			fmt.Sprintf("LDP not enabled on %s at one end, transport addresses unreachable, or dual-stack preference differs", i.Name),
			fmt.Sprintf("neighbor %s: %s (transport %s)", peer.LoopbackV4, state, af))
	})
	for _, rt := range p.Routers {
		if rt.Role == "ce" || len(rt.Interfaces) == 0 {
			continue
		}
		st := sts[rt.Name]
		for _, fam := range []string{"ipv4", "ipv6"} {
			var missing []string
			for _, other := range p.Routers {
				if other.Role == "ce" || other == rt {
					continue
				}
				pfx := netip.PrefixFrom(other.LoopbackV4, 32).String()
				if fam == "ipv6" {
					pfx = netip.PrefixFrom(other.LoopbackV6, 128).String()
				}
				found := false
				for _, b := range st.binds.Bindings {
					if b.Prefix == pfx && b.InUse > 0 && b.RemoteLabel != "" && b.RemoteLabel != "-" {
						found = true
					}
				}
				if !found {
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
	}
}

func checkBGP(p *plan.Plan, sts map[string]*routerState, r *recorder) {
	for _, rt := range p.PEs() {
		st := sts[rt.Name]
		for _, peer := range rt.Peers {
			for _, fam := range []struct {
				name string
				addr netip.Addr
				sum  bgpSummary
			}{{"VPNv4", peer.IPv4, st.vpn4}, {"VPNv6", peer.IPv6, st.vpn6}} {
				state := "absent"
				if s, ok := fam.sum.Peers[fam.addr.String()]; ok {
					state = s.State
				}
				r.check(state == "Established", GroupBGP, fmt.Sprintf("%s %s -> %s", fam.name, rt.Name, peer.Name),
					"loopback unreachable, or ASN/update-source/address-family differs on the two PEs",
					fmt.Sprintf("session to %s: %s", fam.addr, state))
			}
		}
	}
	// Every remote site's networks in each VRF, installed with labels.
	for _, rt := range p.PEs() {
		st := sts[rt.Name]
		for _, vn := range rt.VRFs {
			for _, s := range p.Sites {
				if s.VRF != vn || s.PE == rt.Name {
					continue
				}
				for _, pfx := range siteNetworks(s) {
					name := fmt.Sprintf("vrf %s on %s: %s (%s)", vn, rt.Name, pfx, s.CE)
					routes := st.vrfRIB[vn][pfx.String()]
					var labels []int
					ok := false
					for _, rr := range routes {
						if rr.Selected && rr.Installed {
							for _, nh := range rr.Nexthops {
								if len(nh.Labels) > 0 {
									ok, labels = true, nh.Labels
								}
							}
						}
					}
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

func checkKernel(p *plan.Plan, sts map[string]*routerState, r *recorder) {
	for _, rt := range p.Routers {
		if rt.Role == "ce" {
			continue
		}
		st := sts[rt.Name]
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
	}
}
