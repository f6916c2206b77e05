// Package deploy puts a rendered backbone on real routers over SSH, as
// safely as an SP change: every router is reached and checked before
// anything changes; the diff is shown first (--diff); files are staged
// and checked with the router's own tools (vtysh --dryrun, nmcli
// --offline) before a switch; one router at a time, each switch reloads
// only what changed and is followed by that router's checks against the
// routers already done; the first failure puts that router back on its
// previous generation and stops. With a confirm time, each router arms a
// rollback of its own that fires unless `deploy confirm` arrives, also
// when the operator lost the router.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aymanbagabas/go-udiff"

	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/host"
	"github.com/backbone-net/backbone/internal/render/strongswan"
	"github.com/backbone-net/backbone/internal/sshnode"
	"github.com/backbone-net/backbone/internal/verify"
)

// Options of a deploy.
type Options struct {
	Plan *plan.Plan
	Keys strongswan.Credentials
	// Targets are the routers and how to reach them (Inventory.Targets).
	Targets []sshnode.Target
	// Diff only reports what would change.
	Diff bool
	// Confirm arms an automatic rollback on each router changed, firing
	// after this time unless Confirm is called.
	Confirm time.Duration
	// Atomic rolls back every router this run changed when one fails
	// (default: routers done stay done).
	Atomic bool
	// StepTimeout bounds the wait for a router's sessions with the routers
	// done before it (default 2 minutes).
	StepTimeout time.Duration
	// Note is recorded with each generation (who, from which intent).
	Note     string
	Progress func(format string, args ...any)
	// run names this deploy on every router it changes (for rollback).
	run string
}

