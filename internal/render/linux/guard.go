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
	// Peer is the far tunnel end's underlay address.
	Peer netip.Addr `json:"peer"`
	// Proto is the encapsulation's IP protocol: "gre" (47) or "udp".
	Proto string `json:"proto"`
	// Port is the UDP destination port (VXLAN), 0 for GRE.
	Port int `json:"port,omitempty"`
	// Tunnel is the tunnel device it guards (for people).
	Tunnel string `json:"tunnel"`
}

// Selector returns the policy's selector as ip xfrm writes it.
func (g Guard) Selector() string {
	anyAddr := "0.0.0.0/0"
	if g.Peer.Is6() {
		anyAddr = "::/0"
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

// guards returns the guard policies of r's encrypted tunnels.
func guards(r *plan.Router) []Guard {
	var out []Guard
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
