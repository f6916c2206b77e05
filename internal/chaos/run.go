package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/backbone-net/backbone/internal/probe"
	"github.com/backbone-net/backbone/internal/verify"
)

// Options of a chaos run.
type Options struct {
	Spec   Spec
	Lab    Lab
	Runner Runner
	// Interval between probes of a site stream (default 1 ms), and of a
	// PE loopback stream (default Interval).
	Interval     time.Duration
	CoreInterval time.Duration
	// Baseline is how long probes run before the fault (default 2 s).
	Baseline time.Duration
	// Hold is how long the fault lasts before restore (default 10 s).
	Hold time.Duration
	// Settle is how long every stream must flow without a gap, after the
	// control plane converged, before recovery is declared (default 3 s).
	Settle time.Duration
	// RecoverTimeout bounds the wait for recovery after restore, and for
	// a converged lab before the run (default 60 s).
	RecoverTimeout time.Duration
	// Backend is recorded in the result.
	Backend  string
	Progress func(format string, args ...any)
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = time.Millisecond
	}
	if o.CoreInterval <= 0 {
		o.CoreInterval = o.Interval
	}
	if o.Baseline <= 0 {
		o.Baseline = 2 * time.Second
	}
	if o.Hold < 0 {
		o.Hold = 0
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	if o.RecoverTimeout <= 0 {
		o.RecoverTimeout = 60 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
}

// stale is how long a stream may go without an arrival and still count
// as flowing (probes in flight under emulation take a while).
func (o *Options) stale() time.Duration { return max(300*time.Millisecond, 20*o.Interval) }

// Run carries out one run of a scenario under probe traffic: wait for a
// converged lab, start probes, baseline, inject, hold, restore, wait for
// recovery, stop probes, attribute every gap. run is the 1-based repeat.
func Run(ctx context.Context, o Options, run int) (*Result, error) {
	o.defaults()
	acts, err := Build(o.Spec, o.Lab)
	if err != nil {
		return nil, err
	}
	pl := o.Lab.Plan
	var pes []string
	for _, r := range pl.PEs() {
		pes = append(pes, r.Name)
	}
	if len(pes) == 0 {
		return nil, fmt.Errorf("plan %q has no PE: nothing to probe", pl.Name)
	}
	o.Progress("run %d: waiting for a converged backbone (%s)", run, strings.Join(pes, ", "))
	if _, why := waitConverged(ctx, o, pes, time.Now().Add(o.RecoverTimeout)); why != "" {
		return nil, fmt.Errorf("the lab is not converged before the fault (%s) after %s: check `backbone verify`, or rebuild the lab", why, o.RecoverTimeout)
	}
	probes := Streams(o.Lab, o.Interval, o.CoreInterval)
	var streams []probe.Stream
	for _, p := range probes {
		streams = append(streams, p.Stream)
	}
	popt := o.Lab.Probe
	popt.Grace = o.stale()
	// A node whose own kernel crashes takes its probe engine with it:
	// its streams stop at the crash, the others are measured on.
	crashed := map[string]string{} // node -> probe place
	for _, n := range acts.Down {
		if r := pl.Router(n); r != nil && o.Lab.OwnKernel != nil && o.Lab.OwnKernel(n) && o.Lab.Endpoint != nil {
			place := o.Lab.Endpoint(n, r.LoopbackV4).Place
			crashed[n] = place
			if popt.Expendable == nil {
				popt.Expendable = map[string]bool{}
			}
			popt.Expendable[place] = true
		}
	}
	// The probes outlive an interrupt: what they measured until then is
	// still reported (marked incomplete) once the fault is restored.
	sess, err := probe.Start(context.WithoutCancel(ctx), streams, popt)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			sess.Stop()
		}
	}()
	o.Progress("run %d: %d probe streams every %s; waiting until all flow", run, len(streams), o.Interval)
	if err := waitFlowing(ctx, o, sess, streams, 30*time.Second); err != nil {
		return nil, fmt.Errorf("before the fault: %w", err)
	}
	var capture *verify.Capture
	if o.Spec.Captures() {
		o.Progress("run %d: capturing the underlay between PEs", run)
		if capture, err = verify.StartCapture(context.WithoutCancel(ctx), pl, o.Lab.Nodes); err != nil {
			return nil, err
		}
		defer capture.Stop()
	}
	sleep(ctx, o.Baseline)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted before the fault: nothing was changed")
	}

	res := &Result{Scenario: o.Spec.String(), Spec: o.Spec, Run: run, Backend: o.Backend, Interval: ms(o.Interval), CoreInterval: ms(o.CoreInterval), Actions: acts}
	inject := sess.Now()
	o.Progress("run %d: inject %s", run, o.Spec)
	// An inject runs to its end (a few commands): a half-injected fault
	// would be harder to undo than a whole one.
	if err := Execute(context.WithoutCancel(ctx), o.Runner, acts.Inject); err != nil {
		// Put back what can be put back before reporting.
		rerr := Execute(context.WithoutCancel(ctx), o.Runner, acts.Restore)
		return nil, errors.Join(fmt.Errorf("inject %s: %w", o.Spec, err), wrapRestore(rerr))
	}
	injectDone := sess.Now()
	sleep(ctx, inject+o.Hold-sess.Now())
	restore := sess.Now()
	if len(acts.Restore) > 0 {
		o.Progress("run %d: restore after %s", run, (restore - inject).Round(time.Millisecond))
	}
	if err := Execute(context.WithoutCancel(ctx), o.Runner, acts.Restore); err != nil {
		return nil, wrapRestore(err)
	}
	restoreDone := sess.Now()
	o.Progress("run %d: waiting for recovery: %s converged, every stream flowing, then %s without loss", run, strings.Join(acts.Converge, " and "), o.Settle)
	lost := func() map[string]bool {
		out := map[string]bool{}
		for n, place := range crashed {
			if sess.Lost(place) {
				out[n] = true
			}
		}
		return out
	}
	skip := func(i int) bool {
		l := lost()
		return l[probes[i].FromNode] || l[probes[i].ToNode]
	}
	conv, note := waitRecovery(ctx, o, sess, streams, skip, acts, restoreDone)
	if ctx.Err() != nil {
		res.Incomplete = true
		note = fmt.Sprintf("interrupted %.1fs after inject: the fault was restored; recovery was not awaited", (sess.Now() - inject).Seconds())
	}
	res.Converged = ms(conv)
	if capture != nil {
		n := capture.Stop()
		res.Capture, res.CleartextPackets = &n, &n.Cleartext
	}
	recs := sess.StopWithin(o.stale())
	stopped = true
	if err := sess.Err(); err != nil {
		return nil, fmt.Errorf("the probes failed, the run measured nothing: %w", err)
	}
	res.Inject, res.InjectDone, res.Restore, res.RestoreDone = ms(inject), ms(injectDone), ms(restore), ms(restoreDone)
	res.addStreams(recs, probes, acts.Down, lost(), inject, restore, o.stale()/2)
	if conv < 0 {
		res.Converged = 0
	}
	res.Recovered = note == ""
	res.Note = note
	for _, s := range res.Streams {
		if s.Open && !s.EngineLost {
			res.Recovered = false
			if res.Note == "" {
				res.Note = "stream " + s.Name + " never came back"
			}
		}
	}
	return res, nil
}

