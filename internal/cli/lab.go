package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/lab/features"
	"github.com/backbone-net/backbone/internal/lab/guest"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/probe"
	"github.com/backbone-net/backbone/internal/render"
)

// labFlags find the lab a command works on: --name, or the lab an intent
// file describes (-f), or the only lab running.
type labFlags struct {
	name string
	file string
}

func (f *labFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "lab name (default: the intent's name with -f, else the only lab running)")
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "intent the lab was built from")
}

// open returns the session of the lab the flags mean.
func (f *labFlags) open() (*lab.Session, error) {
	name, err := lab.Resolve(f.name, f.file)
	if err != nil {
		return nil, err
	}
	return lab.Open(name)
}

func newLabCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the backbone on a real Linux kernel: natively, each router in a UML kernel, or in a qemu VM",
	}
	cmd.AddCommand(newLabUpCmd(e), newLabDownCmd(e), newLabStatusCmd(e), newLabExecCmd(e), newLabSetupCmd(e))
	return cmd
}

func newLabUpCmd(e *env) *cobra.Command {
	var path, secretsPath, backend string
	var forceVM, noVM, timings, asJSON, fromConfig, bare bool
	var timeout time.Duration
	var vmMem int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the backbone lab and wait until customer sites reach each other",
		Long: `lab up renders the intent into the lab's state directory and builds it on a
backend that has what the routers need (MPLS, VRF, GRE, ESP):
  native  network namespaces of this machine's kernel
  kvm     the whole lab in a qemu VM with hardware virtualization
  uml     each router in its own User-mode Linux kernel, CEs and the
          underlay in namespaces here (kernels without MPLS: WSL2, CI)
  tcg     the whole lab in a qemu VM under software emulation
By default the first that works, in that order; the choice is remembered
per machine (scripts/setup, or ` + "`backbone lab setup`" + `, decides it once).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			start := time.Now()
			progress := progressTo(e.stderr)
			if fromConfig { // inside the qemu VM: the host rendered the config
				name, _ := cmd.Flags().GetString("name")
				t, err := lab.UpInGuest(ctx, name, lab.UpOptions{Timeout: timeout, Progress: progress, Start: start})
				if err != nil {
					return err
				}
				return writeJSON(e.stdout, t)
			}
			if backend != "" && !slices.Contains(lab.Backends, backend) {
				return &ExitError{Code: 2, Err: fmt.Errorf("lab up: unknown backend %q: use one of %s", backend, strings.Join(lab.Backends, ", "))}
			}
			switch {
			case forceVM && noVM:
				return &ExitError{Code: 2, Err: errors.New("lab up: --vm and --no-vm exclude each other")}
			case (forceVM || noVM) && backend != "":
				return &ExitError{Code: 2, Err: errors.New("lab up: --vm and --no-vm are old names of --backend: give only --backend")}
			case forceVM:
				backend = lab.BackendTCG
			case noVM:
				backend = lab.BackendNative
			}
			_, p, err := loadPlan(path, e.stderr)
			if err != nil {
				return err
			}
			paths := layout.ForLab(p.Name)
			if _, err := os.Stat(paths.StateDir); err == nil {
				return fmt.Errorf("lab %q is already up (%s): run `backbone lab down --name %s` first", p.Name, paths.StateDir, p.Name)
			}
			cfg := lab.ConfigOf(p)
			if bare {
				// A bare lab needs a kernel per router.
				if backend != "" && backend != lab.BackendUML {
					return &ExitError{Code: 2, Err: fmt.Errorf("lab up --bare needs a kernel per router: backend uml, not %s", backend)}
				}
				backend = lab.BackendUML
			}
			// Decide the backend before anything is written.
			backend, err = lab.Choose(ctx, cfg.Modules(), backend, progress)
			if err != nil {
				return err
			}
			progress("backend: %s", backend)
			files, store, err := renderPlan(p, secretsPath, paths.NodesDir())
			if err != nil {
				return err
			}
			// Secrets first: configs on disk never use a key that is not stored.
			if err := store.Save(); err != nil {
				return err
			}
			if err := render.Write(paths.ConfigDir(), files); err != nil {
				return err
			}
			source := ""
			if path != "" && path != "-" {
				source = path
			}
			s, err := lab.Up(ctx, paths, lab.UpOptions{Backend: backend, Source: source, Timeout: timeout, VMMemoryMiB: vmMem, Start: start, Progress: progress, Bare: bare})
			if err != nil && ctx.Err() != nil {
				// Interrupted: take back what was built.
				rep, derr := lab.Down(p.Name, progress)
				if derr != nil {
					return fmt.Errorf("lab up interrupted; removing the partial lab failed: %w (run `backbone lab down --name %s`)", derr, p.Name)
				}
				return &ExitError{Code: 130, Err: fmt.Errorf("lab up interrupted: the partial lab is removed (%d namespaces, %d processes)", len(rep.Namespaces), rep.Processes)}
			}
			if err != nil {
				return fmt.Errorf("lab up: %w\nthe lab is left as it is for inspection (`backbone lab status`, `backbone lab exec`); remove it with `backbone lab down --name %s`", err, p.Name)
			}
			return reportUp(e, s, timings, asJSON)
		},
	}
	intentFlag(cmd, &path)
	cmd.Flags().String("name", "", "lab name (set from the intent; used with --from-config)")
	_ = cmd.Flags().MarkHidden("name")
	cmd.Flags().StringVar(&backend, "backend", "", "native, kvm, uml or tcg (default: the first that works, remembered per machine)")
	cmd.Flags().StringVar(&secretsPath, "secrets", "", "secrets store (default ~/.local/state/backbone/<name>.secrets.json)")
	cmd.Flags().BoolVar(&forceVM, "vm", false, "same as --backend tcg")
	cmd.Flags().BoolVar(&noVM, "no-vm", false, "same as --backend native")
	_ = cmd.Flags().MarkDeprecated("vm", "use --backend tcg (or kvm)")
	_ = cmd.Flags().MarkDeprecated("no-vm", "use --backend native")
	cmd.Flags().BoolVar(&bare, "bare", false, "boot the routers as fresh hosts for \"backbone deploy\" (systemd, sshd, their network stack; nothing of the backbone configured); uml backend")
	cmd.Flags().BoolVar(&timings, "timings", false, "print the time from start to the first CE-to-CE packet, split by phase")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the lab's state (backend, nodes, timings) as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 240*time.Second, "how long to wait for convergence")
	cmd.Flags().IntVar(&vmMem, "vm-memory", 2048, "qemu VM memory in MiB (kvm and tcg backends)")
	cmd.Flags().BoolVar(&fromConfig, "from-config", false, "build from the config already rendered in the lab's state directory (qemu guest side)")
	_ = cmd.Flags().MarkHidden("from-config")
	return cmd
}

func progressTo(w io.Writer) lab.Progress {
	start := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(w, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
}

func reportUp(e *env, s *lab.Session, timings, asJSON bool) error {
	st := s.State
	if asJSON {
		return writeJSON(e.stdout, st)
	}
	if st.Bare {
		fmt.Fprintf(e.stdout, "lab %q is up (backend %s, bare): its routers are fresh hosts; configure them with `backbone deploy%s`\n", st.Name, st.Backend, fileFlag(st.Source))
		fmt.Fprintf(e.stdout, "inventory: %s\n", s.Paths.Inventory())
		if timings && st.Timings != nil {
			printTimings(e.stdout, st.Timings)
		}
		return nil
	}
	fmt.Fprintf(e.stdout, "lab %q is up (backend %s): %d nodes\n", st.Name, st.Backend, len(st.Nodes))
	if hint := tryHint(s.Config.Plan); hint != "" {
		fmt.Fprintf(e.stdout, "try: %s\n     backbone verify\n", hint)
	}
	if timings && st.Timings != nil {
		printTimings(e.stdout, st.Timings)
	}
	return nil
}

// tryHint is a command that shows the lab working, naming real nodes: a
// ping from one site's CE to another site of its VRF.
func tryHint(p *plan.Plan) string {
	for _, a := range p.Sites {
		for _, b := range p.Sites {
			if a != b && a.VRF == b.VRF {
				for _, fam := range []int{4, 6} {
					if dst := b.Address(fam); dst.IsValid() && a.Address(fam).IsValid() {
						return fmt.Sprintf("backbone lab exec %s -- ping -c3 %s", a.CE, dst)
					}
				}
			}
		}
	}
	for _, r := range p.Routers {
		if len(r.Interfaces) > 0 {
			return fmt.Sprintf("backbone lab exec %s -- vtysh -c 'show ip ospf neighbor'", r.Name)
		}
	}
	return ""
}

func printTimings(w io.Writer, t *lab.Timings) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PHASE (backend %s)\tDONE AFTER\n", t.Backend)
	if t.Boot > 0 {
		fmt.Fprintf(tw, "boot\t%s\n", t.Boot.Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "topology\t%s\n", t.Topology.Round(time.Millisecond))
	if t.FirstIPv4 == 0 && t.FirstIPv6 == 0 {
		// A bare lab: its routers wait for deploy.
		fmt.Fprintf(tw, "routers booted (systemd up)\t%s\n", t.Daemons.Round(time.Millisecond))
	} else {
		fmt.Fprintf(tw, "daemons started\t%s\n", t.Daemons.Round(time.Millisecond))
		fmt.Fprintf(tw, "first CE-to-CE IPv4 packet\t%s\n", t.FirstIPv4.Round(time.Millisecond))
		fmt.Fprintf(tw, "first CE-to-CE IPv6 packet\t%s\n", t.FirstIPv6.Round(time.Millisecond))
	}
	fmt.Fprintf(tw, "total\t%s\n", t.Total.Round(time.Millisecond))
	tw.Flush()
}

func newLabExecCmd(e *env) *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "exec NODE -- CMD...",
		Short: "Run a command in a node (router, CE or underlay); e.g. lab exec pe101 -- vtysh -c 'show mpls table'",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			code, err := s.Exec(cmd.Context(), args[0], args[1:], e.stdin, e.stdout, e.stderr)
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
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
		Short: "Show the lab's backend, nodes and daemons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			st := s.State
			nodes := s.Status(cmd.Context())
			down := lab.Healthy(nodes)
			if asJSON {
				if err := writeJSON(e.stdout, map[string]any{"lab": st.Name, "backend": st.Backend, "ready": st.Ready, "timings": st.Timings, "nodes": nodes, "healthy": down == 0}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "lab %q (backend %s, ready=%v)\n", st.Name, st.Backend, st.Ready)
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tROLE\tRUNS IN\tDAEMONS")
				for _, n := range nodes {
					var ds []string
					for _, d := range n.Daemons {
						s := d.Name
						if !d.Running {
							s += "(DOWN)"
						}
						ds = append(ds, s)
					}
					if !n.Up {
						ds = []string{"DOWN: " + firstLine(n.Error)}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, n.Role, n.Place, strings.Join(ds, " "))
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

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

func newLabDownCmd(e *env) *cobra.Command {
	var f labFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, process and file of the lab (also after a crash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := lab.Resolve(f.name, f.file)
			if err != nil {
				if errors.Is(err, lab.ErrNotUp) {
					name = "default" // nothing recorded: clean up what a crash may have left of the default lab
				} else {
					return err
				}
			}
			rep, err := lab.Down(name, progressTo(e.stderr))
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.stdout, rep)
			}
			fmt.Fprintf(e.stdout, "lab %q is down: %d namespaces, %d processes, %d directories removed\n", name, len(rep.Namespaces), rep.Processes, len(rep.Removed))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was removed as JSON")
	return cmd
}

func newLabSetupCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare this machine for labs: fetch the kernels the backends need, check that they boot, choose the backend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := lab.Setup(cmd.Context(), progressTo(e.stderr))
			if rep != nil && asJSON {
				if werr := writeJSON(e.stdout, rep); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(e.stdout, "backend: %s\n", rep.Choice.Backend)
				for _, w := range rep.Choice.Why {
					fmt.Fprintf(e.stdout, "  not %s\n", w)
				}
				if rep.UML != nil {
					fmt.Fprintf(e.stdout, "UML kernel: %s (%s, Debian %s), checked %s\n", rep.UML.Release, rep.UML.Package, rep.UML.Suite, rep.UML.Checked.Format(time.RFC3339))
				}
				for _, u := range rep.UMLErrors {
					fmt.Fprintf(e.stdout, "UML: %s\n", firstLine(u))
				}
				if rep.QemuKernel != "" {
					fmt.Fprintf(e.stdout, "qemu kernel: %s\n", rep.QemuKernel)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was found and decided as JSON")
	return cmd
}

// newLabHiddenCmds are the commands backbone runs inside nodes and guests.
func newLabHiddenCmds(e *env) []*cobra.Command {
	return []*cobra.Command{
		{
			Use:    lab.NodeCommand + " LAB NODE -- CMD...",
			Hidden: true,
			Args:   cobra.MinimumNArgs(3),
			RunE: func(cmd *cobra.Command, args []string) error {
				return lab.ExecInNode(layout.ForLab(args[0]), args[1], args[2:])
			},
		},
		{
			Use:    lab.SetupInGuestCommand + " LAB NODE",
			Hidden: true,
			Args:   cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return lab.SetupHere(args[0], args[1])
			},
		},
		{
			Use:                "lab-guest-init CONFIG",
			Hidden:             true,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				// UML appends its own console= after ours: the kernel
				// passes it on, so only the first argument counts.
				if len(args) == 0 {
					return errors.New("usage: lab-guest-init CONFIG")
				}
				return guest.Init(args[0], e.stderr)
			},
		},
		{
			Use:                guest.AgentCommand + " CONFIG",
			Hidden:             true,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) != 1 {
					return errors.New("usage: " + guest.AgentCommand + " CONFIG")
				}
				return guest.ServeAgent(args[0], e.stderr)
			},
		},
		{
			Use:    lab.ProbeCommand,
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return probe.Serve(cmd.Context(), e.stdin, e.stdout, lab.Opener)
			},
		},
		{
			Use:    lab.KernelCheckCommand,
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return json.NewEncoder(e.stdout).Encode(features.Check(features.Modules()))
			},
		},
	}
}

// fileFlag is " -f FILE" for an intent file, "" for the default intent.
func fileFlag(source string) string {
	if source == "" {
		return ""
	}
	return " -f " + source
}
