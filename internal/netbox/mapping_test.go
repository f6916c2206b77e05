package netbox

import (
	"slices"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
)

// Every reference of the wanted objects names an object that is wanted
// too (of a kind written before), and natural keys are unique per kind:
// a push can always resolve its ids.
func TestDesiredIsClosed(t *testing.T) {
	for _, v := range intenttest.Variants(t) {
		doc, err := intent.Load(v.YAML, v.Name)
		if err != nil {
			t.Fatal(err)
		}
		p, ps := plan.Build(doc)
		if p == nil {
			t.Fatal(ps.Err())
		}
		want, kinds := Desired(doc.Intent, p, Options{Secrets: intenttest.PSKs{}})
		order := map[*Kind]int{}
		for i, k := range kinds.All() {
			order[k] = i
		}
		have := map[*Kind]map[string]bool{}
		for _, o := range want {
			if have[o.Kind] == nil {
				have[o.Kind] = map[string]bool{}
			}
			if have[o.Kind][o.Key] {
				t.Errorf("%s: two %s with key %q", v.Name, o.Kind.Name, o.Key)
			}
			have[o.Kind][o.Key] = true
		}
		check := func(o Object, field string, r Ref) {
			if !have[r.Kind][r.Key] {
				t.Errorf("%s: %s %q: %s refers to %s %q, which is not wanted", v.Name, o.Kind.Name, o.Key, field, r.Kind.Name, r.Key)
			}
			if order[r.Kind] >= order[o.Kind] {
				t.Errorf("%s: %s %q: %s refers to %s, written after it", v.Name, o.Kind.Name, o.Key, field, r.Kind.Name)
			}
		}
		for _, o := range want {
			for f, val := range o.Fields {
				switch r := val.(type) {
				case Ref:
					check(o, f, r)
				case Refs:
					for _, x := range r {
						check(o, f, x)
					}
				}
			}
		}
		if n := len(have[kinds.Termination]); n != 2*len(p.Links) {
			t.Errorf("%s: %d tunnel terminations for %d links", v.Name, n, len(p.Links))
		}
	}
}

func TestSameValue(t *testing.T) {
	for _, c := range []struct {
		want, live any
		same       bool
	}{
		{"active", map[string]any{"value": "active", "label": "Active"}, true},
		{"offline", map[string]any{"value": "active", "label": "Active"}, false},
		{float64(7), map[string]any{"id": float64(7), "name": "x"}, true},
		{[]any{float64(3), float64(1)}, []any{map[string]any{"id": float64(1)}, map[string]any{"id": float64(3)}}, true},
		{[]any{map[string]any{"slug": "backbone"}}, []any{map[string]any{"id": float64(9), "slug": "backbone"}}, true},
		{map[string]any{"bb_cost": float64(20)}, map[string]any{"bb_cost": float64(10), "other": "x"}, false},
		{map[string]any{"bb_cost": nil}, map[string]any{"bb_cost": nil, "other": "x"}, true},
		{nil, nil, true},
		{"", nil, true},
	} {
		if got := sameValue(c.want, c.live); got != c.same {
			t.Errorf("sameValue(%v, %v) = %v", c.want, c.live, got)
		}
	}
}

func TestNBProposals(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []nbProposal
	}{
		{"aes256gcm16-prfsha384-ecp384", []nbProposal{{"aes-256-gcm", "", 20}}},
		{"aes256-sha256-modp3072", []nbProposal{{"aes-256-cbc", "hmac-sha256", 15}}},
		{"aes128gcm16-x25519,aes256-sha384-ecp521", []nbProposal{{"aes-128-gcm", "", 31}, {"aes-256-cbc", "hmac-sha384", 21}}},
		{"aes256-aes128-sha512-sha256-curve448-esn", []nbProposal{{"aes-256-cbc", "hmac-sha512", 32}}},
		{"chacha20poly1305-prfsha256-x25519", nil},
		{"aes256gcm16-x25519,chacha20poly1305", nil},
		{"x25519", nil},
	} {
		got, ok := nbProposals(c.in)
		if ok != (c.want != nil) || !slices.Equal(got, c.want) {
			t.Errorf("nbProposals(%q) = %v, %v; want %v", c.in, got, ok, c.want)
		}
	}
}

// Keys reach NetBox only when asked for.
func TestDesiredSecrets(t *testing.T) {
	p := intenttest.Plan(t, intent.DefaultYAML(), "default")
	doc, err := intent.Load(intent.DefaultYAML(), "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, withKeys := range []bool{false, true} {
		var opts Options
		if withKeys {
			opts.Secrets = intenttest.PSKs{}
		}
		want, kinds := Desired(doc.Intent, p, opts)
		keyOf := map[string]string{}
		for _, pl := range p.Links {
			keyOf[TunnelName("default", pl.Name)] = intenttest.PSKs{}.PSK(plan.LinkKey(pl.Ends[0], pl.Ends[1]))
		}
		n := 0
		for _, o := range want {
			if o.Kind != kinds.IKEPolicy {
				continue
			}
			n++
			key, has := o.Fields["preshared_key"]
			if has != withKeys || (withKeys && key != keyOf[o.Key]) {
				t.Errorf("with keys %v: IKE policy %s: preshared_key %v", withKeys, o.Key, key)
			}
		}
		if n != 4 {
			t.Errorf("%d IKE policies, want 4", n)
		}
	}
}
