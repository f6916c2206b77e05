package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Runner carries out steps. The real one runs commands inside lab nodes;
// tests record them.
type Runner interface {
	// Run runs argv inside node and returns its combined output.
	Run(ctx context.Context, node string, argv []string) ([]byte, error)
	// WaitExit waits until the processes are gone (or zombies).
	WaitExit(ctx context.Context, pids []int) error
}

// NodeRunner runs commands in the nodes of a lab through the hidden
// `backbone lab-node LAB NODE -- CMD` helper (network and mount namespace
// of the node, STRONGSWAN_CONF set), like lab up starts daemons.
type NodeRunner struct {
	Lab  string
	Self string // the backbone binary (os.Executable)
	// ExitTimeout bounds WaitExit (default 15 s).
	ExitTimeout time.Duration
}

// NewNodeRunner returns a NodeRunner for lab name using this binary.
func NewNodeRunner(name string) (*NodeRunner, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the backbone binary to run commands in nodes: %w", err)
	}
	return &NodeRunner{Lab: name, Self: self}, nil
}

// Run implements Runner.
func (r *NodeRunner) Run(ctx context.Context, node string, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.Self, append([]string{"lab-node", r.Lab, node, "--"}, argv...)...)
	return cmd.CombinedOutput()
}

// WaitExit implements Runner: the lab's processes live in this kernel's
// pid namespace, so /proc tells when they are gone.
func (r *NodeRunner) WaitExit(ctx context.Context, pids []int) error {
	timeout := r.ExitTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		var alive []string
		for _, p := range pids {
			if processAlive(p) {
				alive = append(alive, strconv.Itoa(p))
			}
		}
		if len(alive) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %s still running %s after the signal: kill it by hand (kill -KILL %s) and check the node", strings.Join(alive, " "), timeout, strings.Join(alive, " "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3 follows the command name in parentheses.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// Execute runs steps in order and stops at the first failure.
func Execute(ctx context.Context, r Runner, steps []Step) error {
	for _, s := range steps {
		if len(s.WaitExit) > 0 {
			if err := r.WaitExit(ctx, s.WaitExit); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			continue
		}
		out, err := r.Run(ctx, s.Node, s.Argv)
		if err != nil {
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
