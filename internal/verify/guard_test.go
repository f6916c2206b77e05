package verify

import (
	"os"
	"strings"
	"testing"
)

// The guard check on pe201's recorded `ip xfrm policy list` (a UML lab):
// it passes as recorded, and fails when a guard policy is gone or when
// charon's policy would be outranked by it.
func TestCheckGuard(t *testing.T) {
	rec, err := os.ReadFile("testdata/xfrm-policy-pe201.txt")
	if err != nil {
		t.Fatal(err)
	}
	p := defaultPlan(t)
	run := func(out string) Result {
		t.Helper()
		sts := map[string]*routerState{}
		for _, r := range p.Routers {
			sts[r.Name] = &routerState{shell: map[string]string{}}
		}
		sts["pe201"].shell["xfrm_policy"] = out
		r := &recorder{}
		checkGuard(scope{p: p, sts: sts, only: map[string]bool{"pe201": true}}, r)
		if len(r.results) != 1 {
			t.Fatalf("want one result for pe201, got %+v", r.results)
		}
		return r.results[0]
	}
	if r := run(string(rec)); !r.Pass || !strings.Contains(r.Evidence, "4 block policies") {
		t.Errorf("recorded policies: %+v", r)
	}
	// One guard policy removed (its two lines).
	lines := strings.Split(string(rec), "\n")
	var cut []string
	for i := 0; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "src ::/0 dst 2001:db8:101::2/128 proto gre") {
			i++
			continue
		}
		cut = append(cut, lines[i])
	}
	if r := run(strings.Join(cut, "\n")); r.Pass || !strings.Contains(r.Evidence, "missing 1 of 4: src ::/0 dst 2001:db8:101::2/128 proto gre dir out") {
		t.Errorf("a missing guard: %+v", r)
	}
	// charon's outbound policy to pe101 at a priority the guard beats.
	weak := strings.Replace(string(rec), "dir out priority 268671", "dir out priority 3500000", 1)
	if r := run(weak); r.Pass || !strings.Contains(r.Evidence, "priority 3500000") {
		t.Errorf("an outranked IPsec policy: %+v", r)
	}
	if r := run(""); r.Pass {
		t.Errorf("no policies at all: %+v", r)
	}
}

func TestParseXfrmPolicies(t *testing.T) {
	ps := parseXfrmPolicies("src ::/0 dst 2001:db8:102::9/128 proto udp sport 0 dport 4789 \n\tdir out action block priority 3000000 ptype main \nsrc 10.0.0.1/32 dst 10.0.0.2/32 proto gre \n\tdir in priority 268671 ptype main \n\ttmpl src 0.0.0.0 dst 0.0.0.0\n")
	want := []xfrmPolicy{
		{sel: "src ::/0 dst 2001:db8:102::9/128 proto udp dport 4789", dir: "out", action: "block", priority: 3000000},
		{sel: "src 10.0.0.1/32 dst 10.0.0.2/32 proto gre", dir: "in", action: "allow", priority: 268671},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %+v", ps)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("policy %d: got %+v, want %+v", i, ps[i], want[i])
		}
	}
}
