package plan_test

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
)

func mustBuild(t *testing.T, y []byte) *plan.Plan {
	t.Helper()
	return intenttest.Plan(t, y, "test.yaml")
}

// identities maps every allocated fact of a plan to its value, keyed by
// what it belongs to (router, link by its ends, interface, VRF on a PE).
func identities(p *plan.Plan) map[string]string {
	m := map[string]string{}
	for _, r := range p.Routers {
		if r.Role != intent.RoleCE {
			m["loopback4 "+r.Name] = r.LoopbackV4.String()
			m["loopback6 "+r.Name] = r.LoopbackV6.String()
		}
		for _, i := range r.Interfaces {
			k := fmt.Sprintf("interface %s %s ", r.Name, i.Name)
			m[k+"ipv4"] = i.IPv4.String()
			m[k+"ipv6"] = i.IPv6.String()
			m[k+"vni"] = fmt.Sprint(i.VNI)
		}
		for _, vn := range r.VRFs {
			m[fmt.Sprintf("rd %s %s", r.Name, vn)] = p.VRF(vn).RDOn(r)
		}
	}
	for _, l := range p.Links {
		k := "link " + l.Name + " "
		m[k+"ipv4"] = l.IPv4.String()
		m[k+"ipv6"] = l.IPv6.String()
		m[k+"vni"] = fmt.Sprint(l.VNI)
	}
	for _, v := range p.VRFs {
		m["table "+v.Name] = fmt.Sprint(v.Table)
	}
	return m
}

// keep returns the entries of after whose keys are in before.
func keep(after, before map[string]string) map[string]string {
	out := map[string]string{}
	for k := range before {
		if v, ok := after[k]; ok {
			out[k] = v
		} else {
			out[k] = "<missing>"
		}
	}
	return out
}

var loopbackLine = regexp.MustCompile(`(?m)^    loopback: .*\n`)

// appendix adds a PE, two links, a VRF and a site at the end of each list.
var appendix = []string{
	"  - name: ce1\n", "  - name: pe301\n    role: pe\n    underlay: {ipv6: \"2001:db8:301::2/64\"}\n  - name: ce1\n",
	"  - name: ce2\n    role: ce\n", "  - name: ce2\n    role: ce\n  - {name: ce3, role: ce}\n",
	"    encap: gre\n\nvrfs:", "    encap: gre\n  - {between: [pe301, pe202], encap: vxlan}\n  - {between: [pe101, pe301]}\n\nvrfs:",
	"    export: [\"65000:100\"]\n", "    export: [\"65000:100\"]\n  - {name: cust-b, id: 7, import: [\"65000:7\"], export: [\"65000:7\"]}\n",
	"    routing: static\n", "    routing: static\n  - {ce: ce3, pe: pe301, vrf: cust-b, ipv4: 172.31.3.0/30, prefixes: [192.168.3.0/24]}\n",
}

func TestAppendingKeepsAllocations(t *testing.T) {
	pinned := intent.DefaultYAML()
	// The same backbone with every loopback allocated, not pinned.
	allocated := loopbackLine.ReplaceAll(pinned, nil)
	for _, tc := range []struct {
		name string
		base []byte
	}{{"pinned loopbacks", pinned}, {"allocated loopbacks", allocated}} {
		t.Run(tc.name, func(t *testing.T) {
			before := identities(mustBuild(t, tc.base))
			afterPlan := mustBuild(t, intenttest.MustEdit(t, tc.base, appendix...))
			after := identities(afterPlan)
			if diff := cmp.Diff(before, keep(after, before)); diff != "" {
				t.Errorf("appending changed existing allocations (-before +after):\n%s", diff)
			}
			if len(after) <= len(before) {
				t.Errorf("nothing was added: %d facts before, %d after", len(before), len(after))
			}
			// The plan is still a plan: no two links share a network.
			seen := map[string]string{}
			for _, l := range afterPlan.Links {
				for _, n := range []string{l.IPv4.String(), l.IPv6.String()} {
					if prev, ok := seen[n]; ok {
						t.Errorf("%s used by %s and %s", n, prev, l.Name)
					}
					seen[n] = l.Name
				}
			}
		})
	}
}

func TestRemovingALinkKeepsTheOthers(t *testing.T) {
	base := loopbackLine.ReplaceAll(intent.DefaultYAML(), nil)
	before := identities(mustBuild(t, base))
	after := identities(mustBuild(t, intenttest.MustEdit(t, base, "  - between: [pe201, pe202]\n    encap: gre\n", "")))
	// Drop what belonged to the removed link.
	removed := regexp.MustCompile(`^(link pe201-pe202 |interface pe201 gre-pe202 |interface pe202 gre-pe201 )`)
	for k := range before {
		if removed.MatchString(k) {
			delete(before, k)
		}
	}
	if diff := cmp.Diff(before, keep(after, before)); diff != "" {
		t.Errorf("removing links[1] changed other allocations (-before +after):\n%s", diff)
	}
}

// On a large backbone: append a PE with two links; remove a link in the
// middle. Link networks are hashed into a /16, so (barring hash
// collisions, which the plan resolves in declaration order) nothing moves.
func TestLargeBackboneStability(t *testing.T) {
	base := intenttest.Generate(60, 2)
	before := identities(mustBuild(t, base))

	grown := intenttest.MustEdit(t, base,
		"links:\n", "  - {name: pe61, role: pe, underlay: {ipv6: \"2001:db8:61a::2/64\"}}\nlinks:\n",
		"vrfs:\n", "  - {between: [pe61, pe7]}\n  - {between: [pe61, pe40], encap: vxlan}\nvrfs:\n")
	if diff := cmp.Diff(before, keep(identities(mustBuild(t, grown)), before)); diff != "" {
		t.Errorf("appending changed existing allocations (-before +after):\n%s", diff)
	}

	shrunk := intenttest.MustEdit(t, base, "  - {between: [pe31, pe32], encap: gre}\n", "")
	removed := regexp.MustCompile(`^(link pe31-pe32 |interface pe31 gre-pe32 |interface pe32 gre-pe31 )`)
	for k := range before {
		if removed.MatchString(k) {
			delete(before, k)
		}
	}
	if diff := cmp.Diff(before, keep(identities(mustBuild(t, shrunk)), before)); diff != "" {
		t.Errorf("removing a link changed other allocations (-before +after):\n%s", diff)
	}
}
