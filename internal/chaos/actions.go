package chaos

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/probe"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// NFTTable is the nftables table underlay-cut adds in the underlay node.
const NFTTable = "backbone_chaos"

// Step is one action: a command run inside a lab node, waiting until
// processes of a node are gone (WaitExit), or an action on the node as a
// whole (Node action: crash or revive its own kernel).
type Step struct {
	Node       string   `json:"node"`
	Argv       []string `json:"argv,omitempty"`
	WaitExit   []int    `json:"wait_exit,omitempty"`
	NodeAction string   `json:"node_action,omitempty"`
}

// Node actions.
const (
	// ActionCrash kills the node's kernel outright, as a power cut would.
	ActionCrash = "crash"
	// ActionRevive boots the node's kernel again and starts it as lab up did.
	ActionRevive = "revive"
)

func (s Step) String() string {
	if s.NodeAction != "" {
		return s.Node + ": " + s.NodeAction + " the node's kernel"
	}
	if len(s.WaitExit) > 0 {
		var ps []string
		for _, p := range s.WaitExit {
			ps = append(ps, strconv.Itoa(p))
		}
		return s.Node + ": wait until pid " + strings.Join(ps, " ") + " exited"
	}
	return s.Node + ": " + node.Quote(s.Argv)
}

// Actions is a scenario made concrete for one lab.
type Actions struct {
	Inject  []Step `json:"inject"`
	Restore []Step `json:"restore"`
	// Converge are the routers whose control plane (adjacencies, LDP,
	// BGP, BFD) must be whole again before recovery can be declared.
	Converge []string `json:"converge"`
	// Down are routers that are expected to be unreachable during the
	// fault: streams from or to them lose everything, by design.
	Down []string `json:"down,omitempty"`
}

// Lab is what building a scenario needs to know about the running lab.
type Lab struct {
	Plan  *plan.Plan
	Hosts map[string]*linux.Host
	// Nodes reaches the lab's nodes (verify's control-plane checks).
	Nodes node.Nodes
	// Daemons returns a node's daemons with their pids.
	Daemons func(node string) ([]lab.DaemonStatus, error)
	// StartScripts returns a node's start scripts.
	StartScripts func(node string) []string
	// OwnKernel reports whether a node runs its own kernel (UML): its
	// failure is then a real crash of that kernel.
	OwnKernel func(node string) bool
	// Endpoint is where a probe socket for addr on a node lives, and
	// Probe how the probe session reaches those places.
	Endpoint func(node string, addr netip.Addr) probe.Endpoint
	Probe    probe.Options
}

// Build turns a scenario into the commands that inject and restore it.
func Build(s Spec, l Lab) (*Actions, error) {
	if s.A == "" && s.Link != "" {
		var err error
		if s.A, s.B, err = resolveLink(l.Plan, s.Link); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Kind, err)
		}
	}
	switch s.Kind {
	case LinkShut:
		ifc, err := linkInterface(l.Plan, s)
		if err != nil {
			return nil, err
		}
		vty := func(cmd string) []string {
			return []string{"vtysh", "-c", "configure terminal", "-c", "interface " + ifc.Name, "-c", cmd}
		}
		return &Actions{
			Inject:   []Step{{Node: s.A, Argv: vty("shutdown")}},
			Restore:  []Step{{Node: s.A, Argv: vty("no shutdown")}},
			Converge: []string{s.A, s.B},
		}, nil
	case UnderlayCut:
		return underlayCut(l.Plan, s)
	case IPsecRekey:
		ifc, err := linkInterface(l.Plan, s)
		if err != nil {
			return nil, err
		}
		if !ifc.Encrypted {
			return nil, fmt.Errorf("%s: link %s-%s is not encrypted: pick a link with IPsec", s.Kind, s.A, s.B)
		}
		// Connection and child names as rendered in swanctl.conf: the peer
		// and the tunnel interface.
		return &Actions{
			Inject: []Step{
				{Node: s.A, Argv: []string{"swanctl", "--rekey", "--child", ifc.Name}},
				{Node: s.A, Argv: []string{"swanctl", "--rekey", "--ike", ifc.Peer}},
			},
			Converge: []string{s.A, s.B},
		}, nil
	case NodeFail:
		return nodeFail(l, s)
	case DaemonRestart:
		return daemonRestart(l, s)
	case CharonKill:
		return charonKill(l, s)
	case Observe:
		return &Actions{}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q: use one of %s", s.Kind, strings.Join(Kinds(), ", "))
}

