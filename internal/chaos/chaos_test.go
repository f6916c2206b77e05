package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/probe"
	"github.com/backbone-net/backbone/internal/render/linux"
)

func defaultPlan(t *testing.T) *plan.Plan {
	t.Helper()
	return intenttest.Plan(t, intent.DefaultYAML(), "default.yaml")
}

// testLab is the default backbone with made-up pids: pid = 1000*router + n.
func testLab(t *testing.T) Lab {
	p := defaultPlan(t)
	hosts := map[string]*linux.Host{}
	for _, r := range p.Routers {
		hosts[r.Name] = linux.Render(p, r)
	}
	return Lab{
		Plan: p, Hosts: hosts,
		Daemons: func(node string) ([]lab.DaemonStatus, error) {
			base := map[string]int{"pe101": 1000, "pe201": 2000, "pe202": 3000, "pe102": 4000}[node]
			var out []lab.DaemonStatus
			for i, d := range []string{"bfdd", "bgpd", "charon", "ldpd", "ospf6d", "ospfd", "staticd", "zebra"} {
				out = append(out, lab.DaemonStatus{Name: d, PID: base + i + 1, Running: true})
			}
			return out, nil
		},
		StartScripts: func(node string) []string {
			return []string{"/run/backbone/t/run/nodes/" + node + "/ipsec.sh", "/run/backbone/t/run/nodes/" + node + "/frr.sh"}
		},
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		kind string
		args []string
		want Spec
		err  string
	}{
		{kind: "link-shut", want: Spec{Kind: LinkShut, A: "pe101", B: "pe201"}},
		{kind: "underlay-cut", args: []string{"pe201-pe202"}, want: Spec{Kind: UnderlayCut, A: "pe201", B: "pe202"}},
		{kind: "ipsec-rekey", want: Spec{Kind: IPsecRekey, A: "pe101", B: "pe201"}},
		{kind: "node-fail", want: Spec{Kind: NodeFail, Node: "pe102"}},
		{kind: "node-fail", args: []string{"pe202"}, want: Spec{Kind: NodeFail, Node: "pe202"}},
		{kind: "daemon-restart", want: Spec{Kind: DaemonRestart, Node: "pe101", Daemon: "ospfd"}},
		{kind: "daemon-restart", args: []string{"ldpd"}, want: Spec{Kind: DaemonRestart, Node: "pe101", Daemon: "ldpd"}},
		{kind: "daemon-restart", args: []string{"pe202"}, want: Spec{Kind: DaemonRestart, Node: "pe202", Daemon: "ospfd"}},
		{kind: "daemon-restart", args: []string{"pe201", "charon"}, want: Spec{Kind: DaemonRestart, Node: "pe201", Daemon: "charon"}},
		{kind: "charon-kill", want: Spec{Kind: CharonKill, Node: "pe101"}},
		{kind: "charon-kill", args: []string{"pe202"}, want: Spec{Kind: CharonKill, Node: "pe202"}},
		{kind: "daemon-restart", args: []string{"pe201", "sshd"}, err: `unknown daemon "sshd"`},
		{kind: "link-shut", args: []string{"pe101"}, err: "is not ROUTER-ROUTER"},
		{kind: "link-shut", args: []string{"a-b", "c-d"}, want: Spec{Kind: LinkShut, A: "a-b", B: "c-d"}},
		{kind: "link-shut", args: []string{"a", "b", "c"}, err: "takes one link"},
		{kind: "link-shut", args: []string{"a-b--c"}, want: Spec{Kind: LinkShut, A: "a-b", B: "c"}},
		{kind: "link-shut", args: []string{"a-b-c"}, want: Spec{Kind: LinkShut, Link: "a-b-c"}},
		{kind: "node-fail", args: []string{"a", "b"}, err: "takes one router"},
		{kind: "meteor", err: `unknown scenario "meteor"`},
	}
	for _, tt := range tests {
		t.Run(tt.kind+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := ParseSpec(tt.kind, tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func strs(steps []Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.String())
	}
	return out
}

// The exact commands of every scenario on the default backbone.
func TestBuild(t *testing.T) {
	l := testLab(t)
	tests := []struct {
		spec            Spec
		inject, restore []string
		converge, down  []string
	}{
		{
			spec:     Spec{Kind: LinkShut, A: "pe101", B: "pe201"},
			inject:   []string{"pe101: vtysh -c 'configure terminal' -c 'interface gre-pe201' -c shutdown"},
			restore:  []string{"pe101: vtysh -c 'configure terminal' -c 'interface gre-pe201' -c 'no shutdown'"},
			converge: []string{"pe101", "pe201"},
		},
		{
			// The VXLAN link: vx- interface names.
			spec:     Spec{Kind: LinkShut, A: "pe202", B: "pe102"},
			inject:   []string{"pe202: vtysh -c 'configure terminal' -c 'interface vx-pe102' -c shutdown"},
			restore:  []string{"pe202: vtysh -c 'configure terminal' -c 'interface vx-pe102' -c 'no shutdown'"},
			converge: []string{"pe202", "pe102"},
		},
		{
			spec: Spec{Kind: UnderlayCut, A: "pe101", B: "pe201"},
			inject: []string{"underlay: nft 'add table inet backbone_chaos; flush table inet backbone_chaos; " +
				"add chain inet backbone_chaos forward { type filter hook forward priority -10; policy accept; }; " +
				"add rule inet backbone_chaos forward ip6 saddr 2001:db8:101::2 ip6 daddr 2001:db8:201::2 drop; " +
				"add rule inet backbone_chaos forward ip6 saddr 2001:db8:201::2 ip6 daddr 2001:db8:101::2 drop'"},
			restore:  []string{"underlay: nft 'delete table inet backbone_chaos'"},
			converge: []string{"pe101", "pe201"},
		},
		{
			spec: Spec{Kind: NodeFail, Node: "pe102"},
			inject: []string{
				"pe102: kill -KILL 4001 4002 4003 4004 4005 4006 4007 4008",
				"pe102: ip link set eth0 down",
			},
			restore: []string{
				"pe102: ip link set eth0 up",
				"pe102: ip -6 route replace ::/0 via 2001:db8:102::1 dev eth0",
				"pe102: wait until pid 4001 4002 4003 4004 4005 4006 4007 4008 exited",
				"pe102: /bin/sh /run/backbone/t/run/nodes/pe102/ipsec.sh",
				"pe102: /bin/sh /run/backbone/t/run/nodes/pe102/frr.sh",
			},
			converge: []string{"pe102"},
			down:     []string{"pe102"},
		},
		{
			spec: Spec{Kind: DaemonRestart, Node: "pe101", Daemon: "ospfd"},
			inject: []string{
				"pe101: kill -TERM 1006",
				"pe101: wait until pid 1006 exited",
				"pe101: /usr/lib/frr/ospfd -d -F traditional -P 0 -i /run/frr/ospfd.pid --log file:/run/frr/ospfd.log",
				"pe101: vtysh -b -d ospfd",
			},
			converge: []string{"pe101"},
		},
		{
			spec: Spec{Kind: DaemonRestart, Node: "pe101", Daemon: "ospf6d", Graceful: true},
			inject: []string{
				"pe101: vtysh -c 'graceful-restart prepare ipv6 ospf'",
				"pe101: kill -TERM 1005",
				"pe101: wait until pid 1005 exited",
				"pe101: /usr/lib/frr/ospf6d -d -F traditional -P 0 -i /run/frr/ospf6d.pid --log file:/run/frr/ospf6d.log",
				"pe101: vtysh -b -d ospf6d",
			},
			converge: []string{"pe101"},
		},
		{
			spec: Spec{Kind: DaemonRestart, Node: "pe201", Daemon: "charon"},
			inject: []string{
				"pe201: kill -TERM 2003",
				"pe201: wait until pid 2003 exited",
				"pe201: /bin/sh /run/backbone/t/run/nodes/pe201/ipsec.sh",
			},
			converge: []string{"pe201"},
		},
		{
			spec: Spec{Kind: CharonKill, Node: "pe201"},
			inject: []string{
				"pe201: kill -KILL 2003",
				"pe201: wait until pid 2003 exited",
			},
			restore:  []string{"pe201: /bin/sh /run/backbone/t/run/nodes/pe201/ipsec.sh"},
			converge: []string{"pe201"},
		},
		{
			spec: Spec{Kind: IPsecRekey, A: "pe101", B: "pe201"},
			inject: []string{
				"pe101: swanctl --rekey --child gre-pe201",
				"pe101: swanctl --rekey --ike pe201",
			},
			converge: []string{"pe101", "pe201"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.spec.String(), func(t *testing.T) {
			a, err := Build(tt.spec, l)
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(a.Inject); !reflect.DeepEqual(got, tt.inject) {
				t.Errorf("inject:\n got %q\nwant %q", got, tt.inject)
			}
			if got := strs(a.Restore); !reflect.DeepEqual(got, tt.restore) {
				t.Errorf("restore:\n got %q\nwant %q", got, tt.restore)
			}
			if !reflect.DeepEqual(a.Converge, tt.converge) || !reflect.DeepEqual(a.Down, tt.down) {
				t.Errorf("converge %v down %v, want %v %v", a.Converge, a.Down, tt.converge, tt.down)
			}
		})
	}
}

// The argv must be exact, not only its display: one argument per vtysh -c.
func TestBuildArgv(t *testing.T) {
	a, err := Build(Spec{Kind: LinkShut, A: "pe101", B: "pe201"}, testLab(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"vtysh", "-c", "configure terminal", "-c", "interface gre-pe201", "-c", "shutdown"}
	if !reflect.DeepEqual(a.Inject[0].Argv, want) {
		t.Errorf("argv %q, want %q", a.Inject[0].Argv, want)
	}
}

// PEs on one underlay LAN are bridged in the underlay node: the cut must
// drop in the bridge forward hook too.
func TestUnderlayCutSharedLAN(t *testing.T) {
	l := testLab(t)
	pe201 := l.Plan.Router("pe201")
	pe201.Underlay.IPv6 = netip.MustParsePrefix("2001:db8:101::3/64")
	a, err := Build(Spec{Kind: UnderlayCut, A: "pe101", B: "pe201"}, l)
	if err != nil {
		t.Fatal(err)
	}
	got := strs(a.Inject)[0]
	for _, want := range []string{
		"add table inet backbone_chaos",
		"add chain bridge backbone_chaos forward { type filter hook forward priority -10; policy accept; }",
		"add rule bridge backbone_chaos forward ip6 saddr 2001:db8:101::3 ip6 daddr 2001:db8:101::2 drop",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inject lacks %q:\n%s", want, got)
		}
	}
	if got := strs(a.Restore); !reflect.DeepEqual(got, []string{"underlay: nft 'delete table inet backbone_chaos; delete table bridge backbone_chaos'"}) {
		t.Errorf("restore %q", got)
	}
}

func TestBuildErrors(t *testing.T) {
	l := testLab(t)
	tests := []struct {
		spec Spec
		err  string
	}{
		{Spec{Kind: LinkShut, A: "pe101", B: "pe202"}, "no link between pe101 and pe202: use one of pe101-pe201, pe101-pe102"},
		{Spec{Kind: LinkShut, A: "pe999", B: "pe201"}, `no router "pe999"`},
		{Spec{Kind: UnderlayCut, A: "ce1", B: "pe101"}, "ce1 is a ce, not a backbone router"},
		{Spec{Kind: NodeFail, Node: "ce1"}, "not a backbone router"},
		{Spec{Kind: DaemonRestart, Node: "pe101", Daemon: "isisd"}, "pe101 does not run isisd"},
		{Spec{Kind: CharonKill, Node: "ce2"}, "ce2 is a ce, not a backbone router"},
		{Spec{Kind: DaemonRestart, Node: "pe101", Daemon: "bgpd", Graceful: true}, "only ospfd and ospf6d"},
	}
	for _, tt := range tests {
		if _, err := Build(tt.spec, l); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v, want %q", tt.spec, err, tt.err)
		}
	}
	l.Daemons = func(string) ([]lab.DaemonStatus, error) {
		return []lab.DaemonStatus{{Name: "zebra", PID: 5, Running: true}, {Name: "ospfd", PID: 6}}, nil
	}
	if _, err := Build(Spec{Kind: NodeFail, Node: "pe102"}, l); err == nil || !strings.Contains(err.Error(), "ospfd not running before the fault") {
		t.Errorf("node-fail with a dead daemon: %v", err)
	}
}

// fakeRunner records what it is asked and answers from a table.
type fakeRunner struct {
	calls   []string
	answers map[string]string // "node: argv" -> output
	fail    string            // a call that fails
}

func (f *fakeRunner) Run(_ context.Context, node string, argv []string) ([]byte, error) {
	call := Step{Node: node, Argv: argv}.String()
	f.calls = append(f.calls, call)
	if call == f.fail {
		return []byte("boom"), errors.New("exit status 1")
	}
	return []byte(f.answers[call]), nil
}

func (f *fakeRunner) WaitExit(_ context.Context, node string, pids []int) error {
	f.calls = append(f.calls, fmt.Sprint("wait ", pids))
	return nil
}

func (f *fakeRunner) NodeAction(_ context.Context, node, action string) error {
	f.calls = append(f.calls, node+": "+action)
	return nil
}

func TestExecute(t *testing.T) {
	steps := []Step{
		{Node: "pe1", Argv: []string{"kill", "-TERM", "7"}},
		{Node: "pe1", WaitExit: []int{7}},
		{Node: "pe1", Argv: []string{"vtysh", "-c", "x"}},
		{Node: "pe1", Argv: []string{"never"}},
	}
	f := &fakeRunner{answers: map[string]string{"pe1: vtysh -c x": "% Unknown command: x\n"}}
	err := Execute(context.Background(), f, steps)
	if err == nil || !strings.Contains(err.Error(), "vtysh refused a command") {
		t.Errorf("err = %v, want vtysh refusal", err)
	}
	want := []string{"pe1: kill -TERM 7", "wait [7]", "pe1: vtysh -c x"}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("calls %q, want %q", f.calls, want)
	}
	f = &fakeRunner{fail: "pe1: kill -TERM 7"}
	if err := Execute(context.Background(), f, steps); err == nil || !strings.Contains(err.Error(), "boom") || len(f.calls) != 1 {
		t.Errorf("err = %v after %q", err, f.calls)
	}
}

func TestAttribute(t *testing.T) {
	s := probe.Summary{Name: "x", Sent: 100, Lost: 9, Gaps: []probe.Gap{
		{FirstSeq: 1, LastSeq: 1, Lost: 1, Start: 1 * time.Millisecond, End: 2 * time.Millisecond},
		{FirstSeq: 20, LastSeq: 24, Lost: 5, Start: 20 * time.Millisecond, End: 25 * time.Millisecond},
		// Starts before restore, ends after: all of it is the fault's.
		{FirstSeq: 48, LastSeq: 49, Lost: 2, Start: 48 * time.Millisecond, End: 51 * time.Millisecond},
		{FirstSeq: 70, LastSeq: 70, Lost: 1, Start: 70 * time.Millisecond, End: 71 * time.Millisecond, Open: true},
	}}
	r := Attribute(s, 10*time.Millisecond, 50*time.Millisecond)
	if r.Baseline != (Loss{MS: 1, Lost: 1, Gaps: 1, Longest: 1}) ||
		r.Fault != (Loss{MS: 8, Lost: 7, Gaps: 2, Longest: 5}) ||
		r.Recovery != (Loss{MS: 1, Lost: 1, Gaps: 1, Longest: 1}) || !r.Open {
		t.Errorf("got %+v", r)
	}
	phases := []string{}
	for _, g := range r.Gaps {
		phases = append(phases, g.Phase)
	}
	if want := []string{"baseline", "fault", "fault", "recovery"}; !reflect.DeepEqual(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
}

func TestSummarize(t *testing.T) {
	run := func(site, lo, down float64, recovered bool) *Result {
		return &Result{Scenario: "s", Recovered: recovered, Streams: []StreamResult{
			{Name: "ce1>ce2 ipv4", Site: true, Fault: Loss{MS: site, Lost: int(site)}},
			{Name: "pe1>pe2 ipv4", Fault: Loss{MS: lo}, Recovery: Loss{MS: 2 * lo}},
			{Name: "pe1>pe3 ipv4", Down: true, Fault: Loss{MS: down}},
		}}
	}
	a := Summarize([]*Result{run(100, 10, 5000, true), run(300, 30, 5000, true), run(200, 500, 6000, false), run(400, 20, 5000, true)})
	if a.Runs != 4 || a.NotRecovered != 1 {
		t.Errorf("runs %d not recovered %d", a.Runs, a.NotRecovered)
	}
	if got := a.Streams[0].FaultMS; got != (Stat{Median: 250, Max: 400}) {
		t.Errorf("site fault %+v", got)
	}
	if got := a.Streams[0].FaultLost; got != (Stat{Median: 250, Max: 400}) {
		t.Errorf("site lost %+v", got)
	}
	if got := a.Streams[1].RecoveryMS; got != (Stat{Median: 50, Max: 1000}) {
		t.Errorf("loopback recovery %+v", got)
	}
	if got := a.Sites.FaultMS; got != (Stat{Median: 250, Max: 400}) {
		t.Errorf("worst site %+v", got)
	}
	// The stream to the downed router does not count in the worst-of.
	if got := a.All.FaultMS; got != (Stat{Median: 350, Max: 500}) {
		t.Errorf("worst stream %+v", got)
	}
	if got := statOf([]float64{3, 1, 2}); got != (Stat{Median: 2, Max: 3}) {
		t.Errorf("odd median %+v", got)
	}
}

func TestStreams(t *testing.T) {
	l := testLab(t)
	l.Endpoint = func(node string, addr netip.Addr) probe.Endpoint {
		return probe.Endpoint{Place: node, Addr: addr}
	}
	st := Streams(l, time.Millisecond, 5*time.Millisecond)
	// 2 sites x 2 directions x 2 families, then 4 PEs: 12 ordered pairs x 2 families.
	if len(st) != 4+24 {
		t.Fatalf("%d streams, want 28", len(st))
	}
	sites := 0
	for i, s := range st {
		if s.Site {
			sites++
			if i >= 4 {
				t.Errorf("site stream %s after the loopback streams", s.Name)
			}
		}
		if s.From.Place != s.FromNode || s.To.Place != s.ToNode {
			t.Errorf("%s: endpoints %q -> %q, nodes %q -> %q", s.Name, s.From.Place, s.To.Place, s.FromNode, s.ToNode)
		}
	}
	if sites != 4 {
		t.Errorf("%d site streams, want 4", sites)
	}
	if st[0].Interval != time.Millisecond || st[4].Interval != 5*time.Millisecond {
		t.Errorf("intervals %s (site) and %s (core), want 1ms and 5ms", st[0].Interval, st[4].Interval)
	}
	if st[4].Name != "pe101>pe201 ipv4" || st[4].From.Addr.String() != "10.10.0.2" || st[4].To.Addr.String() != "10.10.0.1" {
		t.Errorf("first loopback stream %+v", st[4])
	}
}

// Router names with dashes: "a-b" - "c" and "a" - "b-c" are different
// links; a link given as "a-b-c" is resolved against the plan, and is an
// error when both exist.
func TestLinkNamesWithDashes(t *testing.T) {
	y := intenttest.EditDefault(t,
		"  - name: pe102\n", "  - name: a-b\n    role: pe\n    underlay: {ipv6: \"2001:db8:a::2/64\"}\n  - name: c\n    role: pe\n    underlay: {ipv6: \"2001:db8:c::2/64\"}\n  - name: b-c\n    role: pe\n    underlay: {ipv6: \"2001:db8:bc::2/64\"}\n  - name: a\n    role: pe\n    underlay: {ipv6: \"2001:db8:aa::2/64\"}\n  - name: pe102\n",
		"\nvrfs:", "  - {between: [a-b, c], encap: gre}\n  - {between: [a, b-c], encap: gre}\n  - {between: [a, pe101], encap: gre}\n  - {between: [c, pe101], encap: gre}\n  - {between: [b-c, pe101], encap: gre}\n  - {between: [a-b, pe101], encap: gre}\n\nvrfs:")
	p := intenttest.Plan(t, y, "dashes")
	names := map[string]bool{}
	for _, l := range p.Links {
		if names[l.Name] {
			t.Errorf("two links named %q", l.Name)
		}
		names[l.Name] = true
	}
	if !names["a-b--c"] || !names["a--b-c"] {
		t.Errorf("link names %v, want a-b--c and a--b-c", names)
	}
	if plan.LinkKey("a-b", "c") == plan.LinkKey("a", "b-c") {
		t.Errorf("both links have the PSK key %q", plan.LinkKey("a", "b-c"))
	}
	l := Lab{Plan: p}
	spec, _ := ParseSpec(LinkShut, []string{"a-b-c"})
	if _, err := Build(spec, l); err == nil || !strings.Contains(err.Error(), "ambiguous: write a--b-c or a-b--c") {
		t.Errorf("a-b-c: %v", err)
	}
	for _, c := range []struct {
		args []string
		ifc  string
	}{{[]string{"a-b--c"}, "gre-c"}, {[]string{"a--b-c"}, "gre-b-c"}, {[]string{"a", "b-c"}, "gre-b-c"}} {
		spec, err := ParseSpec(LinkShut, c.args)
		if err != nil {
			t.Fatal(err)
		}
		acts, err := Build(spec, l)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if got := strs(acts.Inject)[0]; !strings.Contains(got, "interface "+c.ifc) {
			t.Errorf("%v: inject %q, want interface %s", c.args, got, c.ifc)
		}
	}
}

// A run's stream results carry each stream's own achieved spacing (it was
// once set after the result was copied, and reported as 0), the worst
// site and core spacing, loss attributed to fault and recovery, and
// streams to a router the fault takes down marked as such.
func TestAddStreams(t *testing.T) {
	const ms = time.Millisecond
	rec := func(every time.Duration, n int, lost ...uint64) probe.Record {
		r := probe.Record{Stream: probe.Stream{Interval: every}}
		for i := 0; i < n; i++ {
			r.Sent = append(r.Sent, time.Duration(i)*every)
		}
		// a 3 ms stall before probe 10
		for i := 10; i < n; i++ {
			r.Sent[i] += 2 * every
		}
	next:
		for i := 0; i < n; i++ {
			for _, l := range lost {
				if uint64(i) == l {
					continue next
				}
			}
			r.Received = append(r.Received, probe.Arrival{Seq: uint64(i), SentAt: r.Sent[i], RecvAt: r.Sent[i] + ms/2})
		}
		return r
	}
	recs := []probe.Record{rec(ms, 400, 150, 151, 152), rec(10*ms, 40)}
	probes := []Probe{{FromNode: "ce1", ToNode: "ce2", Site: true}, {FromNode: "pe101", ToNode: "pe102"}}
	var res Result
	res.addStreams(recs, probes, []string{"pe102"}, nil, 100*ms, 300*ms, 0)
	if len(res.Streams) != 2 {
		t.Fatalf("%d streams, want 2", len(res.Streams))
	}
	site, core := res.Streams[0], res.Streams[1]
	if site.Spacing.Max != 3 || site.Spacing.Mean <= 1 || core.Spacing.Max != 30 {
		t.Errorf("spacing site %+v core %+v, want max 3 ms and 30 ms", site.Spacing, core.Spacing)
	}
	if res.Achieved != site.Spacing || res.CoreAchieved != core.Spacing {
		t.Errorf("run spacing %+v/%+v, want the streams' %+v/%+v", res.Achieved, res.CoreAchieved, site.Spacing, core.Spacing)
	}
	if site.Fault.Lost != 3 || site.Recovery.Lost != 0 {
		t.Errorf("site loss fault %+v recovery %+v, want 3 probes in the fault", site.Fault, site.Recovery)
	}
	if site.Down || !core.Down || !site.Site || core.Site {
		t.Errorf("site %+v core %+v: want only the stream to pe102 marked down, only the CE stream a site", site, core)
	}
	if res.End != 410 {
		t.Errorf("End = %v ms, want 410 (the core stream's last send)", res.End)
	}
	// pe102's probe engine died with its kernel: the stream's record
	// stops at its last report, and that open end is not loss.
	dead := rec(10*ms, 40)
	dead.Received = dead.Received[:20]
	var res2 Result
	res2.addStreams([]probe.Record{dead}, probes[1:], []string{"pe102"}, map[string]bool{"pe102": true}, 100*ms, 300*ms, 0)
	if s := res2.Streams[0]; !s.EngineLost || s.Open || s.Fault.Lost != 0 || s.Recovery.Lost != 0 {
		t.Errorf("a stream of a dead engine: %+v", s)
	}
	var res3 Result
	res3.addStreams([]probe.Record{dead}, probes[1:], []string{"pe102"}, nil, 100*ms, 300*ms, 0)
	if s := res3.Streams[0]; s.EngineLost || !s.Open {
		t.Errorf("the same record with the engine alive is an open gap: %+v", s)
	}
}