// Report is what a deploy did, per router.
type Report struct {
	Intent  string         `json:"intent"`
	Diff    bool           `json:"diff"`
	Changed bool           `json:"changed"`
	Routers []RouterReport `json:"routers"`
	// Stopped says where and why the deploy stopped early ("" if it ran
	// through).
	Stopped  string        `json:"stopped,omitempty"`
	Confirm  string        `json:"confirm,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Router outcomes.
const (
	StatusUnchanged  = "unchanged"
	StatusWould      = "would change"
	StatusDeployed   = "deployed"
	StatusRolledBack = "rolled back"
	StatusFailed     = "failed"
	StatusNotReached = "not reached"
)

// RouterReport is one router's part.
type RouterReport struct {
	Name     string        `json:"name"`
	Status   string        `json:"status"`
	Previous int           `json:"previous_generation"`
	Current  int           `json:"generation"`
	Changes  []FileChange  `json:"changes"`
	Reloads  []string      `json:"reloads,omitempty"`
	Checks   int           `json:"checks,omitempty"`
	Armed    bool          `json:"rollback_armed,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// FileChange is one file that differs from what the router has.
type FileChange struct {
	Path string `json:"path"`
	// Change: create, modify, delete (backbone stops managing it: put back
	// as before backbone), mode (permissions or owner only).
	Change string `json:"change"`
	Diff   string `json:"diff,omitempty"`
}

// router is one router of a run.
type router struct {
	*remote
	plan   *plan.Router
	files  []host.File
	rep    *RouterReport
	client *sshnode.Client
}

// Connect reaches every target at once and reports every router it
// cannot reach, log into, or trust, together: nothing is changed then.
func Connect(ctx context.Context, p *plan.Plan, targets []sshnode.Target) ([]*router, error) {
	clients, err := dialAll(ctx, targets)
	if err != nil {
		return nil, err
	}
	out := make([]*router, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		r := p.Router(c.Name())
		out[i] = &router{remote: &remote{name: c.Name(), r: c, host: r.Host}, plan: r, client: c}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := out[i].inspect(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.Name(), err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll(out)
		return nil, err
	}
	return out, nil
}

func closeAll(rs []*router) {
	for _, r := range rs {
		if r != nil && r.client != nil {
			r.client.Close()
		}
	}
}

// Deploy runs a deploy (or, with Diff, reports one).
func Deploy(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if o.StepTimeout == 0 {
		o.StepTimeout = 2 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	o.run = start.UTC().Format("20060102T150405.000000000Z")
	rep := &Report{Intent: o.Plan.Name, Diff: o.Diff}
	defer func() { rep.Duration = time.Since(start) }()
	o.Progress("connecting to %d routers", len(o.Targets))
	rs, err := Connect(ctx, o.Plan, o.Targets)
	if err != nil {
		return nil, fmt.Errorf("nothing was changed on any router:\n%w", err)
	}
	defer closeAll(rs)
	// Everything is known about every router before anything changes.
	var problems []string
	for _, r := range rs {
		if miss := r.missing(strongswan.Needed(r.plan)); len(miss) > 0 {
			problems = append(problems, fmt.Sprintf("%s lacks %s", r.name, strings.Join(miss, ", ")))
		}
		files, err := host.Render(o.Plan, r.plan, o.Keys)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		r.files = files
		r.rep = &RouterReport{Name: r.name, Previous: r.current, Current: r.current}
		rep.Routers = append(rep.Routers, *r.rep)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("nothing was changed on any router:\n%s", strings.Join(problems, "\n"))
	}
	rep.Routers = rep.Routers[:0]
	for _, r := range rs {
		if err := r.changes(ctx); err != nil {
			return nil, fmt.Errorf("nothing was changed on any router: %w", err)
		}
		if len(r.rep.Changes) > 0 {
			rep.Changed = true
			r.rep.Status = StatusWould
		} else {
			r.rep.Status = StatusUnchanged
		}
	}
	defer func() {
		rep.Routers = rep.Routers[:0]
		for _, r := range rs {
			rep.Routers = append(rep.Routers, *r.rep)
		}
	}()
	if o.Diff {
		return rep, nil
	}
	// One router at a time; each is checked against those done.
	var done []string
	var changed []*router
	for _, r := range rs {
		if ctx.Err() != nil {
			rep.Stopped = fmt.Sprintf("interrupted before %s: the routers before it are deployed, %s and the rest are untouched", r.name, r.name)
			break
		}
		if r.rep.Status == StatusUnchanged {
			done = append(done, r.name)
			continue
		}
		if err := r.deploy(ctx, o, append(slices.Clone(done), ces(o.Plan, r.plan)...)); err != nil {
			rep.Stopped = fmt.Sprintf("stopped at %s: %v", r.name, err)
			if o.Atomic {
				for i := len(changed) - 1; i >= 0; i-- {
					changed[i].rollback(context.WithoutCancel(ctx), o)
				}
			}
			break
		}
		changed = append(changed, r)
		done = append(done, r.name)
	}
	if o.Confirm > 0 && len(changed) > 0 && rep.Stopped == "" {
		rep.Confirm = fmt.Sprintf("each changed router rolls back by itself in %s unless `backbone deploy confirm` runs", o.Confirm)
	}
	if rep.Stopped != "" {
		return rep, errors.New(rep.Stopped)
	}
	return rep, nil
}

// ces are the CEs attached to a router (the PE-CE eBGP to check).
func ces(p *plan.Plan, r *plan.Router) []string {
	var out []string
	for _, a := range r.Attachments {
		out = append(out, p.Sites[a.Site].CE)
	}
	return out
}

// changes compares the rendered files with the router's and fills the
// report's changes and reloads.
func (r *router) changes(ctx context.Context) error {
	paths := map[string]bool{}
	var list []string
	for _, f := range r.files {
		paths[f.Path] = true
		list = append(list, f.Path)
	}
	managed, err := r.managed(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	var dropped []string
	for _, p := range managed {
		if !paths[p] {
			dropped = append(dropped, p)
			list = append(list, p)
		}
	}
	have, err := r.read(ctx, list)
	if err != nil {
		return err
	}
	applies := map[string]bool{}
	var order []string
	reload := func(f host.File) {
		// A restart supersedes a reload of the same daemon.
		if (f.Apply == host.ApplyFRR && applies[host.ApplyDaemons]) || (f.Apply == host.ApplySwanctl && applies[host.ApplyCharon]) {
			return
		}
		applies[f.Apply] = true
		if s := reloadOf(f); !slices.Contains(order, s) {
			order = append(order, s)
		}
	}
	byOrder := slices.Clone(r.files)
	slices.SortStableFunc(byOrder, func(a, b host.File) int { return a.Order - b.Order })
	for _, f := range byOrder {
		l := have[f.Path]
		c := FileChange{Path: f.Path}
		switch {
		case !l.exists:
			c.Change = "create"
			c.Diff = diffText(f, "", string(f.Data))
		case string(l.data) != string(f.Data):
			c.Change = "modify"
			c.Diff = diffText(f, string(l.data), string(f.Data))
		case l.mode != fmt.Sprintf("%o", f.Mode.Perm()) || l.owner != f.Owner:
			c.Change = "mode"
			c.Diff = fmt.Sprintf("mode %s %s -> %o %s\n", l.mode, l.owner, f.Mode.Perm(), f.Owner)
		default:
			continue
		}
		r.rep.Changes = append(r.rep.Changes, c)
		reload(f)
	}
	slices.SortFunc(r.rep.Changes, func(a, b FileChange) int { return strings.Compare(a.Path, b.Path) })
	for _, p := range dropped {
		if have[p].exists {
			r.rep.Changes = append(r.rep.Changes, FileChange{Path: p, Change: "delete"})
		}
	}
	r.rep.Reloads = order
	return nil
}

// secret reports whether a file's content must not be shown.
func secret(f host.File) bool {
	return f.Mode.Perm()&0o077 == 0 && !strings.HasSuffix(f.Path, ".nmconnection")
}

func diffText(f host.File, old, new string) string {
	if secret(f) {
		return "(content hidden: the file holds secrets)\n"
	}
	return udiff.Unified("a"+f.Path, "b"+f.Path, old, new)
}

// reloadOf is what a change to f costs the router, in words.
func reloadOf(f host.File) string {
	switch f.Apply {
	case host.ApplySysctl:
		return "sysctl -p " + f.Path
	case host.ApplyModules:
		return "modprobe (modules-load.d)"
	case host.ApplyNM:
		return "nmcli connection up " + f.Device
	case host.ApplyNetdev:
		return "networkd: recreate " + f.Device
	case host.ApplyNetwork:
		return "networkctl reconfigure " + f.Device
	case host.ApplyFRR:
		return "systemctl reload frr (frr-reload.py: only the changed lines)"
	case host.ApplyDaemons:
		return "systemctl restart frr (the set of daemons changed)"
	case host.ApplyCharon:
		return "systemctl restart strongswan (charon's settings changed)"
	case host.ApplySwanctl:
		return "swanctl --load-all (changed connections only)"
	case host.ApplyFirewall:
		return "firewall-cmd --reload"
	case host.ApplyGuard:
		return "systemctl restart " + host.GuardService + " (IPsec fail-closed guard)"
	}
	return f.Apply
}

// deploy puts the new generation on one router and checks it against
// the routers done; on failure the router is back on its previous
// generation.
func (r *router) deploy(ctx context.Context, o Options, peers []string) error {
	start := time.Now()
	defer func() { r.rep.Duration = time.Since(start) }()
	n := 1
	if len(r.generations) > 0 {
		n = max(r.generations[len(r.generations)-1]+1, 1)
	}
	prev := r.current
	// From here on the router is changed: the step runs to its end
	// even when the operator interrupts (the run stops after it).
	ctx = context.WithoutCancel(ctx)
	fail := func(err error) error {
		r.rep.Status, r.rep.Error = StatusFailed, err.Error()
		return err
	}
	o.Progress("%s: uploading generation %d (%d changes)", r.name, n, len(r.rep.Changes))
	if err := r.upload(ctx, n, r.files, prev, o.run, o.Note); err != nil {
		return fail(fmt.Errorf("upload: %w", err))
	}
	if out, err := r.apply(ctx, "check", n); err != nil {
		_, _ = r.run(ctx, fmt.Sprintf("rm -rf %s/generations/%d", Root, n))
		return fail(fmt.Errorf("generation %d does not check out, nothing was changed: %s", n, lastLines(out, err)))
	}
	if out, err := r.apply(ctx, "snapshot", n); err != nil {
		return fail(fmt.Errorf("snapshot: %s", lastLines(out, err)))
	}
	if o.Confirm > 0 {
		if err := r.arm(ctx, prev, n, o.Confirm); err != nil {
			return fail(fmt.Errorf("arm the rollback: %w", err))
		}
		r.rep.Armed = true
	}
	o.Progress("%s: switching to generation %d: %s", r.name, n, strings.Join(r.rep.Reloads, "; "))
	if out, err := r.switchTo(ctx, "switch", n, n); err != nil {
		err = fmt.Errorf("switch to generation %d failed: %s", n, lastLines(out, err))
		r.rep.Error = err.Error()
		r.restore(ctx, o, prev, n)
		return err
	}
	r.rep.Current = n
	o.Progress("%s: checking its sessions with %s", r.name, orNone(peers))
	if err := r.check(ctx, o, peers); err != nil {
		r.rep.Error = err.Error()
		r.restore(ctx, o, prev, n)
		return err
	}
	r.rep.Status = StatusDeployed
	if err := r.inspect(ctx); err == nil {
		_ = r.prune(ctx, 5)
	}
	return nil
}

// restore puts a router that failed its step back on generation prev.
func (r *router) restore(ctx context.Context, o Options, prev, program int) {
	o.Progress("%s: rolling back to generation %d", r.name, prev)
	out, err := r.switchTo(ctx, "rollback", prev, program)
	r.rep.Status, r.rep.Current = StatusRolledBack, prev
	if err != nil {
		r.rep.Status = StatusFailed
		r.rep.Error += fmt.Sprintf("; the rollback to generation %d failed too: %s", prev, lastLines(out, err))
	}
	if r.rep.Armed {
		_, _ = r.confirm(ctx)
	}
}

// rollback puts a router this run deployed back on its previous
// generation (--atomic).
func (r *router) rollback(ctx context.Context, o Options) {
	r.restore(ctx, o, r.rep.Previous, r.rep.Current)
}

// check waits until the router's sessions with the routers done (and its
// CEs) are up.
func (r *router) check(ctx context.Context, o Options, peers []string) error {
	deadline := time.Now().Add(o.StepTimeout)
	nodes := &Hosts{clients: map[string]*sshnode.Client{r.name: r.client}}
	for {
		res := verify.Neighbours(ctx, o.Plan, nodes, r.name, peers)
		var failed []string
		for _, x := range res {
			if !x.Pass {
				failed = append(failed, x.Name+": "+x.Evidence)
			}
		}
		r.rep.Checks = len(res)
		if len(failed) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d checks still fail after %s: %s", len(failed), len(res), o.StepTimeout, strings.Join(failed, "; "))
		}
		time.Sleep(time.Second)
	}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none yet"
	}
	return strings.Join(xs, ", ")
}

// lastLines is what an apply run's failure says: its last lines, without
// the progress ("installed PATH").
func lastLines(out string, err error) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "backbone apply: installed ") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	msg := strings.Join(lines, "\n")
	var ee *node.ExitError
	if err != nil && !errors.As(err, &ee) {
		msg += "\n" + err.Error()
	}
	return strings.TrimSpace(msg)
}

