// Package chaos injects failures into a running lab under probe traffic
// and measures the blackholes: every gap of every probe stream, attributed
// to the fault (between inject and restore) or to the recovery (after
// restore). Scenarios are built as exact command lines run inside lab
// nodes through a Runner, so that tests can check them without a lab.
package chaos

import (
	"fmt"
	"slices"
	"strings"

	"github.com/backbone-net/backbone/internal/plan"
)

// Scenario kinds.
const (
	LinkShut      = "link-shut"
	UnderlayCut   = "underlay-cut"
	NodeFail      = "node-fail"
	DaemonRestart = "daemon-restart"
	IPsecRekey    = "ipsec-rekey"
	// CharonKill kills charon (SIGKILL, as a crash) and starts it again,
	// with the underlay captured throughout: nothing may cross in clear.
	CharonKill = "charon-kill"
	// Observe injects nothing: it measures what a change made by hand
	// (a deploy, a maintenance) costs while it holds.
	Observe = "observe"
)

// Kinds returns the scenario kinds.
func Kinds() []string {
	return []string{LinkShut, UnderlayCut, NodeFail, DaemonRestart, IPsecRekey, CharonKill, Observe}
}

// Restartable returns the daemons daemon-restart knows how to restart.
func Restartable() []string {
	return []string{"zebra", "staticd", "bfdd", "ospfd", "ospf6d", "ldpd", "bgpd", "charon"}
}

// Defaults when a scenario is given without a target: the link between the
// two site PEs (the ring keeps an alternate path), a PE that has no site
// (sites survive its death), and a site PE for daemon restarts.
const (
	DefaultLink          = "pe101-pe201"
	DefaultNode          = "pe102"
	DefaultRestartNode   = "pe101"
	DefaultRestartDaemon = "ospfd"
)

// Spec is a parsed scenario.
type Spec struct {
	Kind string `json:"kind"`
	// A and B are the ends of the link (link-shut, underlay-cut,
	// ipsec-rekey); the fault is injected on A. Link is the link as given
	// when its split into A and B needs the plan ("a-b-c": router names
	// may contain dashes); Build resolves it.
	A    string `json:"a,omitempty"`
	B    string `json:"b,omitempty"`
	Link string `json:"-"`
	// Node is the target of node-fail and daemon-restart.
	Node   string `json:"node,omitempty"`
	Daemon string `json:"daemon,omitempty"`
	// Graceful makes daemon-restart of ospfd/ospf6d a planned graceful
	// restart (RFC 3623/5187): FRR's "graceful-restart prepare" first.
	// It only helps when the routers' config enables graceful restart.
	Graceful bool `json:"graceful,omitempty"`
}

// Captures reports whether the scenario captures the underlay while it
// runs (its result then says how many packets crossed in clear).
func (s Spec) Captures() bool { return s.Kind == CharonKill }

func (s Spec) String() string {
	switch s.Kind {
	case Observe:
		return s.Kind
	case NodeFail, CharonKill:
		return s.Kind + " " + s.Node
	case DaemonRestart:
		if s.Graceful {
			return s.Kind + " " + s.Node + " " + s.Daemon + " (graceful)"
		}
		return s.Kind + " " + s.Node + " " + s.Daemon
	default:
		if s.A == "" {
			return s.Kind + " " + s.Link
		}
		return s.Kind + " " + plan.JoinNames(s.A, s.B)
	}
}

// ParseSpec parses "KIND [TARGET...]".
func ParseSpec(kind string, args []string) (Spec, error) {
	s := Spec{Kind: kind}
	switch kind {
	case LinkShut, UnderlayCut, IPsecRekey:
		link := DefaultLink
		switch len(args) {
		case 0:
		case 1:
			link = args[0]
		case 2:
			// Two routers: no splitting needed, whatever their names.
			s.A, s.B = args[0], args[1]
			return s, nil
		default:
			return s, fmt.Errorf("%s takes one link A-B (e.g. %s) or two routers, got %q", kind, DefaultLink, strings.Join(args, " "))
		}
		switch c := plan.SplitNames(link); len(c) {
		case 0:
			return s, fmt.Errorf("%s: link %q is not ROUTER-ROUTER (e.g. %s)", kind, link, DefaultLink)
		case 1:
			s.A, s.B = c[0][0], c[0][1]
		default:
			s.Link = link // router names with dashes: the plan decides
		}
	case NodeFail, CharonKill:
		// One router; node-fail's default has no site, charon-kill's does.
		s.Node = map[string]string{NodeFail: DefaultNode, CharonKill: DefaultRestartNode}[kind]
		switch len(args) {
		case 0:
		case 1:
			s.Node = args[0]
		default:
			return s, fmt.Errorf("%s takes one router (e.g. %s), got %q", kind, s.Node, strings.Join(args, " "))
		}
	case DaemonRestart:
		s.Node, s.Daemon = DefaultRestartNode, DefaultRestartDaemon
		switch len(args) {
		case 0:
		case 1:
			// One argument: a daemon (on the default node) or a node.
			if slices.Contains(Restartable(), args[0]) {
				s.Daemon = args[0]
			} else {
				s.Node = args[0]
			}
		case 2:
			s.Node, s.Daemon = args[0], args[1]
		default:
			return s, fmt.Errorf("%s takes ROUTER DAEMON (e.g. %s %s), got %q", kind, DefaultRestartNode, DefaultRestartDaemon, strings.Join(args, " "))
		}
		if !slices.Contains(Restartable(), s.Daemon) {
			return s, fmt.Errorf("%s: unknown daemon %q: use one of %s", kind, s.Daemon, strings.Join(Restartable(), ", "))
		}
	case Observe:
		if len(args) > 0 {
			return s, fmt.Errorf("%s takes no target, got %q", kind, strings.Join(args, " "))
		}
	default:
		return s, fmt.Errorf("unknown scenario %q: use one of %s", kind, strings.Join(Kinds(), ", "))
	}
	return s, nil
}
