// Package cli wires the backbone pipeline (intent, plan, render, lab, verify,
// chaos) to cobra commands. It holds no logic of its own beyond flag parsing
// and output formatting.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// ExitError carries a specific exit code (e.g. 1 for failed validation)
// without an extra message when the command already reported the problem.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// env is what every command needs from the outside world.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Execute runs the CLI with args and returns the process exit code. The
// first SIGINT or SIGTERM cancels the command's context: commands that
// change a system put it back (chaos restores its fault, lab up removes
// what it built) and report what they did; a second one exits at once.
func Execute(args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "backbone: %s: stopping cleanly (again to stop at once)\n", s)
			cancel()
		case <-ctx.Done():
			return
		}
		if s, ok := <-sigs; ok {
			fmt.Fprintf(stderr, "backbone: %s: stopping at once\n", s)
			os.Exit(130)
		}
	}()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0, nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err == nil {
			return ee.Code, nil
		}
		return ee.Code, ee.Err
	}
	return 1, err
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "backbone",
		Short:         "Build, run and verify an encrypted dual-stack IP/MPLS backbone of Linux routers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, add := range commandBuilders {
		root.AddCommand(add(e))
	}
	root.AddCommand(newLabHiddenCmds(e)...)
	root.AddCommand(newSSHProxyCmd(e))
	return root
}

// commandBuilders is appended to by each command file's init-free
// registration below; kept as a static list to avoid global mutable state.
var commandBuilders = []func(*env) *cobra.Command{
	newIntentCmd,
	newValidateCmd,
	newPlanCmd,
	newRenderCmd,
	newLabCmd,
	newVerifyCmd,
	newVMCmd,
	newLabVMAgentCmd,
	newChaosCmd,
	newDeployCmd,
	newNetBoxCmd,
	newAnsibleCmd,
}
