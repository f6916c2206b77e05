package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/lab/qemu"
	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// inVMEnv marks a backbone process that runs inside the lab VM: lab
// commands then act natively instead of forwarding to the VM.
const inVMEnv = "BACKBONE_IN_VM"

func insideVM() bool { return os.Getenv(inVMEnv) == "1" }

// labFlags are shared by the lab commands.
type labFlags struct {
	name string
}

func (f *labFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "default", "lab name (the intent's name for lab up)")
}

func newLabCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the backbone on a real Linux kernel: namespaces, FRR, strongSwan (natively or in a VM)",
	}
	cmd.AddCommand(newLabUpCmd(e), newLabDownCmd(e), newLabStatusCmd(e), newLabExecCmd(e))
	return cmd
}

// newLabNodeCmd is the hidden helper that enters a node and execs a
// command there (used to start daemons).
func newLabNodeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "lab-node LAB NODE -- CMD...",
		Hidden: true,
		Args:   cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.ExecInNode(lab.PathsFor(args[0]), args[1], args[2:])
		},
	}
}

func newLabUpCmd(e *env) *cobra.Command {
	var path, secretsPath string
	var forceVM, noVM, timings, asJSON, fromConfig bool
	var timeout time.Duration
	var vmMem int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the backbone lab and wait until customer sites reach each other",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if forceVM && noVM {
				return &ExitError{Code: 2, Err: errors.New("lab up: --vm and --no-vm exclude each other")}
			}
			ctx := cmd.Context()
			progress := progressTo(e.stderr)
			if fromConfig { // inside the VM: the host rendered the config
				name, _ := cmd.Flags().GetString("name")
				return labUpNative(ctx, e, lab.PathsFor(name), progress, timeout, timings, asJSON, lab.ModeVM)
			}
			_, p, err := loadPlan(path, e.stderr)
			if err != nil {
				return err
			}
			paths := lab.PathsFor(p.Name)
			if _, err := os.Stat(paths.StateFile()); err == nil {
				return fmt.Errorf("lab %q is already up (%s): run `backbone lab down` first", p.Name, paths.StateFile())
			}
			if qemu.Running(paths.StateDir) {
				return fmt.Errorf("lab %q has a VM running: run `backbone lab down` first", p.Name)
			}
			// Decide the mode before anything is written: inside the VM the
			// guest kernel was prepared for the lab; elsewhere the kernel is
			// checked unless --vm forces VM mode.
			var missing []lab.Feature
			if !insideVM() && !forceVM {
				missing = lab.Missing(lab.Required(lab.CheckKernel(), planModules(p)))
			}
			if noVM && len(missing) > 0 {
				return fmt.Errorf("lab up --no-vm: the kernel lacks %s; load the modules (modprobe %s) or drop --no-vm to run in a VM",
					lab.FormatMissing(missing), moduleList(missing))
			}
			files, store, err := renderPlan(p, secretsPath, paths.NodesDir())
			if err != nil {
				return err
			}
			if err := os.RemoveAll(paths.ConfigDir()); err != nil {
				return err
			}
			if err := render.Write(paths.ConfigDir(), files); err != nil {
				return err
			}
			if err := store.Save(); err != nil {
				return err
			}
			if insideVM() || (!forceVM && len(missing) == 0) {
				return labUpNative(ctx, e, paths, progress, timeout, timings, asJSON, lab.ModeNative)
			}
			if len(missing) > 0 {
				progress("kernel: this kernel lacks %s; running the lab in a VM", lab.FormatMissing(missing))
			}
			return labUpVM(ctx, e, paths, progress, timeout, timings, asJSON, vmMem)
		},
	}
	intentFlag(cmd, &path)
	cmd.Flags().String("name", "default", "lab name (set from the intent; used with --from-config)")
	_ = cmd.Flags().MarkHidden("name")
	cmd.Flags().StringVar(&secretsPath, "secrets", "", "secrets store (default ~/.local/state/backbone/<name>.secrets.json)")
	cmd.Flags().BoolVar(&forceVM, "vm", false, "run the lab inside a qemu VM even if this kernel could run it")
	cmd.Flags().BoolVar(&noVM, "no-vm", false, "run natively; fail if this kernel lacks a feature")
	cmd.Flags().BoolVar(&timings, "timings", false, "print the time from start to the first CE-to-CE packet, split by phase")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result (timings) as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 240*time.Second, "how long to wait for convergence")
	cmd.Flags().IntVar(&vmMem, "vm-memory", 2048, "VM memory in MiB")
	cmd.Flags().BoolVar(&fromConfig, "from-config", false, "use the config already rendered in the lab's state directory (VM guest side)")
	_ = cmd.Flags().MarkHidden("from-config")
	return cmd
}