// Confirm disarms the automatic rollback on every router.
func Confirm(ctx context.Context, p *plan.Plan, targets []sshnode.Target) (*Report, error) {
	return each(ctx, p, targets, func(ctx context.Context, r *router) error {
		armed, err := r.confirm(ctx)
		r.rep.Status = map[bool]string{true: "confirmed (rollback disarmed)", false: "nothing armed"}[armed]
		return err
	})
}

// Rollback undoes the last deploy: every router whose running generation
// that deploy made goes back to the generation before it; the others are
// left alone.
func Rollback(ctx context.Context, p *plan.Plan, targets []sshnode.Target, progress func(string, ...any)) (*Report, error) {
	if progress == nil {
		progress = func(string, ...any) {}
	}
	rs, err := Connect(ctx, p, targets)
	if err != nil {
		return nil, err
	}
	defer closeAll(rs)
	type origin struct {
		parent int
		run    string
	}
	from := map[string]origin{}
	last := ""
	for _, r := range rs {
		if r.current == 0 {
			continue
		}
		parent, run, err := r.origin(ctx, r.current)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		from[r.name] = origin{parent, run}
		last = max(last, run)
	}
	rep := &Report{Intent: p.Name}
	var errs []error
	for _, r := range rs {
		r.rep = &RouterReport{Name: r.name, Previous: r.current, Current: r.current, Status: "not in the last deploy"}
		o, ok := from[r.name]
		if ok && o.run == last {
			_, _ = r.confirm(ctx)
			progress("%s: rolling back from generation %d to %d", r.name, r.current, o.parent)
			out, err := r.switchTo(context.WithoutCancel(ctx), "rollback", o.parent, r.current)
			if err != nil {
				r.rep.Status, r.rep.Error = StatusFailed, fmt.Sprintf("rollback to generation %d: %s", o.parent, lastLines(out, err))
				errs = append(errs, fmt.Errorf("%s: %s", r.name, r.rep.Error))
			} else {
				r.rep.Status, r.rep.Current = StatusRolledBack, o.parent
			}
		}
		rep.Routers = append(rep.Routers, *r.rep)
	}
	return rep, errors.Join(errs...)
}

// each runs fn on every router, one after the other, and reports all.
func each(ctx context.Context, p *plan.Plan, targets []sshnode.Target, fn func(context.Context, *router) error) (*Report, error) {
	rs, err := Connect(ctx, p, targets)
	if err != nil {
		return nil, err
	}
	defer closeAll(rs)
	rep := &Report{Intent: p.Name}
	var errs []error
	for _, r := range rs {
		r.rep = &RouterReport{Name: r.name, Previous: r.current, Current: r.current}
		if err := fn(ctx, r); err != nil {
			r.rep.Status, r.rep.Error = StatusFailed, err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", r.name, err))
		}
		rep.Routers = append(rep.Routers, *r.rep)
	}
	return rep, errors.Join(errs...)
}
