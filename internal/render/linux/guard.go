package linux

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// GuardPriority is the XFRM priority of the guard policies. The kernel
// applies the policy with the lowest number among those that match, and
// charon's policies for a /128 or /32 pair of tunnel ends stay far below
// this (about 200,000 to 400,000): while charon's policy exists it
// protects the traffic; once it is gone (charon stopped, crashed, a
// connection unloaded) the guard matches and the kernel drops the packet.
const GuardPriority = 3000000

// Guard is one XFRM policy with action block that keeps a tunnel's
// packets from crossing the underlay in clear when no IPsec policy of
// charon covers them: outbound to the peer's underlay address, inbound
// from it. It is the kernel's own fail-closed, independent of charon.
// Its selector deliberately differs from charon's (any address on our
// side, not our tunnel end) so that the two never collide.
type Guard struct {
	// Dir is "out" or "in".
	Dir string `json:"dir"`
	// Peer is the far tunnel end's underlay address; unset for a guard
	// that holds for every address (PacketTooBigGuard).
	Peer netip.Addr `json:"peer,omitzero"`
	// Proto is the encapsulation's IP protocol: "gre" (47) or "udp", or
	// "ipv6-icmp" with ICMPType.
	Proto string `json:"proto"`
	// Port is the UDP destination port (VXLAN), 0 for GRE.
	Port int `json:"port,omitempty"`
	// ICMPType is the ICMPv6 type of an ipv6-icmp guard.
	ICMPType int `json:"icmp_type,omitempty"`
	// Tunnel is the tunnel device it guards (for people); empty for a
	// guard of the whole router.
	Tunnel string `json:"tunnel,omitempty"`
}

// PacketTooBigGuard drops every ICMPv6 Packet Too Big a PE would send.
// Linux sends the Packet Too Big for an oversize customer packet in a VRF
// from the MPLS route's output device, in the default table: out of the
// underlay interface, addressed to the customer, in clear. A PE forwards
// nothing in the default table that needs one (MPLS drops oversize
// packets without ICMP), so none is lost that could have worked.
func PacketTooBigGuard() Guard {
	return Guard{Dir: "out", Proto: "ipv6-icmp", ICMPType: 2}
}

// Selector returns the policy's selector as ip xfrm writes it.
func (g Guard) Selector() string {
	anyAddr := "0.0.0.0/0"
	if g.Peer.Is6() {
		anyAddr = "::/0"
	}
	if !g.Peer.IsValid() {
		s := fmt.Sprintf("src ::/0 dst ::/0 proto %s", g.Proto)
		if g.ICMPType != 0 {
			s += fmt.Sprintf(" type %d", g.ICMPType)
		}
		return s
	}
	peer := netip.PrefixFrom(g.Peer, g.Peer.BitLen()).String()
	src, dst := anyAddr, peer
	if g.Dir == "in" {
		src, dst = peer, anyAddr
	}
	s := fmt.Sprintf("src %s dst %s proto %s", src, dst, g.Proto)
	if g.Port != 0 {
		s += fmt.Sprintf(" dport %d", g.Port)
	}
	return s
}

// Argv is the ip command that installs (or refreshes) the policy.
func (g Guard) Argv() []string {
	return append(append([]string{"ip", "xfrm", "policy", "update"}, strings.Fields(g.Selector())...),
		"dir", g.Dir, "priority", fmt.Sprint(GuardPriority), "action", "block")
}

// guards returns the guard policies of r's encrypted tunnels, and on a
// PE with customer sites the Packet Too Big guard.
func guards(r *plan.Router) []Guard {
	var out []Guard
	if len(r.Attachments) > 0 {
		out = append(out, PacketTooBigGuard())
	}
	for _, i := range r.Interfaces {
		if !i.Encrypted {
			continue
		}
		proto, port := "gre", 0
		if i.Encap == intent.EncapVXLAN {
			proto, port = "udp", VXLANPort
		}
		for _, dir := range []string{"out", "in"} {
			out = append(out, Guard{Dir: dir, Peer: i.Remote, Proto: proto, Port: port, Tunnel: i.Name})
		}
	}
	return out
}
