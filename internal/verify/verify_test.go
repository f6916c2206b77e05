package verify

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/frrstate"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/node"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

func defaultPlan(t *testing.T) *plan.Plan {
	t.Helper()
	return intenttest.Plan(t, intent.DefaultYAML(), "default")
}

// fakeCollector answers commands from a function of node and argv.
type fakeCollector func(node string, argv []string) (string, error)

func (f fakeCollector) Run(_ context.Context, node string, argv ...string) ([]byte, error) {
	out, err := f(node, argv)
	return []byte(out), err
}

func (f fakeCollector) runner(name string) node.Runner {
	return node.RunnerFunc(func(_ context.Context, c node.Cmd) error {
		out, err := f(name, c.Argv)
		_, _ = c.Stdout.Write([]byte(out))
		return err
	})
}

const rawSAs = `list-sa event {pe201 {uniqueid=1 version=2 state=ESTABLISHED local-host=2001:db8:101::2 local-port=500 local-id=pe101 remote-host=2001:db8:201::2 remote-port=500 remote-id=pe201 initiator=yes encr-alg=CHACHA20_POLY1305 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=18 child-sas {gre-pe201-3 {name=gre-pe201 uniqueid=3 reqid=1 state=INSTALLED mode=TRANSPORT protocol=ESP encr-alg=CHACHA20_POLY1305 local-ts=[2001:db8:101::2/128[gre]] remote-ts=[2001:db8:201::2/128[gre]]}}}}
list-sa event {pe102 {uniqueid=2 version=2 state=ESTABLISHED local-host=2001:db8:101::2 remote-host=2001:db8:102::2 encr-alg=AES_GCM_16 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 child-sas {gre-pe102-4 {name=gre-pe102 state=INSTALLED mode=TUNNEL encr-alg=AES_GCM_16 local-ts=[2001:db8:101::2/128] remote-ts=[2001:db8:102::2/128]}}}}
`

func TestParseRaw(t *testing.T) {
	evs := parseRaw(rawSAs)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	ike := evs[0].subs["pe201"]
	if ike == nil || ike.vals["state"] != "ESTABLISHED" || ike.vals["dh-group"] != "CURVE_25519" {
		t.Fatalf("IKE SA not parsed: %+v", ike)
	}
	ch := ike.subs["child-sas"].subs["gre-pe201-3"]
	if ch == nil || ch.vals["mode"] != "TRANSPORT" || ch.vals["local-ts"] != "[2001:db8:101::2/128[gre]]" {
		t.Fatalf("CHILD SA not parsed: %+v", ch)
	}
}

func TestCheckSAs(t *testing.T) {
	p := defaultPlan(t)
	sts := map[string]*routerState{"pe101": {shell: map[string]string{"sas": rawSAs}}}
	for _, r := range p.Routers {
		if sts[r.Name] == nil {
			sts[r.Name] = &routerState{shell: map[string]string{}}
		}
	}
	rec := &recorder{}
	checkSAs(scope{p: p, sts: sts}, rec)
	got := map[string]Result{}
	for _, r := range rec.results {
		got[r.Name] = r
	}
	if r := got["ipsec pe101 -> pe201"]; !r.Pass {
		t.Errorf("pe101 -> pe201 should pass: %+v", r)
	}
	// Wrong cipher and tunnel mode: the intent says chacha20poly1305, transport.
	if r := got["ipsec pe101 -> pe102"]; r.Pass || !strings.Contains(r.Evidence, "TUNNEL") {
		t.Errorf("pe101 -> pe102 should fail with the mode in evidence: %+v", r)
	}
	if r := got["ipsec pe202 -> pe102"]; r.Pass || !strings.Contains(r.Evidence, "no ESTABLISHED IKE SA") {
		t.Errorf("pe202 without SAs should fail: %+v", r)
	}
}

