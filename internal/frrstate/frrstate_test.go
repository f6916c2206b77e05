package frrstate

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/node"
)

// The testdata files are real FRR 8.4 answers, recorded on the default
// backbone (UML backend) with one vtysh run of these queries.
var (
	peQueries = []Query{OSPF, OSPF6, LDP, Bindings, RIB4, RIB6, LDPSync, BFD, BGP, VRFRIB4("cust-a"), VRFRIB6("cust-a")}
	// pe202 has no site: no VRF tables were asked.
	pe202Queries = []Query{OSPF, OSPF6, LDP, Bindings, RIB4, RIB6, LDPSync, BFD, BGP}
)

func load(t *testing.T, name string, qs []Query) *State {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode(data, qs)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

func TestDecodePE101(t *testing.T) {
	s := load(t, "pe101.json", peQueries)
	// pe101's ring neighbors: pe201 (10.10.0.1) on gre-pe201, pe102
	// (10.10.0.4) on gre-pe102.
	for _, c := range []struct{ rid, ifname string }{{"10.10.0.1", "gre-pe201"}, {"10.10.0.4", "gre-pe102"}} {
		if st := s.OSPFState(c.rid, c.ifname); !OSPFFull(st) {
			t.Errorf("OSPFv2 %s on %s: %q", c.rid, c.ifname, st)
		}
		if st := s.OSPF6State(c.rid, c.ifname); st != "Full" {
			t.Errorf("OSPFv3 %s on %s: %q", c.rid, c.ifname, st)
		}
		if st, af := s.LDPSession(c.rid); !LDPUp(st) || af != "ipv6" {
			t.Errorf("LDP %s: %q over %q, want OPERATIONAL over ipv6 (dual-stack prefers IPv6)", c.rid, st, af)
		}
		if st := s.SyncState(c.ifname); st != SyncAchieved {
			t.Errorf("LDP-IGP sync on %s: %q", c.ifname, st)
		}
		for _, v6 := range []bool{false, true} {
			if st := s.BFDState(c.ifname, v6); !BFDUp(st) {
				t.Errorf("BFD on %s (ipv6 %v): %q", c.ifname, v6, st)
			}
		}
	}
	// Across the ring: no adjacency with pe202.
	if st := s.OSPFState("10.10.0.3", "gre-pe201"); st != Absent {
		t.Errorf("OSPFv2 with pe202: %q, want absent", st)
	}
	for _, p := range []string{"10.10.0.3/32", "fd53:ba85:6bf9:10::3/128"} {
		if !s.Labelled(p) {
			t.Errorf("no label in use towards %s", p)
		}
	}
	if !Installed(s.RIB4["10.10.0.3/32"]) || !Installed(s.RIB6["fd53:ba85:6bf9:10::3/128"]) {
		t.Errorf("pe202's loopbacks not installed")
	}
	for _, c := range []struct {
		vrf, afi, addr string
	}{
		{"default", "ipv4Vpn", "10.10.0.1"}, {"default", "ipv6Vpn", "fd53:ba85:6bf9:10::1"},
		{"cust-a", "ipv4Unicast", "172.31.1.2"}, {"cust-a", "ipv6Unicast", "fd00:ce:1::2"},
	} {
		if st := s.BGPPeerState(c.vrf, c.afi, netip.MustParseAddr(c.addr)); !BGPUp(st) {
			t.Errorf("BGP %s %s %s: %q", c.vrf, c.afi, c.addr, st)
		}
	}
	if st := s.BGPPeerState("default", "ipv4Vpn", netip.MustParseAddr("10.10.0.99")); st != Absent {
		t.Errorf("unknown peer: %q", st)
	}
	// ce2's networks reach pe101's VRF from pe201, with a VPN label.
	for _, p := range []string{"192.168.2.0/24", "fd00:2::/64"} {
		r := s.VRFRIB["cust-a"][p]
		if !Installed(r) || len(Labels(r)) == 0 {
			t.Errorf("vrf cust-a %s: installed %v labels %v", p, Installed(r), Labels(r))
		}
	}
	if len(s.Failed) != 0 {
		t.Errorf("failed: %v", s.Failed)
	}
}

func TestDecodeOtherPEs(t *testing.T) {
	s := load(t, "pe201.json", peQueries)
	if st := s.BGPPeerState("cust-a", "ipv4Unicast", netip.MustParseAddr("172.31.2.2")); st != Absent {
		t.Errorf("ce2 is a static site: BGP %q, want absent", st)
	}
	if r := s.VRFRIB["cust-a"]["192.168.1.0/24"]; !Installed(r) || len(Labels(r)) == 0 {
		t.Errorf("ce1's network on pe201: %+v", r)
	}
	s = load(t, "pe202.json", pe202Queries)
	if st := s.OSPFState("10.10.0.4", "vx-pe102"); !OSPFFull(st) {
		t.Errorf("OSPFv2 over VXLAN: %q", st)
	}
	if s.VRFRIB != nil {
		t.Errorf("VRF routes decoded from nothing")
	}
}

// A down daemon answers its query with text: the stream of JSON
// documents breaks there.
func TestDecodeDaemonDown(t *testing.T) {
	data, err := os.ReadFile("testdata/pe101-ldpd-down.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(data, peQueries); err == nil || !strings.Contains(err.Error(), string(LDP)) {
		t.Errorf("Decode of a stream broken at LDP: %v", err)
	}
}

// Read asks all queries in one vtysh run and, when that stream breaks,
// each query alone: the others decode, the broken one is in Failed.
func TestReadFallsBackPerQuery(t *testing.T) {
	full, err := os.ReadFile("testdata/pe101-ldpd-down.txt")
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile("testdata/pe101.json")
	if err != nil {
		t.Fatal(err)
	}
	// Split the good recording into per-query documents.
	docs := map[Query][]byte{}
	dec := jsonDocs(t, good)
	for i, q := range peQueries {
		docs[q] = dec[i]
	}
	var calls [][]string
	r := node.RunnerFunc(func(_ context.Context, c node.Cmd) error {
		calls = append(calls, c.Argv)
		if len(c.Argv) > 3 {
			_, _ = c.Stdout.Write(full)
			return nil
		}
		q := Query(c.Argv[2])
		if q == LDP || q == Bindings {
			_, _ = c.Stdout.Write([]byte("ldpd is not running\n"))
			return nil
		}
		_, _ = c.Stdout.Write(docs[q])
		return nil
	})
	s, err := Read(context.Background(), r, peQueries)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1+len(peQueries) {
		t.Errorf("%d vtysh runs, want one for all and one per query", len(calls))
	}
	if !reflect.DeepEqual(keys(s.Failed), []Query{Bindings, LDP}) || !strings.Contains(s.Failed[LDP], "ldpd is not running") {
		t.Errorf("failed %v", s.Failed)
	}
	if st := s.OSPFState("10.10.0.1", "gre-pe201"); !OSPFFull(st) {
		t.Errorf("OSPF after the fallback: %q", st)
	}
	if st, _ := s.LDPSession("10.10.0.1"); st != Absent {
		t.Errorf("LDP with ldpd down: %q", st)
	}
}

func jsonDocs(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var doc json.RawMessage
		if err := dec.Decode(&doc); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), doc...))
	}
}

func keys(m map[Query]string) []Query {
	var out []Query
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
