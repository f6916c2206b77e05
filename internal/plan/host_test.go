package plan_test

import (
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
)

// A router on NetworkManager keeps ip6gre's encapsulation-limit option on
// its GRE links (NM cannot drop it), on both ends, with a warning: 1414
// instead of 1422 on a 1500-byte underlay. VXLAN links and links between
// networkd routers keep their MTU.
func TestNetworkManagerKeepsEncapLimit(t *testing.T) {
	y := intenttest.EditDefault(t,
		`    underlay: {ipv6: "2001:db8:101::2/64"}`, `    underlay: {ipv6: "2001:db8:101::2/64"}
    host: {os: rocky9}`,
		`    underlay: {ipv6: "2001:db8:201::2/64"}`, `    underlay: {ipv6: "2001:db8:201::2/64"}
    host: {os: debian12}`)
	doc, err := intent.Load(y, "nm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, ps := plan.Build(doc)
	if p == nil {
		t.Fatal(ps.Err())
	}
	if h := p.Router("pe101").Host; h == nil || h.Network != intent.NetworkManager {
		t.Errorf("pe101 host = %+v, want rocky9's default, networkmanager", h)
	}
	if h := p.Router("pe201").Host; h == nil || h.Network != intent.NetworkD {
		t.Errorf("pe201 host = %+v, want debian12's default, networkd", h)
	}
	want := map[string]int{"pe101-pe201": 1414, "pe201-pe202": 1422, "pe102-pe101": 1414}
	for _, l := range p.Links {
		if w, ok := want[l.Name]; ok && l.MTU.TunnelMTU != w {
			t.Errorf("link %s: tunnel MTU %d, want %d", l.Name, l.MTU.TunnelMTU, w)
		}
	}
	for _, r := range []string{"pe101", "pe201"} {
		for _, i := range p.Router(r).Interfaces {
			if i.Peer == "pe101" || r == "pe101" {
				if !i.EncapLimit || i.MTU != 1414 {
					t.Errorf("%s %s: encap limit %v mtu %d, want kept and 1414 on both ends", r, i.Name, i.EncapLimit, i.MTU)
				}
			}
		}
	}
	var warned []string
	for _, pr := range ps {
		if pr.Severity == intent.Warning && strings.Contains(pr.Message, "NetworkManager") {
			warned = append(warned, pr.Path)
		}
	}
	if strings.Join(warned, " ") != "links[0] links[3]" {
		t.Errorf("NetworkManager warnings on %v, want links[0] links[3]", warned)
	}
}