func TestCapture(t *testing.T) {
	p := defaultPlan(t)
	cases := []struct {
		name   string
		out    string
		pass   bool
		detail string
	}{
		{"only ESP", "IP6 2001:db8:101::2 > 2001:db8:201::2: ESP(spi=0xc6fabf07,seq=0x1), length 120\nIP6 2001:db8:201::2.500 > 2001:db8:101::2.500: isakmp: child_sa inf2\n", true, "1 ESP, 1 IKE"},
		// Recorded with charon stopped on pe101: its kernel answers IKE.
		{"ICMP error about IKE", "IP6 2001:db8:101::2 > 2001:db8:201::2: ESP(spi=0xc6fabf07,seq=0x1), length 120\n07:52:56.586476 u-pe101 In  IP6 2001:db8:101::2 > 2001:db8:102::2: ICMP6, destination unreachable, unreachable port, 2001:db8:101::2 udp port 500, length 284\n", true, "1 ESP, 1 IKE"},
		{"cleartext GRE", "IP6 2001:db8:101::2 > 2001:db8:201::2: GREv0, length 88: IP 10.20.0.222 > 224.0.0.5: OSPFv2, Hello\nIP6 2001:db8:101::2 > 2001:db8:201::2: ESP(spi=0x1,seq=0x2), length 120\n", false, "1 cleartext packets"},
		// Recorded on a PE without the Packet Too Big guard: the error for
		// an oversize IPv6 VPN packet left in clear, to the customer.
		{"customer-addressed", "IP6 2001:db8:101::2 > 2001:db8:201::2: ESP(spi=0x1,seq=0x2), length 120\n08:31:39.734604 u-pe101 In  IP6 fd00:ce:1::1 > fd00:ce:1::2: ICMP6, packet too big, mtu 1418, length 1240\n", false, "customer-addressed ICMPv6 1"},
		{"cleartext VXLAN", "IP6 2001:db8:202::2.51234 > 2001:db8:102::2.4789: VXLAN, flags [I] (0x08), vni 10103\n", false, "VXLAN 1"},
		{"idle", "", false, "0 packets between PEs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var filter string
			col := fakeCollector(func(node string, argv []string) (string, error) {
				if node != "underlay" || argv[0] != "timeout" || argv[2] != "tcpdump" {
					return "", fmt.Errorf("unexpected %s %v", node, argv)
				}
				filter = argv[len(argv)-1]
				return c.out, fmt.Errorf("exit status 124")
			})
			rec := &recorder{}
			checkCapture(context.Background(), p, col, time.Second, false, rec)
			if len(rec.results) != 1 {
				t.Fatalf("results: %+v", rec.results)
			}
			r := rec.results[0]
			if r.Pass != c.pass || !strings.Contains(r.Evidence, c.detail) {
				t.Errorf("pass=%v evidence %q, want pass=%v and %q", r.Pass, r.Evidence, c.pass, c.detail)
			}
			if !strings.Contains(filter, "src host 2001:db8:101::2") || !strings.Contains(filter, "dst host 2001:db8:102::2") || !strings.Contains(filter, "dst net fd00:1::/64") {
				t.Errorf("capture filter %q does not select the PEs", filter)
			}
		})
	}
}

func TestDataPlaneMTU(t *testing.T) {
	p := defaultPlan(t)
	for _, c := range []struct {
		name      string
		oversize  string
		wantPass  bool
		wantCause string
	}{
		{"refused locally", "ping: local error: message too long, mtu=1388", true, ""},
		{"lost silently", "1 packets transmitted, 0 received, 100% packet loss", false, "lost silently"},
	} {
		t.Run(c.name, func(t *testing.T) {
			col := fakeCollector(func(node string, argv []string) (string, error) {
				s := strings.Join(argv, " ")
				switch {
				case strings.Contains(s, "-s 1361") || strings.Contains(s, "-s 1341"): // one byte more
					return "", fmt.Errorf("exit status 1: %s", c.oversize)
				default:
					return "3 packets transmitted, 3 received, 0% packet loss", nil
				}
			})
			rec := &recorder{}
			checkDataPlane(context.Background(), p, col, false, rec)
			n := 0
			for _, r := range rec.results {
				if strings.HasPrefix(r.Name, "mtu 1388+1 refused") {
					n++
					if r.Pass != c.wantPass || !strings.Contains(r.Cause, c.wantCause) {
						t.Errorf("%s: pass=%v cause %q", r.Name, r.Pass, r.Cause)
					}
				}
			}
			if n != 4 { // 2 directions x 2 families
				t.Errorf("%d oversize checks, want 4", n)
			}
		})
	}
}