// resolveLink splits "a-b-c" into the two routers of a link of the plan.
func resolveLink(p *plan.Plan, link string) (string, string, error) {
	var found [][2]string
	for _, c := range plan.SplitNames(link) {
		if r := p.Router(c[0]); r != nil && r.Underlay != nil {
			for _, i := range r.Interfaces {
				if i.Peer == c[1] {
					found = append(found, c)
				}
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0][0], found[0][1], nil
	case 0:
		var links []string
		for _, l := range p.Links {
			links = append(links, l.Name)
		}
		return "", "", fmt.Errorf("no link %q: use one of %s", link, strings.Join(links, ", "))
	}
	var forms []string
	for _, c := range found {
		forms = append(forms, plan.JoinNames(c[0], c[1]))
	}
	return "", "", fmt.Errorf("link %q is ambiguous: write %s", link, strings.Join(forms, " or "))
}

func backboneRouter(p *plan.Plan, name string) (*plan.Router, error) {
	r := p.Router(name)
	if r == nil {
		return nil, fmt.Errorf("no router %q in plan %q: use one of %s", name, p.Name, strings.Join(routerNames(p), ", "))
	}
	if r.Underlay == nil {
		return nil, fmt.Errorf("%s is a %s, not a backbone router: use one of %s", name, r.Role, strings.Join(routerNames(p), ", "))
	}
	return r, nil
}

func routerNames(p *plan.Plan) []string {
	var out []string
	for _, r := range p.Routers {
		if r.Underlay != nil {
			out = append(out, r.Name)
		}
	}
	return out
}

// linkInterface returns A's tunnel to B.
func linkInterface(p *plan.Plan, s Spec) (*plan.Interface, error) {
	a, err := backboneRouter(p, s.A)
	if err != nil {
		return nil, err
	}
	if _, err := backboneRouter(p, s.B); err != nil {
		return nil, err
	}
	var peers []string
	for _, i := range a.Interfaces {
		if i.Peer == s.B {
			return i, nil
		}
		peers = append(peers, plan.JoinNames(s.A, i.Peer))
	}
	return nil, fmt.Errorf("%s: no link between %s and %s: use one of %s", s.Kind, s.A, s.B, strings.Join(peers, ", "))
}

// underlayAddrs are a router's underlay addresses (both families).
func underlayAddrs(r *plan.Router) []netip.Addr {
	var out []netip.Addr
	for _, p := range []netip.Prefix{r.Underlay.IPv6, r.Underlay.IPv4} {
		if p.IsValid() {
			out = append(out, p.Addr())
		}
	}
	return out
}

func underlayCut(p *plan.Plan, s Spec) (*Actions, error) {
	if _, err := linkInterface(p, s); err != nil {
		return nil, err
	}
	a, b := p.Router(s.A), p.Router(s.B)
	// Routed underlay traffic crosses the inet forward hook. PEs on one
	// underlay network are bridged by the underlay node (see lab's
	// underlayHost): their frames cross the bridge forward hook instead.
	families := []string{"inet"}
	if sharedUnderlay(a, b) {
		families = append(families, "bridge")
	}
	var cmds, restore []string
	for _, fam := range families {
		// add is idempotent and flush clears a table a crashed run left.
		cmds = append(cmds,
			"add table "+fam+" "+NFTTable,
			"flush table "+fam+" "+NFTTable,
			"add chain "+fam+" "+NFTTable+" forward { type filter hook forward priority -10; policy accept; }")
		for _, x := range underlayAddrs(a) {
			for _, y := range underlayAddrs(b) {
				if x.Is4() != y.Is4() {
					continue
				}
				ip := "ip6"
				if x.Is4() {
					ip = "ip"
				}
				cmds = append(cmds,
					fmt.Sprintf("add rule %s %s forward %s saddr %s %s daddr %s drop", fam, NFTTable, ip, x, ip, y),
					fmt.Sprintf("add rule %s %s forward %s saddr %s %s daddr %s drop", fam, NFTTable, ip, y, ip, x))
			}
		}
		restore = append(restore, "delete table "+fam+" "+NFTTable)
	}
	return &Actions{
		Inject:   []Step{{Node: lab.Underlay, Argv: []string{"nft", strings.Join(cmds, "; ")}}},
		Restore:  []Step{{Node: lab.Underlay, Argv: []string{"nft", strings.Join(restore, "; ")}}},
		Converge: []string{s.A, s.B},
	}, nil
}

// sharedUnderlay reports whether two routers have an underlay network in
// common.
func sharedUnderlay(a, b *plan.Router) bool {
	for _, x := range []netip.Prefix{a.Underlay.IPv6, a.Underlay.IPv4} {
		for _, y := range []netip.Prefix{b.Underlay.IPv6, b.Underlay.IPv4} {
			if x.IsValid() && y.IsValid() && x.Masked() == y.Masked() {
				return true
			}
		}
	}
	return false
}

// runningDaemons returns the node's daemons, failing if one is down: a
// scenario on a half-dead node measures nothing useful.
func runningDaemons(l Lab, node string) ([]lab.DaemonStatus, error) {
	ds, err := l.Daemons(node)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("%s runs no daemons (no pid files): is the lab up? check `backbone lab status`", node)
	}
	var down []string
	for _, d := range ds {
		if !d.Running {
			down = append(down, d.Name)
		}
	}
	if len(down) > 0 {
		return nil, fmt.Errorf("%s: %s not running before the fault: repair the lab first (`backbone lab status`; `backbone lab down` and `lab up`)", node, strings.Join(down, ", "))
	}
	return ds, nil
}

