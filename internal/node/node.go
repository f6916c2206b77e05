// Package node is the one way backbone runs a command on a router, a CE
// or the lab's underlay: a network namespace on this machine, a node inside
// a UML or qemu guest, or (later) a real host over SSH. verify, chaos and
// the lab reach nodes only through a Runner.
package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Cmd is one command to run on a node.
type Cmd struct {
	Argv []string
	// Env entries (K=V) are added to the node's environment.
	Env []string
	// Stdin is fed to the command (nil: no input).
	Stdin io.Reader
	// Stdout and Stderr receive the output as it comes (nil discards).
	Stdout, Stderr io.Writer
}

// Runner runs commands on one node. Run returns once the command exited;
// cancelling ctx kills it. A command that ran and exited non-zero returns
// an *ExitError; any other error means it could not be run.
type Runner interface {
	Run(ctx context.Context, c Cmd) error
}

// Nodes hands out the Runner of a node by name.
type Nodes interface {
	Node(name string) (Runner, error)
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Node string
	Argv []string
	// Code is the exit status (128+N when killed by signal N).
	Code int
	// Stderr is the end of the command's standard error, when captured.
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s on %s: exit status %d", Quote(e.Argv), e.Node, e.Code)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// stderrLimit bounds the standard error kept in an ExitError.
const stderrLimit = 600

// Output runs argv and returns its standard output. On failure the error
// carries the end of standard error.
func Output(ctx context.Context, r Runner, argv ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	err := r.Run(ctx, Cmd{Argv: argv, Stdout: &out, Stderr: &errb})
	return out.Bytes(), withStderr(err, errb.String())
}

// CombinedOutput runs argv and returns standard output and error together.
func CombinedOutput(ctx context.Context, r Runner, argv ...string) ([]byte, error) {
	var out bytes.Buffer
	err := r.Run(ctx, Cmd{Argv: argv, Stdout: &out, Stderr: &out})
	return out.Bytes(), err
}

func withStderr(err error, stderr string) error {
	var ee *ExitError
	if errors.As(err, &ee) && ee.Stderr == "" {
		s := strings.TrimSpace(stderr)
		if len(s) > stderrLimit {
			s = "..." + s[len(s)-stderrLimit:]
		}
		ee.Stderr = s
	}
	return err
}

// Quote renders argv as a shell would need it typed.
func Quote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = QuoteArg(a)
	}
	return strings.Join(q, " ")
}

// QuoteArg quotes one argument for a POSIX shell when it needs it.
func QuoteArg(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RunnerFunc adapts a function to a Runner (fakes in tests).
type RunnerFunc func(ctx context.Context, c Cmd) error

// Run implements Runner.
func (f RunnerFunc) Run(ctx context.Context, c Cmd) error { return f(ctx, c) }

// MergeEnv returns base with extra added, later keys replacing earlier
// ones in place: how a Cmd's Env applies to a node's environment.
func MergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	idx := map[string]int{}
	for _, kv := range append(append([]string(nil), base...), extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}
