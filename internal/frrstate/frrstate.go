// Package frrstate is the one reader of FRR's state: it asks a router's
// vtysh for JSON (OSPFv2, OSPFv3, LDP, BGP, BFD, routes) in one run and
// decodes it into types, with the few rules that say what "up" means for
// each protocol. verify and chaos both read routers through it. The JSON
// shapes are FRR 8.4's.
package frrstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/backbone-net/backbone/internal/node"
)

// Query is one vtysh "show ... json" command.
type Query string

// The queries the package decodes.
const (
	OSPF     Query = "show ip ospf neighbor json"
	OSPF6    Query = "show ipv6 ospf6 neighbor json"
	LDP      Query = "show mpls ldp neighbor json"
	Bindings Query = "show mpls ldp binding json"
	LDPSync  Query = "show ip ospf mpls ldp-sync json"
	RIB4     Query = "show ip route json"
	RIB6     Query = "show ipv6 route json"
	BGP      Query = "show bgp vrf all summary json"
	BFD      Query = "show bfd peers json"
)

// VRFRIB4 and VRFRIB6 ask for a VRF's routing table.
func VRFRIB4(vrf string) Query { return Query("show ip route vrf " + vrf + " json") }
func VRFRIB6(vrf string) Query { return Query("show ipv6 route vrf " + vrf + " json") }

// State is what FRR told about one router. Fields of queries not asked
// stay empty.
type State struct {
	OSPF     map[string][]OSPFNeighbor // by neighbor router id
	OSPF6    []OSPF6Neighbor
	LDP      []LDPNeighbor
	Bindings []LDPBinding
	Sync     map[string]LDPSyncState // by interface
	RIB4     map[string][]Route      // by prefix
	RIB6     map[string][]Route
	VRFRIB   map[string]map[string][]Route // vrf -> prefix -> routes, both families
	// BGP is vrf -> address family ("ipv4Vpn", "ipv6Vpn", "ipv4Unicast",
	// ...) -> peer address -> peer.
	BGP map[string]map[string]map[string]BGPPeer
	BFD []BFDPeer
	// Failed are the queries whose answer was not JSON (its daemon is
	// down, or the command unknown), with the first line of the answer.
	Failed map[Query]string
}

// OSPFNeighbor is one OSPFv2 adjacency.
type OSPFNeighbor struct {
	State string `json:"nbrState"` // "Full/-"
	// Interface is "gre-pe201:10.20.0.222" (interface:local address).
	Interface string `json:"ifaceName"`
}

// OSPF6Neighbor is one OSPFv3 adjacency.
type OSPF6Neighbor struct {
	ID        string `json:"neighborId"`
	State     string `json:"state"`
	Interface string `json:"interfaceName"`
}

// LDPNeighbor is one LDP session.
type LDPNeighbor struct {
	AddressFamily string `json:"addressFamily"` // the transport's
	ID            string `json:"neighborId"`
	State         string `json:"state"`
}

// LDPBinding is a label binding of a prefix with one neighbor.
type LDPBinding struct {
	AddressFamily string `json:"addressFamily"`
	Prefix        string `json:"prefix"`
	Neighbor      string `json:"neighborId"`
	LocalLabel    string `json:"localLabel"`
	RemoteLabel   string `json:"remoteLabel"`
	InUse         int    `json:"inUse"`
}

// LDPSyncState is LDP-IGP synchronization on one interface.
type LDPSyncState struct {
	State string `json:"ldpIgpSyncState"`
}

// Route is one route of a prefix in a RIB.
type Route struct {
	Protocol  string    `json:"protocol"`
	Selected  bool      `json:"selected"`
	Installed bool      `json:"installed"`
	Nexthops  []Nexthop `json:"nexthops"`
}

