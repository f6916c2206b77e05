package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/node"
)

// Runner carries out steps. The real one acts on a lab's nodes; tests
// record them.
type Runner interface {
	// Run runs argv inside node and returns its combined output.
	Run(ctx context.Context, node string, argv []string) ([]byte, error)
	// WaitExit waits until the node's processes are gone (or zombies).
	WaitExit(ctx context.Context, node string, pids []int) error
	// NodeAction crashes or revives a node that has its own kernel.
	NodeAction(ctx context.Context, node, action string) error
}

// SessionRunner carries out steps on the nodes of a running lab.
type SessionRunner struct {
	S *lab.Session
	// ExitTimeout bounds WaitExit (default 15 s).
	ExitTimeout time.Duration
}

// Run implements Runner.
func (r *SessionRunner) Run(ctx context.Context, nodeName string, argv []string) ([]byte, error) {
	n, err := r.S.Node(nodeName)
	if err != nil {
		return nil, err
	}
	return node.CombinedOutput(ctx, n, argv...)
}

// WaitExit implements Runner: it asks the node until none of the pids is
// a live process there.
func (r *SessionRunner) WaitExit(ctx context.Context, nodeName string, pids []int) error {
	timeout := r.ExitTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	var ps []string
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	script := "for p in " + strings.Join(ps, " ") + `; do if [ -r /proc/$p/stat ] && [ "$(sed 's/.*) //' /proc/$p/stat | cut -c1)" != Z ]; then echo $p; fi; done`
	deadline := time.Now().Add(timeout)
	for {
		out, err := r.Run(ctx, nodeName, []string{"sh", "-c", script})
		if err != nil {
			return err
		}
		alive := strings.Fields(string(out))
		if len(alive) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %s still running %s after the signal: kill it by hand (kill -KILL %s) and check the node", strings.Join(alive, " "), timeout, strings.Join(alive, " "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NodeAction implements Runner.
func (r *SessionRunner) NodeAction(ctx context.Context, nodeName, action string) error {
	switch action {
	case ActionCrash:
		return r.S.CrashNode(nodeName)
	case ActionRevive:
		return r.S.ReviveNode(ctx, nodeName)
	}
	return fmt.Errorf("unknown node action %q", action)
}

// StepTimeout bounds one command of a scenario: a step that hangs (a start
// script waiting for a daemon that never answers) fails instead of
// holding the run forever.
const StepTimeout = 2 * time.Minute

// Execute runs steps in order and stops at the first failure.
func Execute(ctx context.Context, r Runner, steps []Step) error {
	for _, s := range steps {
		if s.NodeAction != "" {
			if err := r.NodeAction(ctx, s.Node, s.NodeAction); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			continue
		}
		if len(s.WaitExit) > 0 {
			if err := r.WaitExit(ctx, s.Node, s.WaitExit); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, StepTimeout)
		out, err := r.Run(sctx, s.Node, s.Argv)
		cancel()
		if err != nil {
			if sctx.Err() == context.DeadlineExceeded {
				err = fmt.Errorf("still running after %s, killed: %w", StepTimeout, err)
			}
			return fmt.Errorf("%s: %v\n%s", s, err, strings.TrimSpace(string(out)))
		}
		// vtysh exits 0 even when a daemon refuses a line: a "%" line is
		// its error report.
		if len(s.Argv) > 1 && s.Argv[0] == "vtysh" && s.Argv[1] == "-c" && strings.Contains(string(out), "% ") {
			return fmt.Errorf("%s: vtysh refused a command:\n%s", s, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
