package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/backbone-net/backbone/internal/plan"
)

// convergeQueries are the vtysh commands whose JSON tells whether a
// router's control plane is whole, in the order Converged parses them.
func convergeQueries(p *plan.Plan, r *plan.Router) []string {
	q := []string{"show ip ospf neighbor json", "show ipv6 ospf6 neighbor json"}
	if ldpPeers(r) > 0 {
		q = append(q, "show mpls ldp neighbor json")
		if p.Protocols.LDPSync {
			q = append(q, "show ip ospf mpls ldp-sync json")
		}
	}
	if len(r.Peers) > 0 {
		q = append(q, "show bgp vrf all summary json")
	}
	if p.Protocols.BFD && len(r.Interfaces) > 0 {
		q = append(q, "show bfd peers json")
	}
	return q
}

func ldpPeers(r *plan.Router) int {
	peers := map[string]bool{}
	for _, i := range r.Interfaces {
		if i.LDP {
			peers[i.Peer] = true
		}
	}
	return len(peers)
}

// ConvergeArgv is the command Converged needs the output of.
func ConvergeArgv(p *plan.Plan, r *plan.Router) []string {
	argv := []string{"vtysh"}
	for _, q := range convergeQueries(p, r) {
		argv = append(argv, "-c", q)
	}
	return argv
}

// Converged checks the output of ConvergeArgv: one full OSPFv2 and OSPFv3
// adjacency per tunnel, an operational LDP session per LDP neighbor,
// every BGP session established, every BFD session up. It returns "" or
// what is missing.
func Converged(p *plan.Plan, r *plan.Router, out []byte) string {
	dec := json.NewDecoder(bytes.NewReader(out))
	want := len(r.Interfaces)
	var missing []string
	for _, q := range convergeQueries(p, r) {
		var doc json.RawMessage
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Sprintf("no answer to %q", q)
			}
			return fmt.Sprintf("%q: not JSON (a daemon down?): %s", q, firstLine(out))
		}
		switch q {
		case "show ip ospf neighbor json":
			var v struct {
				Neighbors map[string][]struct {
					State string `json:"nbrState"`
				} `json:"neighbors"`
			}
			_ = json.Unmarshal(doc, &v)
			full := 0
			for _, ns := range v.Neighbors {
				for _, n := range ns {
					if strings.HasPrefix(n.State, "Full") {
						full++
					}
				}
			}
			if full < want {
				missing = append(missing, fmt.Sprintf("OSPFv2 %d/%d full", full, want))
			}
		case "show ipv6 ospf6 neighbor json":
			var v struct {
				Neighbors []struct {
					State string `json:"state"`
				} `json:"neighbors"`
			}
			_ = json.Unmarshal(doc, &v)
			full := 0
			for _, n := range v.Neighbors {
				if n.State == "Full" {
					full++
				}
			}
			if full < want {
				missing = append(missing, fmt.Sprintf("OSPFv3 %d/%d full", full, want))
			}
		case "show mpls ldp neighbor json":
			var v struct {
				Neighbors []struct {
					ID    string `json:"neighborId"`
					State string `json:"state"`
				} `json:"neighbors"`
			}
			_ = json.Unmarshal(doc, &v)
			up := map[string]bool{}
			for _, n := range v.Neighbors {
				if n.State == "OPERATIONAL" {
					up[n.ID] = true
				}
			}
			if n := ldpPeers(r); len(up) < n {
				missing = append(missing, fmt.Sprintf("LDP %d/%d operational", len(up), n))
			}
		case "show ip ospf mpls ldp-sync json":
			// Until LDP-IGP sync is achieved OSPF advertises the link at
			// maximum cost: traffic moves back onto it only afterwards.
			var v map[string]struct {
				State string `json:"ldpIgpSyncState"`
			}
			_ = json.Unmarshal(doc, &v)
			var pending []string
			for _, i := range r.Interfaces {
				if i.LDP && v[i.Name].State != "Sync achieved" {
					pending = append(pending, i.Name)
				}
			}
			if len(pending) > 0 {
				missing = append(missing, "LDP-IGP sync pending on "+strings.Join(pending, " "))
			}
		case "show bgp vrf all summary json":
			var v map[string]map[string]json.RawMessage
			_ = json.Unmarshal(doc, &v)
			total, est := 0, 0
			for _, afs := range v {
				for _, raw := range afs {
					var af struct {
						Peers map[string]struct {
							State string `json:"state"`
						} `json:"peers"`
					}
					if json.Unmarshal(raw, &af) != nil {
						continue
					}
					for _, pe := range af.Peers {
						total++
						if pe.State == "Established" {
							est++
						}
					}
				}
			}
			if total == 0 || est < total {
				missing = append(missing, fmt.Sprintf("BGP %d/%d established", est, total))
			}
		case "show bfd peers json":
			var v []struct {
				Status string `json:"status"`
			}
			_ = json.Unmarshal(doc, &v)
			up := 0
			for _, b := range v {
				if b.Status == "up" {
					up++
				}
			}
			if up < len(v) || up < want {
				missing = append(missing, fmt.Sprintf("BFD %d/%d up", up, len(v)))
			}
		}
	}
	return strings.Join(missing, ", ")
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// checkConverged runs the convergence query on a router.
func checkConverged(ctx context.Context, r Runner, p *plan.Plan, node string) string {
	rt := p.Router(node)
	if rt == nil {
		return "no such router"
	}
	out, err := r.Run(ctx, node, ConvergeArgv(p, rt))
	if err != nil {
		return fmt.Sprintf("vtysh: %v: %s", err, firstLine(out))
	}
	return Converged(p, rt, out)
}
