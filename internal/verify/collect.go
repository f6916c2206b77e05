package verify

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/backbone-net/backbone/internal/frrstate"
	"github.com/backbone-net/backbone/internal/plan"
)

// routerState is what was collected from one backbone router.
type routerState struct {
	err   error
	frr   *frrstate.State
	shell map[string]string // section -> output of shell commands
}

// queries are the FRR questions verify asks a router.
func queries(p *plan.Plan, r *plan.Router) []frrstate.Query {
	q := []frrstate.Query{frrstate.OSPF, frrstate.OSPF6, frrstate.LDP, frrstate.Bindings, frrstate.RIB4, frrstate.RIB6}
	if p.Protocols.LDPSync && ldpLinks(r) > 0 {
		q = append(q, frrstate.LDPSync)
	}
	if p.Protocols.BFD && len(r.Interfaces) > 0 {
		q = append(q, frrstate.BFD)
	}
	if r.Role == "pe" {
		q = append(q, frrstate.BGP)
		for _, v := range r.VRFs {
			q = append(q, frrstate.VRFRIB4(v), frrstate.VRFRIB6(v))
		}
	}
	return q
}

func ldpLinks(r *plan.Router) int {
	n := 0
	for _, i := range r.Interfaces {
		if i.LDP {
			n++
		}
	}
	return n
}

// shellSections are the kernel queries of a router, as named sections.
func shellSections(r *plan.Router) [][2]string {
	s := [][2]string{
		{"links", "ip -d -j link show"},
		{"platform_labels", "cat /proc/sys/net/mpls/platform_labels"},
	}
	for _, i := range r.Interfaces {
		if i.LDP {
			s = append(s, [2]string{"mpls_input " + i.Name, "cat /proc/sys/net/mpls/conf/" + i.Name + "/input"})
		}
	}
	for _, v := range r.VRFs {
		s = append(s, [2]string{"kroute4 " + v, "ip -4 route show vrf " + v}, [2]string{"kroute6 " + v, "ip -6 route show vrf " + v})
	}
	for _, a := range r.Attachments {
		if r.Role == "pe" {
			s = append(s, [2]string{"bgp_neighbors " + a.VRF, "vtysh -c 'show bgp vrf " + a.VRF + " neighbors json'"})
		}
	}
	for _, i := range r.Interfaces {
		if i.Encrypted {
			s = append(s, [2]string{"sas", "swanctl --list-sas --raw"}, [2]string{"xfrm_policy", "ip xfrm policy list"})
			break
		}
	}
	return s
}

const sectionMark = "### backbone-section "

// collect gathers the state of the backbone routers (all of them when
// only is nil) in parallel: one vtysh run with every query, and one shell
// run with the kernel queries.
func collect(ctx context.Context, p *plan.Plan, c collector, only map[string]bool) map[string]*routerState {
	out := map[string]*routerState{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range p.Routers {
		if r.Role == "ce" || (only != nil && !only[r.Name]) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := collectRouter(ctx, c, p, r)
			mu.Lock()
			out[r.Name] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func collectRouter(ctx context.Context, c collector, p *plan.Plan, r *plan.Router) *routerState {
	st := &routerState{frr: &frrstate.State{}, shell: map[string]string{}}
	s, err := frrstate.Read(ctx, c.runner(r.Name), queries(p, r))
	if err != nil {
		st.err = fmt.Errorf("%s: %w", r.Name, err)
	} else {
		st.frr = s
	}
	var script strings.Builder
	for _, s := range shellSections(r) {
		fmt.Fprintf(&script, "echo '%s%s'; %s 2>&1; ", sectionMark, s[0], s[1])
	}
	sh, err := c.Run(ctx, r.Name, "sh", "-c", script.String())
	if err != nil && st.err == nil {
		st.err = fmt.Errorf("kernel queries on %s: %w", r.Name, err)
	}
	for _, part := range strings.Split(string(sh), sectionMark)[1:] {
		name, body, _ := strings.Cut(part, "\n")
		st.shell[name] = body
	}
	return st
}