// planModules is the union of kernel modules the plan's routers need.
func planModules(p *plan.Plan) []string {
	c := &lab.Config{Plan: p, Hosts: map[string]*linux.Host{}}
	for _, r := range p.Routers {
		c.Hosts[r.Name] = linux.Render(p, r)
	}
	return c.Modules()
}

func moduleList(fs []lab.Feature) string {
	var ms []string
	for _, f := range fs {
		ms = append(ms, f.Module)
	}
	return strings.Join(ms, " ")
}

func progressTo(w io.Writer) lab.Progress {
	start := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(w, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
}

func labUpNative(ctx context.Context, e *env, paths lab.Paths, progress lab.Progress, timeout time.Duration, timings, asJSON bool, mode string) error {
	cfg, err := lab.LoadConfig(paths.ConfigDir())
	if err != nil {
		return err
	}
	st := &lab.State{Name: paths.Name, Mode: mode, Source: "config", Created: time.Now().UTC(), Nodes: cfg.Nodes()}
	if err := lab.WriteState(paths, st); err != nil {
		return err
	}
	t, err := lab.Up(ctx, paths, cfg, progress, timeout)
	if err != nil {
		if mode == lab.ModeNative {
			return fmt.Errorf("lab up: %w\nthe lab is left as it is for inspection (`backbone lab status`, `backbone lab exec`); remove it with `backbone lab down`", err)
		}
		return fmt.Errorf("lab up (in VM): %w", err)
	}
	st.Ready, st.Timings = true, t
	if err := lab.WriteState(paths, st); err != nil {
		return err
	}
	return reportUp(e, st, timings, asJSON)
}

func reportUp(e *env, st *lab.State, timings, asJSON bool) error {
	if asJSON {
		return writeJSON(e.stdout, st)
	}
	fmt.Fprintf(e.stdout, "lab %q is up (%s mode): %d nodes; try `backbone lab exec ce1 -- ping -c3 <address>` or `backbone verify`\n", st.Name, st.Mode, len(st.Nodes))
	if timings && st.Timings != nil {
		printTimings(e.stdout, st.Timings)
	}
	return nil
}

func printTimings(w io.Writer, t *lab.Timings) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tTIME")
	if t.VMBoot > 0 {
		fmt.Fprintf(tw, "VM boot\t%s\n", t.VMBoot.Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "topology build\t%s\n", t.Topology.Round(time.Millisecond))
	fmt.Fprintf(tw, "daemon start\t%s\n", t.Daemons.Round(time.Millisecond))
	fmt.Fprintf(tw, "convergence\t%s\n", t.Convergence.Round(time.Millisecond))
	fmt.Fprintf(tw, "first CE-to-CE IPv4 packet\t%s after start\n", t.FirstIPv4.Round(time.Millisecond))
	fmt.Fprintf(tw, "first CE-to-CE IPv6 packet\t%s after start\n", t.FirstIPv6.Round(time.Millisecond))
	if t.VMBoot > 0 {
		fmt.Fprintf(tw, "total including VM boot\t%s\n", (t.VMBoot + t.Total).Round(time.Millisecond))
	}
	tw.Flush()
}

func labUpVM(ctx context.Context, e *env, paths lab.Paths, progress lab.Progress, timeout time.Duration, timings, asJSON bool, mem int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	progress("vm: booting a Debian kernel under qemu (state %s)", paths.StateDir)
	m, err := qemu.Start(ctx, qemu.Config{
		StateDir: paths.StateDir, BinaryPath: self, MemoryMiB: mem,
		Progress: func(s string) { progress("vm: %s", s) },
	})
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	progress("vm: up in %s (%s)", m.BootDuration.Round(time.Millisecond), m.Accel)
	args := []string{m.GuestBinary(), "lab", "up", "--from-config", "--name", paths.Name, "--timeout", timeout.String()}
	code, err := m.Exec(ctx, agent.ExecRequest{Argv: args, Env: []string{inVMEnv + "=1"}}, io.Discard, e.stderr)
	if err != nil {
		return fmt.Errorf("lab up: VM: %w", err)
	}
	if code != 0 {
		return &ExitError{Code: code, Err: fmt.Errorf("lab up failed inside the VM; the VM keeps running for inspection (`backbone lab exec`), remove it with `backbone lab down`")}
	}
	st, err := lab.ReadState(paths)
	if err != nil {
		return err
	}
	if st.Timings != nil {
		st.Timings.VMBoot = m.BootDuration
	}
	if err := lab.WriteState(paths, st); err != nil {
		return err
	}
	return reportUp(e, st, timings, asJSON)
}

// forward runs this same backbone command inside the lab's VM, streaming
// its output, and returns its exit code.
func forward(ctx context.Context, e *env, paths lab.Paths) error {
	m, err := qemu.Attach(paths.StateDir)
	if err != nil {
		return fmt.Errorf("lab %q runs in a VM that does not answer: %w; run `backbone lab down`", paths.Name, err)
	}
	if self, err := os.Executable(); err == nil {
		if err := m.SyncBinary(ctx, self); err != nil {
			return err
		}
	}
	req := agent.ExecRequest{Argv: append([]string{m.GuestBinary()}, e.args...), Env: []string{inVMEnv + "=1"}}
	code, err := m.Exec(ctx, req, e.stdout, e.stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// labMode returns the mode of a running lab ("" if none is recorded).
func labMode(paths lab.Paths) string {
	if insideVM() {
		return lab.ModeNative
	}
	st, err := lab.ReadState(paths)
	if err != nil {
		if qemu.Running(paths.StateDir) {
			return lab.ModeVM
		}
		return ""
	}
	return st.Mode
}

func newLabExecCmd(e *env) *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "exec NODE -- CMD...",
		Short: "Run a command in a node (router, CE or underlay); e.g. lab exec pe101 -- vtysh -c 'show mpls table'",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths := lab.PathsFor(f.name)
			if labMode(paths) == lab.ModeVM {
				return forward(cmd.Context(), e, paths)
			}
			return lab.ExecInNode(paths, args[0], args[1:])
		},
	}
	f.add(cmd)
	return cmd
}

