package plan

import (
	"fmt"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
)

func espCost(t *testing.T, proposal string) intent.ESPCost {
	t.Helper()
	c, ok := intent.ESPOverhead(proposal)
	if !ok {
		t.Fatalf("cannot size %q", proposal)
	}
	return c
}

// The worked figures of docs and notes (U = underlay MTU, 2 labels).
func TestMTUBudgetTable(t *testing.T) {
	chacha := espCost(t, intent.DefaultESP)
	cbc := espCost(t, "aes256-sha256-modp3072")
	gcm := espCost(t, "aes128gcm16-x25519")
	cases := []struct {
		name             string
		s                stack
		tunnelMTU, inner int
	}{
		{"ip6gre encaplimit none, ESP transport", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: chacha, labels: 2}, 1422, 1414},
		{"ip6gre default encap limit, ESP transport", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, encapLimit: true, ipsec: true, esp: chacha, labels: 2}, 1414, 1406},
		{"VXLAN, ESP transport", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapVXLAN, ipsec: true, esp: chacha, labels: 2}, 1396, 1388},
		{"ip6gre default encap limit, ESP tunnel", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, encapLimit: true, ipsec: true, tunnelMode: true, esp: chacha, labels: 2}, 1374, 1366},
		{"VXLAN, ESP tunnel", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapVXLAN, ipsec: true, tunnelMode: true, esp: chacha, labels: 2}, 1356, 1348},
		{"ip6gre encaplimit none, ESP tunnel", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, ipsec: true, tunnelMode: true, esp: chacha, labels: 2}, 1382, 1374},
		// Without IPsec only the tunnel headers count.
		{"ip6gre encaplimit none, clear", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, labels: 2}, 1456, 1448},
		{"ip6gre default encap limit, clear", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, encapLimit: true, labels: 2}, 1448, 1440},
		{"VXLAN over IPv6, clear", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapVXLAN, labels: 2}, 1430, 1422},
		{"GRE over IPv4, clear", stack{underlayMTU: 1500, encap: intent.EncapGRE, labels: 2}, 1476, 1468},
		{"VXLAN over IPv4, clear, jumbo", stack{underlayMTU: 9000, encap: intent.EncapVXLAN, labels: 3}, 8950, 8938},
		// IPv4 underlay: 20-byte outer header; the encapsulation limit is an
		// IPv6 option and does not apply.
		{"GRE over IPv4, ESP transport", stack{underlayMTU: 1500, encap: intent.EncapGRE, encapLimit: true, ipsec: true, esp: chacha, labels: 2}, 1442, 1434},
		{"GRE over IPv4, ESP tunnel", stack{underlayMTU: 1500, encap: intent.EncapGRE, ipsec: true, tunnelMode: true, esp: chacha, labels: 2}, 1422, 1414},
		// UDP encapsulation (port 4500) adds e = 8 before alignment.
		{"ip6gre, ESP transport, UDP-encapsulated", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, ipsec: true, udpEncap: true, esp: chacha, labels: 2}, 1414, 1406},
		{"VXLAN, ESP tunnel, UDP-encapsulated", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapVXLAN, ipsec: true, tunnelMode: true, udpEncap: true, esp: chacha, labels: 2}, 1348, 1340},
		// AES-CBC: 16-byte IV, 16-byte alignment, HMAC-SHA-256-128 ICV.
		{"ip6gre, ESP transport, aes256-sha256", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: cbc, labels: 2}, 1402, 1394},
		{"VXLAN, ESP tunnel, aes256-sha256", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapVXLAN, ipsec: true, tunnelMode: true, esp: cbc, labels: 2}, 1336, 1328},
		{"ip6gre, ESP transport, aes128gcm16", stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: gcm, labels: 2}, 1422, 1414},
		// Alignment: U = 1501..1503 give the same as 1500 (slack 1..3).
		{"ip6gre, ESP transport, U=1503", stack{underlayMTU: 1503, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: chacha, labels: 2}, 1422, 1414},
		{"ip6gre, ESP transport, U=1504", stack{underlayMTU: 1504, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: chacha, labels: 2}, 1426, 1418},
		{"ip6gre, ESP transport, U=1280", stack{underlayMTU: 1280, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: chacha, labels: 2}, 1202, 1194},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := budget(tc.s)
			if b.TunnelMTU != tc.tunnelMTU || b.MaxTunnelMTU != tc.tunnelMTU || b.InnerMTU != tc.inner {
				t.Errorf("tunnel MTU %d (max %d), inner %d; want tunnel %d, inner %d\nlayers: %+v slack %d",
					b.TunnelMTU, b.MaxTunnelMTU, b.InnerMTU, tc.tunnelMTU, tc.inner, b.Layers, b.Slack)
			}
			checkSum(t, tc.s, b)
		})
	}
}