// On deployed routers the probes leave each site PE inside its VRF (the
// CEs are the customer's) and the underlay is captured on every PE's
// underlay interface.
func TestDeployedProbesFromPEs(t *testing.T) {
	p := defaultPlan(t)
	var mu sync.Mutex
	nodes := map[string]bool{}
	col := fakeCollector(func(node string, argv []string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		nodes[node] = true
		s := strings.Join(argv, " ")
		switch {
		case argv[0] == "ping" && !strings.Contains(s, "-I cust-a"):
			return "", fmt.Errorf("ping not bound to the VRF: %s", s)
		case argv[0] == "ping":
			return "3 packets transmitted, 3 received, 0% packet loss", nil
		case argv[0] == "timeout" && argv[2] == "tcpdump" && argv[6] == "eth0":
			return "IP6 " + map[string]string{"pe101": "2001:db8:101::2", "pe201": "2001:db8:201::2", "pe202": "2001:db8:202::2", "pe102": "2001:db8:102::2"}[node] +
				" > 2001:db8:201::2: ESP(spi=0x1,seq=0x2), length 120\n", fmt.Errorf("exit status 124")
		}
		return "", fmt.Errorf("unexpected %s %v", node, argv)
	})
	rec := &recorder{}
	checkDataPlane(context.Background(), p, col, true, rec)
	checkCapture(context.Background(), p, col, time.Second, true, rec)
	var names []string
	for _, r := range rec.results {
		if strings.HasPrefix(r.Name, "reach ") || r.Name == "underlay capture" {
			names = append(names, r.Name)
		}
		if !r.Pass && !strings.HasPrefix(r.Name, "mtu") {
			t.Errorf("%s failed: %s", r.Name, r.Evidence)
		}
	}
	want := []string{"reach pe101 vrf cust-a -> ce2 ipv4", "reach pe101 vrf cust-a -> ce2 ipv6", "reach pe201 vrf cust-a -> ce1 ipv4", "reach pe201 vrf cust-a -> ce1 ipv6"}
	for _, w := range want {
		if !slices.Contains(names, w) {
			t.Errorf("no check %q in %v", w, names)
		}
	}
	for _, n := range []string{"ce1", "ce2", "underlay"} {
		if nodes[n] {
			t.Errorf("deployed verify ran a command on %s", n)
		}
	}
	for _, n := range []string{"pe101", "pe201", "pe202", "pe102"} {
		if !nodes[n] {
			t.Errorf("no capture on %s", n)
		}
	}
	last := rec.results[len(rec.results)-1]
	if !last.Pass || !strings.Contains(last.Evidence, "4 ESP") {
		t.Errorf("capture over the PEs: %+v", last)
	}
}

// recorded reads FRR 8.4 answers recorded on the default backbone.
func recorded(t *testing.T, name string, qs []frrstate.Query) *frrstate.State {
	t.Helper()
	data, err := os.ReadFile("../frrstate/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := frrstate.Decode(data, qs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pe101's control plane, as recorded on a converged lab, passes every
// check; each fault turns exactly its checks red.
func TestControlPlaneChecks(t *testing.T) {
	p := defaultPlan(t)
	pe101 := p.Router("pe101")
	run := func(s *frrstate.State) map[string]Result {
		sc := scope{p: p, sts: map[string]*routerState{"pe101": {frr: s, shell: map[string]string{
			"kroute4 cust-a": "192.168.2.0/24 nhid 40  encap mpls  17 via 10.20.0.223 dev gre-pe201 proto bgp metric 20 onlink\n172.31.2.0/30 nhid 40  encap mpls  17 via 10.20.0.223 dev gre-pe201 proto bgp metric 20 onlink\n",
			"kroute6 cust-a": "fd00:2::/64 nhid 41  encap mpls  18 via fe80::1 dev gre-pe201 proto bgp metric 20 pref medium\nfd00:ce:2::/64 nhid 41  encap mpls  18 via fe80::1 dev gre-pe201 proto bgp metric 20 pref medium\n",
		}}}, only: map[string]bool{"pe101": true}}
		r := &recorder{}
		checkIGP(sc, r)
		checkBFD(sc, r)
		checkLDP(sc, r)
		checkBGP(sc, r)
		out := map[string]Result{}
		for _, res := range r.results {
			out[res.Name] = res
		}
		return out
	}
	qs := queries(p, pe101)
	good := run(recorded(t, "pe101.json", qs))
	// 2 links x (ospfv2, ospfv3, bfd v4, bfd v6, ldp session, sync) + loopbacks
	// + 2 LSP families + 3 peers x 2 families + 2 eBGP + 4 remote networks.
	if len(good) != 2*6+1+2+6+2+4 {
		t.Errorf("%d checks on pe101, want 27: %v", len(good), good)
	}
	for name, res := range good {
		if !res.Pass {
			t.Errorf("%s fails on a converged recording: %s", name, res.Evidence)
		}
	}

	broken := recorded(t, "pe101.json", qs)
	delete(broken.OSPF, "10.10.0.1")                                                             // OSPFv2 with pe201 lost
	broken.BGP["default"]["ipv6Vpn"]["fd53:ba85:6bf9:10::3"] = frrstate.BGPPeer{State: "Active"} // VPNv6 to pe202 down
	broken.BFD = broken.BFD[1:]
	bad := run(broken)
	var failing []string
	for name, res := range bad {
		if !res.Pass {
			failing = append(failing, name)
		}
	}
	sort.Strings(failing)
	want := []string{"VPNv6 pe101 -> pe202", "bfd ipv4 pe101 gre-pe102 -> pe102", "ospfv2 pe101 gre-pe201 -> pe201"}
	if !reflect.DeepEqual(failing, want) {
		t.Errorf("failing %v, want %v", failing, want)
	}
	if ev := bad["VPNv6 pe101 -> pe202"].Evidence; !strings.Contains(ev, "Active") {
		t.Errorf("evidence %q", ev)
	}
}
