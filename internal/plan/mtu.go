package plan

import (
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
)

// Layer is one piece of header or trailer a packet carries on a link.
type Layer struct {
	Name  string `json:"name"`
	Bytes int    `json:"bytes"`
}

// MTUBudget is the byte-exact MTU stack of one link, for the largest packet
// that crosses it.
type MTUBudget struct {
	UnderlayMTU int `json:"underlay_mtu"`
	// Layers lists, outermost first, every header and trailer of the largest
	// packet; with InnerMTU and Slack they add up to UnderlayMTU.
	Layers []Layer `json:"layers"`
	// Slack is what ESP's alignment leaves unused.
	Slack int `json:"slack"`
	// MaxTunnelMTU is the largest tunnel MTU the stack allows.
	MaxTunnelMTU int `json:"max_tunnel_mtu"`
	// TunnelMTU is what the plan configures (MaxTunnelMTU unless pinned).
	TunnelMTU int `json:"tunnel_mtu"`
	Labels    int `json:"labels"`
	// InnerMTU is the largest customer IP packet that crosses unfragmented:
	// TunnelMTU minus the label stack.
	InnerMTU int `json:"inner_mtu"`
}

// stack describes what is wrapped around a customer packet on a link.
type stack struct {
	underlayMTU int
	outerV6     bool   // underlay family
	encap       string // intent.EncapGRE or intent.EncapVXLAN
	encapLimit  bool   // ip6gre keeps its 8-byte encapsulation-limit option
	ipsec       bool
	tunnelMode  bool
	udpEncap    bool
	esp         intent.ESPCost
	labels      int
}

func alignDown(n, a int) int { return n - n%a }

// budget computes the MTU stack. The ESP arithmetic follows the kernel: the
// ESP payload plus its 2-byte trailer is padded to the cipher's alignment,
// so the largest protected packet is
//
//	transport: outerIP + alignDown(U - outerIP - e - 8 - IV - ICV, A) - 2
//	tunnel:    alignDown(U - outerIP - e - 8 - IV - ICV, A) - 2
//
// with e = 8 under UDP encapsulation. For U=1500 over IPv6 with
// chacha20poly1305 that is 1466 (transport) and 1426 (tunnel).
func budget(s stack) MTUBudget {
	outer := 20
	ipName := "outer IPv4 header"
	if s.outerV6 {
		outer, ipName = 40, "outer IPv6 header"
	}
	b := MTUBudget{UnderlayMTU: s.underlayMTU, Labels: s.labels}
	// protected is the largest tunnel packet (with its own outer IP header)
	// that fits the underlay after ESP.
	protected := s.underlayMTU
	var espLayers []Layer
	if s.ipsec {
		e := 0
		if s.udpEncap {
			e = 8
		}
		avail := alignDown(s.underlayMTU-outer-e-8-s.esp.IV-s.esp.ICV, s.esp.Align)
		if s.tunnelMode {
			protected = avail - 2
		} else {
			protected = outer + avail - 2
		}
		espLayers = append(espLayers, Layer{"ESP header (SPI, sequence)", 8}, Layer{"ESP IV", s.esp.IV})
		if e > 0 {
			espLayers = append([]Layer{{"UDP encapsulation (port 4500)", 8}}, espLayers...)
		}
		if s.tunnelMode {
			// Tunnel mode keeps the tunnel's own header inside ESP, behind
			// the IV: the listing goes outermost first.
			espLayers = append(espLayers, Layer{"tunnel's " + strings.TrimPrefix(ipName, "outer ") + " inside ESP tunnel mode", outer})
		}
	}
	var encap []Layer
	switch s.encap {
	case intent.EncapVXLAN:
		encap = []Layer{{"UDP", 8}, {"VXLAN", 8}, {"inner Ethernet", 14}}
	default:
		encap = []Layer{{"GRE", 4}}
		if s.outerV6 && s.encapLimit {
			encap = append([]Layer{{"ip6gre encapsulation-limit option", 8}}, encap...)
		}
	}
	tunnelMTU := protected - outer
	for _, l := range encap {
		tunnelMTU -= l.Bytes
	}
	b.MaxTunnelMTU = tunnelMTU
	b.TunnelMTU = tunnelMTU
	b.Layers = append(b.Layers, Layer{ipName, outer})
	b.Layers = append(b.Layers, espLayers...)
	b.Layers = append(b.Layers, encap...)
	b.Layers = append(b.Layers, Layer{"MPLS labels", 4 * s.labels})
	b.InnerMTU = b.TunnelMTU - 4*s.labels
	if s.ipsec {
		// The ESP trailer of the largest packet: pad + pad length + next
		// header, and the ICV. Whatever alignment leaves over is slack.
		payload := protected - outer
		if s.tunnelMode {
			payload = protected
		}
		padded := payload + 2
		if r := padded % s.esp.Align; r != 0 {
			padded += s.esp.Align - r
		}
		b.Layers = append(b.Layers, Layer{"ESP padding, pad length, next header", padded - payload}, Layer{"ESP ICV", s.esp.ICV})
	}
	used := b.InnerMTU
	for _, l := range b.Layers {
		used += l.Bytes
	}
	b.Slack = s.underlayMTU - used
	return b
}

// pin applies a configured tunnel MTU (already checked to fit).
func (b *MTUBudget) pin(mtu int) {
	b.Slack += b.TunnelMTU - mtu
	b.TunnelMTU = mtu
	b.InnerMTU = mtu - 4*b.Labels
}