func newLabStatusCmd(e *env) *cobra.Command {
	var f labFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes and daemons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths := lab.PathsFor(f.name)
			mode := labMode(paths)
			if mode == lab.ModeVM {
				return forward(cmd.Context(), e, paths)
			}
			st, err := lab.ReadState(paths)
			if err != nil {
				return err
			}
			cfg, err := lab.LoadConfig(paths.ConfigDir())
			if err != nil {
				return err
			}
			nodes := lab.Status(paths, cfg)
			down := 0
			for _, n := range nodes {
				if !n.Present {
					down++
				}
				for _, d := range n.Daemons {
					if !d.Running {
						down++
					}
				}
			}
			if asJSON {
				if err := writeJSON(e.stdout, map[string]any{"lab": st, "nodes": nodes, "healthy": down == 0}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "lab %q (%s mode, ready=%v)\n", st.Name, st.Mode, st.Ready)
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tNETNS\tDAEMONS")
				for _, n := range nodes {
					var ds []string
					for _, d := range n.Daemons {
						s := d.Name
						if !d.Running {
							s += "(DOWN)"
						}
						ds = append(ds, s)
					}
					ns := n.Netns
					if !n.Present {
						ns += " (MISSING)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, ns, strings.Join(ds, " "))
				}
				tw.Flush()
			}
			if down > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("lab %q: %d node(s) or daemon(s) down", st.Name, down)}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print status as JSON")
	return cmd
}

func newLabDownCmd(e *env) *cobra.Command {
	var f labFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, process and file of the lab (also after a crash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			paths := lab.PathsFor(f.name)
			progress := progressTo(e.stderr)
			if !insideVM() && qemu.Running(paths.StateDir) {
				progress("down: stopping the lab VM")
				if m, err := qemu.Attach(paths.StateDir); err == nil {
					if err := m.Stop(ctx); err != nil {
						return err
					}
				}
			}
			rep, err := lab.Down(paths, progress)
			if err != nil {
				return err
			}
			if !insideVM() {
				if _, serr := os.Stat(paths.StateDir); serr == nil {
					rep.Removed = append(rep.Removed, paths.StateDir)
				}
				if err := os.RemoveAll(paths.StateDir); err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSON(e.stdout, rep)
			}
			fmt.Fprintf(e.stdout, "lab %q is down: %d namespaces, %d processes, %d directories removed\n", f.name, len(rep.Namespaces), rep.Processes, len(rep.Removed))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was removed as JSON")
	return cmd
}
