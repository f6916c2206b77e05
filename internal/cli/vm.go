package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/lab/qemu"
)

// newLabVMAgentCmd is the guest side of VM mode: the VM's init and agent.
// Flags are parsed by qemu.RunGuest so the test binary shares the parser.
func newLabVMAgentCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:                "lab-vm-agent",
		Short:              "Guest init and agent of the lab VM (runs inside the VM only)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return qemu.RunGuest(args, e.stdout, e.stderr)
		},
	}
}

func newVMCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "vm",
		Short: "Check the qemu VM of the kvm and tcg backends (boot it, prove it has MPLS, report timings)",
	}
	c.AddCommand(newVMCheckCmd(e), newVMStopCmd(e))
	return c
}

func newVMStopCmd(e *env) *cobra.Command {
	var stateDir string
	c := &cobra.Command{
		Use:   "stop",
		Short: "Power off the VM of a state directory and remove its runtime files",
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := qemu.Attach(stateDir)
			if err != nil {
				return err
			}
			return m.Stop(cmd.Context())
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", "", "VM state directory")
	c.MarkFlagRequired("state-dir")
	return c
}

type vmCheckStep struct {
	Name     string        `json:"name"`
	Argv     []string      `json:"argv"`
	ExitCode int           `json:"exit_code"`
	Stdout   string        `json:"stdout"`
	Stderr   string        `json:"stderr,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

type vmCheckResult struct {
	OK           bool              `json:"ok"`
	Accel        string            `json:"accel"`
	Kernel       string            `json:"kernel"`
	BootDuration time.Duration     `json:"boot_ns"`
	Timings      []qemu.Timing     `json:"timings"`
	Steps        []vmCheckStep     `json:"steps"`
	Shutdown     time.Duration     `json:"shutdown_ns"`
	GuestInit    *agent.InitReport `json:"guest_init,omitempty"`
}

func newVMCheckCmd(e *env) *cobra.Command {
	var (
		asJSON bool
		cfg    qemu.Config
		keep   bool
	)
	c := &cobra.Command{
		Use:   "check",
		Short: "Boot a VM, check that it has MPLS, print timings, shut it down",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if !asJSON {
				cfg.Progress = func(s string) { fmt.Fprintln(e.stderr, "vm:", s) }
			}
			if cfg.StateDir == "" {
				cfg.StateDir = fmt.Sprintf("/run/backbone/vm-check-%d", os.Getpid())
				if !keep {
					defer os.RemoveAll(cfg.StateDir)
				}
			}
			m, err := qemu.Start(ctx, cfg)
			if err != nil {
				return err
			}
			res := vmCheckResult{Accel: m.Accel, Kernel: m.Kernel, BootDuration: m.BootDuration, Timings: m.Timings, GuestInit: m.GuestInit, OK: true}
			steps := []struct {
				name string
				argv []string
			}{
				{"exec round trip (true)", []string{"true"}},
				{"uname -r", []string{"uname", "-r"}},
				{"mpls", []string{"sh", "-c", "modprobe mpls_router && cat /proc/sys/net/mpls/platform_labels"}},
			}
			for _, s := range steps {
				var out, errb bytes.Buffer
				t := time.Now()
				code, err := m.Exec(ctx, agent.ExecRequest{Argv: s.argv}, &out, &errb)
				st := vmCheckStep{Name: s.name, Argv: s.argv, ExitCode: code, Stdout: strings.TrimSpace(out.String()),
					Stderr: strings.TrimSpace(errb.String()), Duration: time.Since(t)}
				if err != nil {
					st.Error = err.Error()
				}
				if err != nil || code != 0 {
					res.OK = false
				}
				res.Steps = append(res.Steps, st)
			}
			if !keep {
				t := time.Now()
				if err := m.Stop(context.Background()); err != nil {
					return err
				}
				res.Shutdown = time.Since(t)
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				printVMCheck(e, res, keep, cfg.StateDir)
			}
			if !res.OK {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&cfg.Accel, "accel", "auto", "accelerator: auto (KVM, else TCG), kvm or tcg")
	f.IntVar(&cfg.MemoryMiB, "memory", 2048, "guest memory in MiB")
	f.IntVar(&cfg.CPUs, "cpus", 2, "guest CPUs")
	f.StringVar(&cfg.CacheDir, "cache-dir", qemu.DefaultCacheDir, "kernel cache directory")
	f.StringVar(&cfg.StateDir, "state-dir", "", "VM state directory (default: a fresh one under /run/backbone)")
	f.DurationVar(&cfg.BootTimeout, "timeout", 120*time.Second, "how long to wait for the guest agent")
	f.BoolVar(&keep, "keep", false, "leave the VM running (stop it with \"backbone vm stop --state-dir DIR\")")
	return c
}

func printVMCheck(e *env, r vmCheckResult, kept bool, stateDir string) {
	w := e.stdout
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "kernel   %s (accel %s)\n", r.Kernel, r.Accel)
	fmt.Fprintf(w, "VM boot  %s (qemu start -> agent answering)\n", ms(r.BootDuration))
	for _, t := range r.Timings {
		fmt.Fprintf(w, "  %-24s %s\n", t.Name, ms(t.Duration))
	}
	if gi := r.GuestInit; gi != nil {
		for name, msg := range gi.ModuleErrors {
			fmt.Fprintf(w, "  module %s: %s\n", name, msg)
		}
	}
	for _, s := range r.Steps {
		status := "ok"
		if s.Error != "" {
			status = "ERROR " + s.Error
		} else if s.ExitCode != 0 {
			status = fmt.Sprintf("exit %d: %s", s.ExitCode, s.Stderr)
		}
		fmt.Fprintf(w, "exec %-24s %-10s %s  -> %s\n", s.Name, ms(s.Duration), status, s.Stdout)
	}
	if kept {
		fmt.Fprintf(w, "VM left running, state dir %s\n", stateDir)
	} else {
		fmt.Fprintf(w, "shutdown %s\n", ms(r.Shutdown))
	}
	if r.OK {
		fmt.Fprintln(w, "OK: the VM kernel has MPLS")
	} else {
		fmt.Fprintln(w, "FAILED")
	}
}