func wrapRestore(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("restore failed, the lab may be left broken (rebuild it: `backbone lab down` then `lab up`): %w", err)
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// waitConverged polls the routers until each one's control plane is whole
// or the deadline passes; it returns when and what is still missing.
func waitConverged(ctx context.Context, o Options, nodes []string, deadline time.Time) (time.Time, string) {
	pending := slices.Clone(nodes)
	why := ""
	for {
		var still []string
		var reasons []string
		for _, n := range pending {
			if w := converged(ctx, o.Lab, n); w != "" {
				still = append(still, n)
				reasons = append(reasons, n+": "+w)
			}
		}
		pending, why = still, strings.Join(reasons, "; ")
		if len(pending) == 0 {
			return time.Now(), ""
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Now(), why
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// notFlowing lists the streams without a recent arrival, but for those
// skip says are gone for good.
func notFlowing(o Options, sess *probe.Session, streams []probe.Stream, skip func(int) bool) []string {
	now := sess.Now()
	var out []string
	for i, st := range sess.State() {
		if skip != nil && skip(i) {
			continue
		}
		if st.LastArrival == 0 || now-st.LastArrival > o.stale() {
			out = append(out, streams[i].Name)
		}
	}
	return out
}

func waitFlowing(ctx context.Context, o Options, sess *probe.Session, streams []probe.Stream, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		nf := notFlowing(o, sess, streams, nil)
		if len(nf) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no probes arrive on %s after %s: the lab does not forward (run `backbone verify`)", strings.Join(nf, ", "), timeout)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// waitRecovery waits until the routers of the scenario converged, every
// stream flows, and no stream lost anything for o.Settle after both. It
// returns the convergence time and, on timeout, what is still broken.
func waitRecovery(ctx context.Context, o Options, sess *probe.Session, streams []probe.Stream, skip func(int) bool, acts *Actions, since time.Duration) (time.Duration, string) {
	deadline := since + o.RecoverTimeout
	conv := time.Duration(-1)
	pending := slices.Clone(acts.Converge)
	why := ""
	var nextCheck time.Duration
	for {
		now := sess.Now()
		if conv < 0 && now >= nextCheck {
			var still, reasons []string
			for _, n := range pending {
				if w := converged(ctx, o.Lab, n); w != "" {
					still = append(still, n)
					reasons = append(reasons, n+": "+w)
				}
			}
			pending, why = still, strings.Join(reasons, "; ")
			now = sess.Now()
			if len(pending) == 0 {
				conv = now
			}
			nextCheck = now + 500*time.Millisecond
		}
		nf := notFlowing(o, sess, streams, skip)
		quietFrom := max(since, conv)
		for i, st := range sess.State() {
			if !skip(i) {
				quietFrom = max(quietFrom, st.LastResume)
			}
		}
		if conv >= 0 && len(nf) == 0 && now-quietFrom >= o.Settle {
			return conv, ""
		}
		if now > deadline || ctx.Err() != nil {
			var broken []string
			if why != "" {
				broken = append(broken, "not converged: "+why)
			}
			if len(nf) > 0 {
				broken = append(broken, "no traffic on "+strings.Join(nf, ", "))
			}
			if len(broken) == 0 {
				broken = append(broken, fmt.Sprintf("loss kept recurring (last gap ended %.1fs after restore)", (quietFrom-since).Seconds()))
			}
			return conv, fmt.Sprintf("not recovered %s after restore: %s", o.RecoverTimeout, strings.Join(broken, "; "))
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// converged says what keeps a router's control plane from being whole
// ("" when nothing does): verify's control-plane checks of that router,
// so that chaos and verify mean the same by "up".
func converged(ctx context.Context, l Lab, router string) string {
	var failing []string
	for _, res := range verify.ControlPlane(ctx, l.Plan, l.Nodes, []string{router}) {
		if !res.Pass {
			failing = append(failing, res.Name+" ("+res.Evidence+")")
		}
	}
	if len(failing) > 3 {
		failing = append(failing[:3], fmt.Sprintf("%d more", len(failing)-3))
	}
	return strings.Join(failing, ", ")
}

// addStreams turns the probe records into the run's stream results (loss
// split into fault and recovery, the spacing each stream achieved) and
// the run's worst spacing for site and core streams. down are the routers
// the fault takes down: streams to or from them are marked.
func (res *Result) addStreams(recs []probe.Record, probes []Probe, down []string, lost map[string]bool, inject, restore, grace time.Duration) {
	var siteIv, coreIv []Spacing
	for i, rec := range recs {
		sum := probe.Analyze(rec, grace)
		engineLost := lost[probes[i].FromNode] || lost[probes[i].ToNode]
		if engineLost {
			// The record ends where the dead engine's last report did:
			// the open gap after it is the engine's death, not loss.
			sum.Gaps = slices.DeleteFunc(sum.Gaps, func(g probe.Gap) bool { return g.Open })
		}
		sr := Attribute(sum, inject, restore)
		sr.Site = probes[i].Site
		sr.Down = slices.Contains(down, probes[i].FromNode) || slices.Contains(down, probes[i].ToNode)
		sr.EngineLost = engineLost
		sr.Spacing = spacing(rec.Sent)
		res.Streams = append(res.Streams, sr)
		if n := len(rec.Sent); n > 0 {
			res.End = max(res.End, ms(rec.Sent[n-1]))
		}
		if sr.Site {
			siteIv = append(siteIv, sr.Spacing)
		} else {
			coreIv = append(coreIv, sr.Spacing)
		}
	}
	res.Achieved, res.CoreAchieved = worstSpacing(siteIv), worstSpacing(coreIv)
}
