package verify

import (
	"os"
	"strings"
	"testing"
)

// The limit check on pe101's recorded `show bgp vrf cust-a neighbors
// json` (FRR 8.4, UML lab): ce1's two sessions cap at 1000 routes.
func TestCheckCELimits(t *testing.T) {
	rec, err := os.ReadFile("testdata/bgp-neighbors-cust-a-pe101.json")
	if err != nil {
		t.Fatal(err)
	}
	p := defaultPlan(t)
	run := func(out string) map[string]Result {
		t.Helper()
		sts := map[string]*routerState{}
		for _, r := range p.Routers {
			sts[r.Name] = &routerState{shell: map[string]string{}}
		}
		sts["pe101"].shell["bgp_neighbors cust-a"] = out
		r := &recorder{}
		checkCELimits(scope{p: p, sts: sts, only: map[string]bool{"pe101": true}}, r)
		got := map[string]Result{}
		for _, res := range r.results {
			got[res.Name] = res
		}
		return got
	}
	got := run(string(rec))
	v4, v6 := got["maximum-prefix pe101 -> ce1 172.31.1.2"], got["maximum-prefix pe101 -> ce1 fd00:ce:1::2"]
	if len(got) != 2 || !v4.Pass || !v6.Pass || !strings.Contains(v4.Evidence, "1 accepted, limit 1000") {
		t.Errorf("recorded: %+v", got)
	}
	p.Sites[0].MaxPrefixes = 20
	if r := run(string(rec))["maximum-prefix pe101 -> ce1 172.31.1.2"]; r.Pass || !strings.Contains(r.Evidence, "limit 1000 (want 20)") {
		t.Errorf("a limit other than the intent's: %+v", r)
	}
	if r := run("% bgpd is not running")["maximum-prefix pe101 -> ce1 fd00:ce:1::2"]; r.Pass {
		t.Errorf("no answer: %+v", r)
	}
}
