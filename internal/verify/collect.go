package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/backbone-net/backbone/internal/plan"
)

// routerState is what was collected from one backbone router.
type routerState struct {
	err     error
	ospf    ospfNeighbors
	ospf6   ospf6Neighbors
	ldp     ldpNeighbors
	binds   ldpBindings
	vpn4    bgpSummary
	vpn6    bgpSummary
	rib4    map[string][]ribRoute
	rib6    map[string][]ribRoute
	vrfRIB  map[string]map[string][]ribRoute // vrf -> prefix -> routes (both families)
	shell   map[string]string                // section -> output of shell commands
	vtyshOK bool
}

type ospfNeighbors struct {
	Neighbors map[string][]struct {
		NbrState string `json:"nbrState"`
		IfName   string `json:"ifaceName"`
	} `json:"neighbors"`
}

type ospf6Neighbors struct {
	Neighbors []struct {
		NeighborID    string `json:"neighborId"`
		State         string `json:"state"`
		InterfaceName string `json:"interfaceName"`
	} `json:"neighbors"`
}

type ldpNeighbors struct {
	Neighbors []struct {
		AddressFamily string `json:"addressFamily"`
		NeighborID    string `json:"neighborId"`
		State         string `json:"state"`
	} `json:"neighbors"`
}

type ldpBindings struct {
	Bindings []struct {
		AddressFamily string `json:"addressFamily"`
		Prefix        string `json:"prefix"`
		NeighborID    string `json:"neighborId"`
		LocalLabel    string `json:"localLabel"`
		RemoteLabel   string `json:"remoteLabel"`
		InUse         int    `json:"inUse"`
	} `json:"bindings"`
}

type bgpSummary struct {
	Peers map[string]struct {
		State string `json:"state"`
		Desc  string `json:"desc"`
	} `json:"peers"`
}

type ribRoute struct {
	Protocol  string `json:"protocol"`
	Selected  bool   `json:"selected"`
	Installed bool   `json:"installed"`
	Nexthops  []struct {
		Labels        []int  `json:"labels"`
		InterfaceName string `json:"interfaceName"`
		Active        bool   `json:"active"`
	} `json:"nexthops"`
}

// vtyshCommands lists the FRR queries of a PE, in the order decoded.
func vtyshCommands(r *plan.Router) []string {
	cmds := []string{
		"show ip ospf neighbor json",
		"show ipv6 ospf6 neighbor json",
		"show mpls ldp neighbor json",
		"show mpls ldp binding json",
		"show ip route json",
		"show ipv6 route json",
	}
	if r.Role == "pe" {
		cmds = append(cmds, "show bgp ipv4 vpn summary json", "show bgp ipv6 vpn summary json")
		for _, v := range r.VRFs {
			cmds = append(cmds, "show ip route vrf "+v+" json", "show ipv6 route vrf "+v+" json")
		}
	}
	return cmds
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
	for _, i := range r.Interfaces {
		if i.Encrypted {
			s = append(s, [2]string{"sas", "swanctl --list-sas --raw"})
			break
		}
	}
	return s
}

const sectionMark = "### backbone-section "

// collect gathers every backbone router's state in parallel: one vtysh
// run with all queries, and one shell run with the kernel queries.
func collect(ctx context.Context, p *plan.Plan, c collector) map[string]*routerState {
	out := map[string]*routerState{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range p.Routers {
		if r.Role == "ce" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := collectRouter(ctx, c, r)
			mu.Lock()
			out[r.Name] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func collectRouter(ctx context.Context, c collector, r *plan.Router) *routerState {
	st := &routerState{vrfRIB: map[string]map[string][]ribRoute{}, shell: map[string]string{}}
	cmds := vtyshCommands(r)
	argv := []string{"vtysh"}
	for _, cmd := range cmds {
		argv = append(argv, "-c", cmd)
	}
	raw, err := c.Run(ctx, r.Name, argv...)
	if err != nil {
		st.err = fmt.Errorf("vtysh on %s: %w", r.Name, err)
	} else {
		st.vtyshOK = st.decodeVtysh(raw, r, cmds) == nil
		if !st.vtyshOK {
			// A daemon that is down breaks the JSON stream: ask one by one.
			for i, cmd := range cmds {
				if one, err := c.Run(ctx, r.Name, "vtysh", "-c", cmd); err == nil {
					_ = st.decodeOne(one, r, cmds, i)
				}
			}
		}
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

// decodeVtysh decodes the JSON documents vtysh printed one after another.
func (st *routerState) decodeVtysh(raw []byte, r *plan.Router, cmds []string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	for i := range cmds {
		var msg json.RawMessage
		if err := dec.Decode(&msg); err != nil {
			return fmt.Errorf("%s: %w", cmds[i], err)
		}
		if err := st.decodeOne(msg, r, cmds, i); err != nil {
			return err
		}
	}
	return nil
}

func (st *routerState) decodeOne(msg []byte, r *plan.Router, cmds []string, i int) error {
	cmd := cmds[i]
	var target any
	switch {
	case cmd == "show ip ospf neighbor json":
		target = &st.ospf
	case cmd == "show ipv6 ospf6 neighbor json":
		target = &st.ospf6
	case cmd == "show mpls ldp neighbor json":
		target = &st.ldp
	case cmd == "show mpls ldp binding json":
		target = &st.binds
	case cmd == "show ip route json":
		target = &st.rib4
	case cmd == "show ipv6 route json":
		target = &st.rib6
	case cmd == "show bgp ipv4 vpn summary json":
		target = &st.vpn4
	case cmd == "show bgp ipv6 vpn summary json":
		target = &st.vpn6
	case strings.HasPrefix(cmd, "show ip route vrf ") || strings.HasPrefix(cmd, "show ipv6 route vrf "):
		vrf := strings.Fields(cmd)[4]
		m := map[string][]ribRoute{}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		if st.vrfRIB[vrf] == nil {
			st.vrfRIB[vrf] = map[string][]ribRoute{}
		}
		for k, v := range m {
			st.vrfRIB[vrf][k] = v
		}
		return nil
	default:
		return nil
	}
	if err := json.Unmarshal(msg, target); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}
