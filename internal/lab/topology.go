package lab

import (
	"fmt"
	"net/netip"

	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// Underlay is the name of the node that plays the provider network.
const Underlay = "underlay"

// underlayHost configures the underlay router: a gateway address in each
// PE's underlay network, and forwarding. PEs whose underlay addresses share
// a network are on one LAN: their wires join a bridge that holds the
// gateway (the case where bypass-lan would leave traffic in clear).
func underlayHost(p *plan.Plan) *linux.Host {
	h := &linux.Host{Router: Underlay, Role: "underlay"}
	h.Sysctls = []linux.Sysctl{
		{Key: "net.ipv4.ip_forward", Value: "1"},
		{Key: "net.ipv6.conf.all.forwarding", Value: "1"},
	}
	// Count the PEs of each underlay network.
	members := map[netip.Prefix]int{}
	for _, r := range p.Routers {
		if r.Underlay == nil {
			continue
		}
		for _, a := range []netip.Prefix{r.Underlay.IPv6, r.Underlay.IPv4} {
			if a.IsValid() {
				members[a.Masked()]++
			}
		}
	}
	bridges := map[netip.Prefix]string{}
	for _, w := range underlayWires(p) {
		r := p.Router(w.bNode)
		d := linux.Device{Name: w.aDev, Kind: linux.KindPhysical, MTU: w.mtu, Peer: r.Name}
		for _, gw := range []struct {
			addr netip.Addr
			net  netip.Prefix
		}{{r.Underlay.GatewayV6, r.Underlay.IPv6}, {r.Underlay.GatewayV4, r.Underlay.IPv4}} {
			if !gw.addr.IsValid() {
				continue
			}
			net := gw.net.Masked()
			if members[net] < 2 {
				h.Addresses = append(h.Addresses, linux.Address{Device: w.aDev, Prefix: netip.PrefixFrom(gw.addr, net.Bits())})
				continue
			}
			br, ok := bridges[net]
			if !ok {
				br = fmt.Sprintf("ulan%d", len(bridges))
				bridges[net] = br
				h.Devices = append([]linux.Device{{Name: br, Kind: linux.KindBridge, MTU: w.mtu}}, h.Devices...)
				h.Addresses = append(h.Addresses, linux.Address{Device: br, Prefix: netip.PrefixFrom(gw.addr, net.Bits())})
				h.Modules = []string{"bridge"}
			}
			d.Master = br
		}
		h.Devices = append(h.Devices, d)
	}
	return h
}

// wire is a veth pair between two nodes; each end is named as the node's
// configuration names the interface.
type wire struct {
	aNode, aDev, bNode, bDev string
	mtu                      int
}

// underlayWires connect the underlay node to every PE's WAN interface.
func underlayWires(p *plan.Plan) []wire {
	var out []wire
	for _, r := range p.Routers {
		if r.Underlay == nil {
			continue
		}
		mtu := 0
		for _, i := range r.Interfaces {
			if m := p.Links[i.Link].MTU.UnderlayMTU; m > mtu {
				mtu = m
			}
		}
		out = append(out, wire{aNode: Underlay, aDev: "u-" + r.Name, bNode: r.Name, bDev: r.Underlay.Interface, mtu: mtu})
	}
	return out
}

// wires are every veth pair of the lab: the underlay's, then the PE-CE
// attachments.
func wires(p *plan.Plan) []wire {
	out := underlayWires(p)
	for _, s := range p.Sites {
		out = append(out, wire{aNode: s.PE, aDev: s.PEInterface, bNode: s.CE, bDev: s.CEInterface, mtu: s.MTU})
	}
	return out
}