// checkSum asserts the budget's invariant: every layer, the customer packet
// and the slack add up to the underlay MTU.
func checkSum(t *testing.T, s stack, b MTUBudget) {
	t.Helper()
	sum := b.InnerMTU + b.Slack
	for _, l := range b.Layers {
		if l.Bytes < 0 {
			t.Errorf("negative layer %+v", l)
		}
		sum += l.Bytes
	}
	if sum != b.UnderlayMTU || b.UnderlayMTU != s.underlayMTU {
		t.Errorf("U=%d: layers + inner + slack = %d, underlay %d\n%+v", s.underlayMTU, sum, b.UnderlayMTU, b)
	}
	if b.InnerMTU != b.TunnelMTU-4*s.labels {
		t.Errorf("U=%d: inner %d != tunnel %d - 4 x %d labels", s.underlayMTU, b.InnerMTU, b.TunnelMTU, s.labels)
	}
	align := 1
	if s.ipsec {
		align = s.esp.Align
	}
	if b.Slack < 0 || b.Slack >= align {
		t.Errorf("U=%d: slack %d outside [0, %d)", s.underlayMTU, b.Slack, align)
	}
}

// The property holds for every underlay MTU and every stack.
func TestMTUBudgetAddsUp(t *testing.T) {
	esps := map[string]intent.ESPCost{}
	for _, p := range []string{"chacha20poly1305", "aes256gcm16", "aes128-sha256", "aes256-sha384", "aes256-sha512"} {
		esps[p] = espCost(t, p)
	}
	n := 0
	for u := 1280; u <= 9000; u++ {
		for _, encap := range []string{intent.EncapGRE, intent.EncapVXLAN} {
			for mask := 0; mask < 32; mask++ {
				s := stack{underlayMTU: u, encap: encap, labels: 1 + u%3,
					outerV6: mask&1 != 0, encapLimit: mask&2 != 0, ipsec: mask&4 != 0, tunnelMode: mask&8 != 0, udpEncap: mask&16 != 0}
				if !s.ipsec && (s.tunnelMode || s.udpEncap) {
					continue
				}
				for name, c := range esps {
					if !s.ipsec && name != "chacha20poly1305" {
						continue
					}
					if s.ipsec {
						s.esp = c
					}
					b := budget(s)
					checkSum(t, s, b)
					n++
					if t.Failed() {
						t.Fatalf("stack %+v (%s)", s, name)
					}
				}
			}
		}
	}
	t.Logf("%d stacks checked", n)
}

// A pinned tunnel MTU moves the difference into the slack.
func TestMTUBudgetPinned(t *testing.T) {
	s := stack{underlayMTU: 1500, outerV6: true, encap: intent.EncapGRE, ipsec: true, esp: espCost(t, intent.DefaultESP), labels: 2}
	b := budget(s)
	b.pin(1400)
	if b.TunnelMTU != 1400 || b.MaxTunnelMTU != 1422 || b.InnerMTU != 1392 || b.Slack != 22 {
		t.Errorf("pinned: %+v", b)
	}
	sum := b.InnerMTU + b.Slack
	for _, l := range b.Layers {
		sum += l.Bytes
	}
	if sum != 1500 {
		t.Errorf("pinned budget adds up to %d", sum)
	}
}

// The default backbone, end to end: ip6gre links 1422/1414, the VXLAN link
// 1396/1388, customer MTU 1388.
func TestDefaultPlanMTU(t *testing.T) {
	doc, err := intent.LoadFile("")
	if err != nil {
		t.Fatal(err)
	}
	p, ps := Build(doc)
	if p == nil {
		t.Fatal(ps.Err())
	}
	var got []string
	for _, l := range p.Links {
		got = append(got, fmt.Sprintf("%s %s %d/%d", l.Name, l.Encap, l.MTU.TunnelMTU, l.MTU.InnerMTU))
	}
	want := []string{"pe101-pe201 gre 1422/1414", "pe201-pe202 gre 1422/1414", "pe202-pe102 vxlan 1396/1388", "pe102-pe101 gre 1422/1414"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("links:\n got %v\nwant %v", got, want)
	}
	if p.CustomerMTU != 1388 {
		t.Errorf("customer MTU %d, want 1388", p.CustomerMTU)
	}
	for _, s := range p.Sites {
		if s.MTU != 1388 {
			t.Errorf("site %s MTU %d, want 1388", s.CE, s.MTU)
		}
	}
}
