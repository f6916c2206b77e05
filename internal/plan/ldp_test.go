package plan_test

import (
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
)

// An LDP adjacency is multihop when the IGP's best path between the two
// routers does not cross their link, or ties with one that does not.
func TestLDPMultihop(t *testing.T) {
	for _, c := range []struct {
		name string
		cost string // of the backup link pe101-pe202; "" for no such link
		want bool
	}{
		{"ring only", "", false},
		{"backup, cost 100", "100", true},
		{"backup, cost 20 ties with two hops of 10", "20", true},
		{"backup, cost 10 is the best path", "10", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := intent.DefaultYAML()
			if c.cost != "" {
				y = intenttest.MustEdit(t, intenttest.BackupLink(t), "    cost: 100\n", "    cost: "+c.cost+"\n")
			}
			p := intenttest.Plan(t, y, c.name)
			var multi []string
			for _, r := range p.Routers {
				for _, i := range r.Interfaces {
					if i.LDPMultihop {
						multi = append(multi, r.Name+"/"+i.Name)
					}
				}
			}
			want := []string(nil)
			if c.want {
				want = []string{"pe101/gre-pe202", "pe202/gre-pe101"}
			}
			if strings.Join(multi, " ") != strings.Join(want, " ") {
				t.Errorf("multihop %v, want %v", multi, want)
			}
		})
	}
	// The triangle: pe101-pe201 is the backup, both ways.
	tri := intenttest.Plan(t, intenttest.Triangle(t), "triangle")
	for _, r := range []string{"pe101", "pe201"} {
		for _, i := range tri.Router(r).Interfaces {
			if want := (i.Peer == "pe101" || i.Peer == "pe201"); i.LDPMultihop != want {
				t.Errorf("triangle %s %s: multihop %v, want %v", r, i.Name, i.LDPMultihop, want)
			}
		}
	}
	// The warning names the path.
	doc, err := intent.Load(intenttest.BackupLink(t), "backup")
	if err != nil {
		t.Fatal(err)
	}
	_, ps := plan.Build(doc)
	found := false
	for _, pr := range ps.Warnings() {
		if strings.Contains(pr.Message, "the IGP reaches pe202's loopback from pe101 through") && pr.Path == "links[4]" {
			found = true
		}
	}
	if !found {
		t.Errorf("no GTSM warning on links[4]: %v", ps)
	}
}