// Nexthop is one nexthop of a route.
type Nexthop struct {
	Labels    []int  `json:"labels"`
	Interface string `json:"interfaceName"`
	Active    bool   `json:"active"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	State string `json:"state"`
	Desc  string `json:"desc"`
}

// BFDPeer is one BFD session.
type BFDPeer struct {
	Peer      string `json:"peer"`
	Interface string `json:"interface"`
	Status    string `json:"status"`
}

// Absent is the state of a session or adjacency FRR does not show.
const Absent = "absent"

// Argv is the vtysh command line that asks every query at once.
func Argv(qs []Query) []string {
	argv := []string{"vtysh"}
	for _, q := range qs {
		argv = append(argv, "-c", string(q))
	}
	return argv
}

// Read asks a router every query in one vtysh run. When a daemon is down
// its query answers with text, which breaks the stream of JSON documents:
// then each query is asked alone, and the ones that fail are in Failed.
// The error is set only when vtysh itself cannot run.
func Read(ctx context.Context, r node.Runner, qs []Query) (*State, error) {
	out, err := node.Output(ctx, r, Argv(qs)...)
	if err != nil {
		return nil, fmt.Errorf("vtysh: %w", err)
	}
	s, derr := Decode(out, qs)
	if derr == nil {
		return s, nil
	}
	s = &State{}
	for _, q := range qs {
		one, err := node.Output(ctx, r, Argv([]Query{q})...)
		if err == nil {
			err = s.decode(q, one)
		}
		if err != nil {
			s.fail(q, firstLine(string(one), err))
		}
	}
	return s, nil
}

// Decode decodes vtysh's answers to qs: JSON documents one after another.
func Decode(out []byte, qs []Query) (*State, error) {
	s := &State{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for _, q := range qs {
		var doc json.RawMessage
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return s, fmt.Errorf("%s: no answer", q)
			}
			return s, fmt.Errorf("%s: %w", q, err)
		}
		if err := s.decode(q, doc); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (s *State) fail(q Query, why string) {
	if s.Failed == nil {
		s.Failed = map[Query]string{}
	}
	s.Failed[q] = why
}

func firstLine(out string, err error) string {
	if l := strings.TrimSpace(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]); l != "" {
		return l
	}
	return err.Error()
}

func (s *State) decode(q Query, doc []byte) error {
	var target any
	switch q {
	case OSPF:
		var v struct {
			Neighbors map[string][]OSPFNeighbor `json:"neighbors"`
		}
		if err := json.Unmarshal(doc, &v); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		s.OSPF = v.Neighbors
		return nil
	case OSPF6:
		var v struct {
			Neighbors []OSPF6Neighbor `json:"neighbors"`
		}
		if err := json.Unmarshal(doc, &v); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		s.OSPF6 = v.Neighbors
		return nil
	case LDP:
		var v struct {
			Neighbors []LDPNeighbor `json:"neighbors"`
		}
		if err := json.Unmarshal(doc, &v); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		s.LDP = v.Neighbors
		return nil
	case Bindings:
		var v struct {
			Bindings []LDPBinding `json:"bindings"`
		}
		if err := json.Unmarshal(doc, &v); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		s.Bindings = v.Bindings
		return nil
	case LDPSync:
		target = &s.Sync
	case RIB4:
		target = &s.RIB4
	case RIB6:
		target = &s.RIB6
	case BFD:
		target = &s.BFD
	case BGP:
		return s.decodeBGP(doc)
	default:
		f := strings.Fields(string(q))
		if len(f) == 6 && f[0] == "show" && f[2] == "route" && f[3] == "vrf" {
			m := map[string][]Route{}
			if err := json.Unmarshal(doc, &m); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			if s.VRFRIB == nil {
				s.VRFRIB = map[string]map[string][]Route{}
			}
			if s.VRFRIB[f[4]] == nil {
				s.VRFRIB[f[4]] = map[string][]Route{}
			}
			for k, v := range m {
				s.VRFRIB[f[4]][k] = v
			}
			return nil
		}
		return fmt.Errorf("frrstate: no decoder for %q", q)
	}
	if err := json.Unmarshal(doc, target); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

// decodeBGP reads "show bgp vrf all summary json": vrf -> afi -> {peers}.
// The afi objects sit beside scalar fields; only objects with peers count.
func (s *State) decodeBGP(doc []byte) error {
	var v map[string]map[string]json.RawMessage
	if err := json.Unmarshal(doc, &v); err != nil {
		return fmt.Errorf("%s: %w", BGP, err)
	}
	s.BGP = map[string]map[string]map[string]BGPPeer{}
	for vrf, afs := range v {
		for afi, raw := range afs {
			var af struct {
				Peers map[string]BGPPeer `json:"peers"`
			}
			if json.Unmarshal(raw, &af) != nil || af.Peers == nil {
				continue
			}
			if s.BGP[vrf] == nil {
				s.BGP[vrf] = map[string]map[string]BGPPeer{}
			}
			s.BGP[vrf][afi] = af.Peers
		}
	}
	return nil
}

// OSPFState is the OSPFv2 adjacency with router id rid on an interface.
func (s *State) OSPFState(rid, ifname string) string {
	for _, n := range s.OSPF[rid] {
		if n.Interface == ifname || strings.HasPrefix(n.Interface, ifname+":") {
			return n.State
		}
	}
	return Absent
}

// OSPFFull reports whether an OSPFv2 state is an adjacency in Full.
func OSPFFull(state string) bool { return strings.HasPrefix(state, "Full") }

// OSPF6State is the OSPFv3 adjacency with router id rid on an interface.
func (s *State) OSPF6State(rid, ifname string) string {
	for _, n := range s.OSPF6 {
		if n.ID == rid && n.Interface == ifname {
			return n.State
		}
	}
	return Absent
}

// LDPSession is the LDP session with LSR id rid and its transport family.
func (s *State) LDPSession(rid string) (state, family string) {
	for _, n := range s.LDP {
		if n.ID == rid {
			return n.State, n.AddressFamily
		}
	}
	return Absent, ""
}

// LDPUp reports whether an LDP session state is up.
func LDPUp(state string) bool { return state == "OPERATIONAL" }

// Labelled reports whether the router forwards to prefix with a label
// learned from a neighbor (an in-use binding with a remote label;
// implicit null counts).
func (s *State) Labelled(prefix string) bool {
	for _, b := range s.Bindings {
		if b.Prefix == prefix && b.InUse > 0 && b.RemoteLabel != "" && b.RemoteLabel != "-" {
			return true
		}
	}
	return false
}

// SyncState is LDP-IGP synchronization on an interface ("" if unknown).
func (s *State) SyncState(ifname string) string { return s.Sync[ifname].State }

// SyncAchieved is the state in which OSPF advertises a link's real cost.
const SyncAchieved = "Sync achieved"

// BGPPeerState is the state of the session with addr in a VRF and
// address family.
func (s *State) BGPPeerState(vrf, afi string, addr netip.Addr) string {
	if p, ok := s.BGP[vrf][afi][addr.String()]; ok {
		return p.State
	}
	return Absent
}

// BGPUp reports whether a BGP session state is up.
func BGPUp(state string) bool { return state == "Established" }

// BFDState is the BFD session on an interface in one family: IPv4 peers
// are the tunnel's far address, IPv6 ones (OSPFv3) its link-local one.
func (s *State) BFDState(ifname string, ipv6 bool) string {
	for _, p := range s.BFD {
		a, err := netip.ParseAddr(p.Peer)
		if err != nil || p.Interface != ifname || a.Is6() != ipv6 {
			continue
		}
		return p.Status
	}
	return Absent
}

// BFDUp reports whether a BFD session status is up.
func BFDUp(status string) bool { return status == "up" }

// Installed reports whether a prefix has a selected, installed route.
func Installed(routes []Route) bool {
	for _, r := range routes {
		if r.Selected && r.Installed {
			return true
		}
	}
	return false
}

// Labels are the labels of the selected, installed route's nexthops (nil
// when it has none).
func Labels(routes []Route) []int {
	for _, r := range routes {
		if !r.Selected || !r.Installed {
			continue
		}
		for _, nh := range r.Nexthops {
			if len(nh.Labels) > 0 {
				return nh.Labels
			}
		}
	}
	return nil
}
