// Package verify proves a running backbone against its plan: control plane
// (OSPFv2/v3, LDP, BGP VPNv4/VPNv6), data plane (site-to-site reachability
// and MTU), encryption (SAs and a capture of the underlay) and kernel state.
// It reads the network only through node.Runner values, so the same checks
// run on a lab (any backend) and on real hosts.
package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
)

// collector runs commands on the backbone's nodes.
type collector interface {
	// Run runs argv on node and returns its standard output. A non-zero
	// exit is an error that carries the command's standard error.
	Run(ctx context.Context, node string, argv ...string) ([]byte, error)
	// runner is the node's Runner (frrstate reads through it).
	runner(node string) node.Runner
}

// nodesCollector is the collector of a set of nodes.
type nodesCollector struct{ nodes node.Nodes }

func (c nodesCollector) Run(ctx context.Context, name string, argv ...string) ([]byte, error) {
	return node.Output(ctx, c.runner(name), argv...)
}

func (c nodesCollector) runner(name string) node.Runner {
	r, err := c.nodes.Node(name)
	if err != nil {
		return node.RunnerFunc(func(context.Context, node.Cmd) error { return err })
	}
	return r
}

// Groups of checks, in report order.
const (
	GroupIGP        = "igp"
	GroupLDP        = "ldp"
	GroupBGP        = "bgp"
	GroupDataPlane  = "dataplane"
	GroupEncryption = "encryption"
	GroupKernel     = "kernel"
)

var groupOrder = map[string]int{GroupIGP: 0, GroupLDP: 1, GroupBGP: 2, GroupDataPlane: 3, GroupEncryption: 4, GroupKernel: 5}

// Result is one check.
type Result struct {
	Group    string `json:"group"`
	Name     string `json:"name"`
	Pass     bool   `json:"pass"`
	Evidence string `json:"evidence"`
	// Cause is the likely cause of a failure.
	Cause string `json:"cause,omitempty"`
}

// Report is a verification run.
type Report struct {
	// Lab and Backend say where the numbers come from (set by the caller).
	Lab      string        `json:"lab,omitempty"`
	Backend  string        `json:"backend,omitempty"`
	Results  []Result      `json:"results"`
	Passed   int           `json:"passed"`
	Failed   int           `json:"failed"`
	Duration time.Duration `json:"duration_ns"`
	Attempts int           `json:"attempts"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return r.Failed == 0 && r.Passed > 0 }

// Options tune a run.
type Options struct {
	// Capture is how long the underlay is captured (default 1 s: the
	// data-plane probes cross it meanwhile, and BFD sends several packets
	// a second on every link); NoCapture
	// leaves the capture out (for quick retries while something else is
	// awaited).
	Capture   time.Duration
	NoCapture bool
	// Deployed: the routers are real hosts, the CEs and the underlay are
	// not ours to log into. The data plane is probed from each PE's VRF
	// and the underlay captured on the PEs' underlay interfaces.
	Deployed bool
}

// DefaultCapture is how long the underlay is captured by default.
const DefaultCapture = time.Second

// retryEvery is the pause between two attempts of Wait.
const retryEvery = 500 * time.Millisecond

// Run performs every check once.
func Run(ctx context.Context, p *plan.Plan, nodes node.Nodes, opt Options) *Report {
	return runChecks(ctx, p, nodesCollector{nodes}, opt)
}

func runChecks(ctx context.Context, p *plan.Plan, c collector, opt Options) *Report {
	if opt.Capture == 0 {
		opt.Capture = DefaultCapture
	}
	start := time.Now()
	// Three things at once: the capture of the underlay (it needs the
	// data-plane probes' traffic, and BFD's), the data-plane probes, and
	// the collection of every router's state with the checks on it.
	var wg sync.WaitGroup
	capture, dataplane := &recorder{}, &recorder{}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if !opt.NoCapture {
			checkCapture(ctx, p, c, opt.Capture, opt.Deployed, capture)
		}
	}()
	go func() {
		defer wg.Done()
		checkDataPlane(ctx, p, c, opt.Deployed, dataplane)
	}()
	sc := scope{p: p, sts: collect(ctx, p, c, nil)}
	r := &recorder{}
	checkIGP(sc, r)
	checkBFD(sc, r)
	checkLDP(sc, r)
	checkBGP(sc, r)
	checkKernel(sc, r)
	checkSAs(sc, r)
	checkGuard(sc, r)
	checkCELimits(sc, r)
	wg.Wait()
	r.results = append(append(r.results, dataplane.results...), capture.results...)
	rep := &Report{Results: r.results, Duration: time.Since(start), Attempts: 1}
	sort.SliceStable(rep.Results, func(i, j int) bool {
		return groupOrder[rep.Results[i].Group] < groupOrder[rep.Results[j].Group]
	})
	for _, res := range rep.Results {
		if res.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	return rep
}

// ControlPlane runs the control-plane checks (OSPFv2/v3 and BFD, LDP and
// LDP-IGP sync, BGP sessions and VPN routes) of some routers only: what
// "converged" means for them. chaos waits on it.
func ControlPlane(ctx context.Context, p *plan.Plan, nodes node.Nodes, routers []string) []Result {
	only := map[string]bool{}
	for _, r := range routers {
		only[r] = true
	}
	return controlChecks(scope{p: p, sts: collect(ctx, p, nodesCollector{nodes}, only), only: only})
}

// controlChecks are the control-plane checks of a scope.
func controlChecks(sc scope) []Result {
	r := &recorder{}
	checkIGP(sc, r)
	checkBFD(sc, r)
	checkLDP(sc, r)
	checkBGP(sc, r)
	return r.results
}

// Neighbours runs the control-plane checks between one router and some
// neighbours only (routers: OSPFv2/v3, BFD, LDP and LDP-IGP sync per
// link, VPN sessions; CEs: PE-CE eBGP): what deploy waits on after
// configuring a router, while the routers after it are not configured yet.
func Neighbours(ctx context.Context, p *plan.Plan, nodes node.Nodes, router string, peers []string) []Result {
	only := map[string]bool{router: true}
	pm := map[string]bool{}
	for _, n := range peers {
		pm[n] = true
	}
	return controlChecks(scope{p: p, sts: collect(ctx, p, nodesCollector{nodes}, only), only: only, peers: pm})
}

// Wait runs verification until every check passes or the time is up,
// returning the last report.
func Wait(ctx context.Context, p *plan.Plan, nodes node.Nodes, opt Options, d time.Duration, progress func(*Report)) *Report {
	deadline := time.Now().Add(d)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		rep := Run(ctx, p, nodes, opt)
		rep.Attempts = attempt
		rep.Duration = time.Since(start)
		if rep.OK() || time.Now().After(deadline) || ctx.Err() != nil {
			return rep
		}
		if progress != nil {
			progress(rep)
		}
		select {
		case <-ctx.Done():
			return rep
		case <-time.After(retryEvery):
		}
	}
}

type recorder struct{ results []Result }

func (r *recorder) pass(group, name, format string, args ...any) {
	r.results = append(r.results, Result{Group: group, Name: name, Pass: true, Evidence: oneLine(fmt.Sprintf(format, args...))})
}

func (r *recorder) fail(group, name, cause, format string, args ...any) {
	r.results = append(r.results, Result{Group: group, Name: name, Evidence: oneLine(fmt.Sprintf(format, args...)), Cause: cause})
}

// oneLine folds multi-line evidence (command output) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

func (r *recorder) check(ok bool, group, name, cause, evidence string) {
	if ok {
		r.pass(group, name, "%s", evidence)
	} else {
		r.fail(group, name, cause, "%s", evidence)
	}
}