func nodeFail(l Lab, s Spec) (*Actions, error) {
	r, err := backboneRouter(l.Plan, s.Node)
	if err != nil {
		return nil, err
	}
	ds, err := runningDaemons(l, s.Node)
	if err != nil {
		return nil, err
	}
	if l.OwnKernel != nil && l.OwnKernel(s.Node) {
		// The router is a kernel of its own: crash it for real, and boot
		// it again as lab up did.
		return &Actions{
			Inject:   []Step{{Node: s.Node, NodeAction: ActionCrash}},
			Restore:  []Step{{Node: s.Node, NodeAction: ActionRevive}},
			Converge: []string{s.Node},
			Down:     []string{s.Node},
		}, nil
	}
	scripts := l.StartScripts(s.Node)
	if len(scripts) == 0 {
		return nil, fmt.Errorf("node-fail %s: no start scripts to restart its daemons: is the lab up?", s.Node)
	}
	kill := []string{"kill", "-KILL"}
	var pids []int
	for _, d := range ds {
		kill = append(kill, strconv.Itoa(d.PID))
		pids = append(pids, d.PID)
	}
	dev := r.Underlay.Interface
	a := &Actions{
		Inject: []Step{
			{Node: s.Node, Argv: kill},
			{Node: s.Node, Argv: []string{"ip", "link", "set", dev, "down"}},
		},
		Restore:  []Step{{Node: s.Node, Argv: []string{"ip", "link", "set", dev, "up"}}},
		Converge: []string{s.Node},
		Down:     []string{s.Node},
	}
	// The kernel drops routes through a device that goes down: put the
	// underlay routes back as lab up configured them.
	if h := l.Hosts[s.Node]; h != nil {
		for _, rt := range h.Routes {
			if rt.Device != dev || rt.Table != 0 || rt.Type != linux.RouteUnicast {
				continue
			}
			argv := []string{"ip", "-4", "route", "replace", rt.Dst.String()}
			if rt.Dst.Addr().Is6() {
				argv[1] = "-6"
			}
			if rt.Via.IsValid() {
				argv = append(argv, "via", rt.Via.String())
			}
			argv = append(argv, "dev", dev)
			if rt.Metric != 0 {
				argv = append(argv, "metric", strconv.FormatUint(uint64(rt.Metric), 10))
			}
			a.Restore = append(a.Restore, Step{Node: s.Node, Argv: argv})
		}
	}
	a.Restore = append(a.Restore, Step{Node: s.Node, WaitExit: pids})
	for _, sc := range scripts {
		a.Restore = append(a.Restore, Step{Node: s.Node, Argv: []string{"/bin/sh", sc}})
	}
	return a, nil
}

// daemonPID returns the pid of a running daemon of a backbone router.
func daemonPID(l Lab, s Spec, daemon string) (int, error) {
	if _, err := backboneRouter(l.Plan, s.Node); err != nil {
		return 0, err
	}
	ds, err := runningDaemons(l, s.Node)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
		if d.Name == daemon {
			return d.PID, nil
		}
	}
	return 0, fmt.Errorf("%s: %s does not run %s: use one of %s", s.Kind, s.Node, daemon, strings.Join(names, ", "))
}

// ipsecStart returns a node's strongSwan start script: it starts charon
// and loads every connection and secret (swanctl --load-all).
func ipsecStart(l Lab, s Spec) (Step, error) {
	for _, sc := range l.StartScripts(s.Node) {
		if strings.HasSuffix(sc, "/ipsec.sh") {
			return Step{Node: s.Node, Argv: []string{"/bin/sh", sc}}, nil
		}
	}
	return Step{}, fmt.Errorf("%s: %s has no strongSwan start script (ipsec.sh): is the lab up?", s.Kind, s.Node)
}

// charonKill kills charon as a crash would (SIGKILL: no cleanup, its
// kernel policies and SAs stay) and restarts it on restore.
func charonKill(l Lab, s Spec) (*Actions, error) {
	pid, err := daemonPID(l, s, "charon")
	if err != nil {
		return nil, err
	}
	start, err := ipsecStart(l, s)
	if err != nil {
		return nil, err
	}
	return &Actions{
		Inject: []Step{
			{Node: s.Node, Argv: []string{"kill", "-KILL", strconv.Itoa(pid)}},
			{Node: s.Node, WaitExit: []int{pid}},
		},
		Restore:  []Step{start},
		Converge: []string{s.Node},
	}, nil
}

func daemonRestart(l Lab, s Spec) (*Actions, error) {
	pid, err := daemonPID(l, s, s.Daemon)
	if err != nil {
		return nil, err
	}
	a := &Actions{Converge: []string{s.Node}}
	if s.Graceful {
		prepare, ok := map[string]string{"ospfd": "graceful-restart prepare ip ospf", "ospf6d": "graceful-restart prepare ipv6 ospf"}[s.Daemon]
		if !ok {
			return nil, fmt.Errorf("daemon-restart --graceful: only ospfd and ospf6d have a planned graceful restart, not %s", s.Daemon)
		}
		a.Inject = append(a.Inject, Step{Node: s.Node, Argv: []string{"vtysh", "-c", prepare}})
	}
	a.Inject = append(a.Inject,
		Step{Node: s.Node, Argv: []string{"kill", "-TERM", strconv.Itoa(pid)}},
		Step{Node: s.Node, WaitExit: []int{pid}})
	if s.Daemon == "charon" {
		start, err := ipsecStart(l, s)
		if err != nil {
			return nil, err
		}
		a.Inject = append(a.Inject, start)
		return a, nil
	}
	// As FRR's own frrcommon.sh restarts one daemon: start it, then apply
	// the integrated config to that daemon only.
	a.Inject = append(a.Inject,
		Step{Node: s.Node, Argv: lab.FRRDaemonArgv(s.Daemon)},
		Step{Node: s.Node, Argv: []string{"vtysh", "-b", "-d", s.Daemon}})
	return a, nil
}
