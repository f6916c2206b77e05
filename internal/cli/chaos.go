package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/chaos"
	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/svgtimeline"
)

// chaosReport is what `backbone chaos --json` prints: every run, and the
// median and maximum over runs.
type chaosReport struct {
	Scenario string           `json:"scenario"`
	Lab      string           `json:"lab"`
	Backend  string           `json:"backend"`
	Runs     []*chaos.Result  `json:"runs"`
	Summary  *chaos.Aggregate `json:"summary"`
	// Error is set when a run failed before it could be measured (the
	// runs before it are reported).
	Error string `json:"error,omitempty"`
}

type chaosFlags struct {
	lab            labFlags
	asJSON         bool
	repeat         int
	hold           time.Duration
	interval       time.Duration
	coreInterval   time.Duration
	baseline       time.Duration
	settle         time.Duration
	recoverTimeout time.Duration
	svg            string
	graceful       bool
}

func newChaosCmd(e *env) *cobra.Command {
	var f chaosFlags
	cmd := &cobra.Command{
		Use:   "chaos SCENARIO [TARGET...]",
		Short: "Inject a failure into a running lab under 1 ms probe traffic and measure every blackhole",
		Long: `chaos runs probe streams (sequence-numbered UDP, both directions, IPv4 and
IPv6) between every pair of sites of a VRF and between every pair of PE
loopbacks, waits a baseline, injects a fault, holds it, restores, waits until
the control plane converged and every stream flowed for a while, and reports
each stream's loss (duration in ms and probes lost), split into fault (gaps
that start between inject and restore) and recovery (gaps after restore).

Scenarios (the fault is injected on the first router of a link):
  link-shut A-B            FRR "shutdown" on A's tunnel to B; restore "no shutdown"
                           (default pe101-pe201)
  underlay-cut A-B         nftables in the underlay drops all A<->B underlay traffic,
                           every interface stays up; restore deletes the table
  node-fail N              N crashes: where N has a kernel of its own (uml backend)
                           that kernel is killed (SIGKILL) and booted again on
                           restore; elsewhere SIGKILL of N's FRR daemons and charon
                           and its underlay link down, restore: link up, daemons
                           restarted (default pe102)
  daemon-restart N DAEMON  SIGTERM one daemon (bgpd ldpd ospfd ospf6d bfdd zebra
                           staticd charon) and start it again at once, config
                           re-applied; --hold only observes (default pe101 ospfd)
  observe                  inject nothing: measure, for --hold, what a change you make
                           meanwhile costs (a deploy, a maintenance)
  ipsec-rekey A-B          swanctl --rekey of A's CHILD_SA and IKE_SA to B under
                           traffic; --hold only observes
  charon-kill PE           SIGKILL charon on PE (a crash: no cleanup), start it again
                           on restore; the underlay between PEs is captured from the
                           baseline to recovery and every packet of an encrypted
                           tunnel that crossed it in clear is counted
                           (cleartext_packets; default pe101)

Exit status 1 when a run did not recover (a stream never came back, or the
control plane did not converge within --recover-timeout), or when a capture
saw a packet cross the underlay in clear.`,
		Example: `  backbone chaos link-shut pe101-pe201 --name chaos --hold 5s
  backbone chaos node-fail pe102 --repeat 5 --json
  backbone chaos daemon-restart pe101 ldpd --svg /tmp/ldpd.svg`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := chaos.ParseSpec(args[0], args[1:])
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("chaos: %w", err)}
			}
			if f.graceful && spec.Kind != chaos.DaemonRestart {
				return &ExitError{Code: 2, Err: fmt.Errorf("chaos: --graceful is for daemon-restart only")}
			}
			spec.Graceful = f.graceful
			if spec.Graceful && spec.Daemon == "ospfd" {
				fmt.Fprintln(e.stderr, "chaos: warning: FRR 8.4's ospfd, once restarted gracefully, segfaults at its next adjacency loss (stale grace LSAs): restart it once more without --graceful afterwards")
			}
			if f.repeat < 1 {
				return &ExitError{Code: 2, Err: fmt.Errorf("chaos: --repeat %d: use 1 or more", f.repeat)}
			}
			if f.interval < 100*time.Microsecond || f.coreInterval < 100*time.Microsecond {
				return &ExitError{Code: 2, Err: fmt.Errorf("chaos: --interval %s / --core-interval %s is too short: use 100µs or more", f.interval, f.coreInterval)}
			}
			ctx := cmd.Context()
			s, err := f.lab.open()
			if err != nil {
				return fmt.Errorf("chaos: %w", err)
			}
			rep, err := runChaos(ctx, e, s, spec, f)
			if rep == nil {
				return err
			}
			if f.svg != "" {
				files, serr := writeChaosSVG(f.svg, rep)
				if serr != nil {
					return serr
				}
				fmt.Fprintf(e.stderr, "chaos: timeline written to %s\n", strings.Join(files, ", "))
			}
			if f.asJSON {
				if werr := writeJSON(e.stdout, rep); werr != nil {
					return werr
				}
			} else {
				printChaos(e.stdout, rep)
			}
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return &ExitError{Code: 130, Err: fmt.Errorf("chaos %s: interrupted; the fault was restored and the report above stops there (incomplete)", rep.Scenario)}
			}
			if rep.Summary.NotRecovered > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("chaos %s: %d of %d run(s) did not recover", rep.Scenario, rep.Summary.NotRecovered, len(rep.Runs))}
			}
			if n := rep.Summary.CleartextPackets; n != nil && *n > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("chaos %s: %d packets of encrypted tunnels crossed the underlay in clear", rep.Scenario, *n)}
			}
			return nil
		},
	}
	f.lab.add(cmd)
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	cmd.Flags().IntVar(&f.repeat, "repeat", 1, "run the scenario N times; the report adds median and max per stream")
	cmd.Flags().DurationVar(&f.hold, "hold", 10*time.Second, "how long the fault lasts before restore")
	cmd.Flags().DurationVar(&f.interval, "interval", time.Millisecond, "probe interval of the site (CE to CE) streams")
	cmd.Flags().DurationVar(&f.coreInterval, "core-interval", 10*time.Millisecond, "probe interval of the PE loopback streams (24 on the default backbone: at 1 ms their forwarding alone saturates a 2-core machine running guest kernels)")
	cmd.Flags().DurationVar(&f.baseline, "baseline", 2*time.Second, "probing before the fault")
	cmd.Flags().DurationVar(&f.settle, "settle", 3*time.Second, "loss-free time after convergence that ends a run")
	cmd.Flags().DurationVar(&f.recoverTimeout, "recover-timeout", 60*time.Second, "longest wait for recovery after restore")
	cmd.Flags().BoolVar(&f.graceful, "graceful", false, "daemon-restart of ospfd/ospf6d: planned graceful restart (graceful-restart prepare first; needs graceful-restart in the config)")
	cmd.Flags().StringVar(&f.svg, "svg", "", "write an SVG timeline to FILE (with --repeat: FILE-1.svg, FILE-2.svg, ...)")
	return cmd
}

// runChaos runs the scenario --repeat times on the lab's nodes.
func runChaos(ctx context.Context, e *env, s *lab.Session, spec chaos.Spec, f chaosFlags) (*chaosReport, error) {
	progress := progressTo(e.stderr)
	o := chaos.Options{
		Spec: spec,
		Lab: chaos.Lab{
			Plan: s.Config.Plan, Hosts: s.Config.Hosts, Nodes: s,
			Daemons:      func(n string) ([]lab.DaemonStatus, error) { return s.Daemons(ctx, n) },
			StartScripts: s.StartScripts,
			OwnKernel:    s.OwnKernel,
			Endpoint:     s.ProbeEndpoint,
			Probe:        s.ProbeOptions(),
		},
		Runner:   &chaos.SessionRunner{S: s},
		Interval: f.interval, CoreInterval: f.coreInterval, Baseline: f.baseline, Hold: f.hold, Settle: f.settle, RecoverTimeout: f.recoverTimeout,
		Backend: s.Backend(), Progress: progress,
	}
	rep := &chaosReport{Scenario: spec.String(), Lab: s.Paths.Name, Backend: s.Backend()}
	for i := 1; i <= f.repeat; i++ {
		res, err := chaos.Run(ctx, o, i)
		if err != nil {
			if len(rep.Runs) == 0 {
				return nil, fmt.Errorf("chaos %s: %w", spec, err)
			}
			rep.Summary = chaos.Summarize(rep.Runs)
			rep.Error = fmt.Sprintf("chaos %s, run %d: %v", spec, i, err)
			return rep, errors.New(rep.Error)
		}
		progress("run %d: %s", i, runLine(res))
		rep.Runs = append(rep.Runs, res)
		if res.Incomplete {
			break
		}
	}
	rep.Summary = chaos.Summarize(rep.Runs)
	return rep, nil
}

// runLine is a one-line summary of a run.
func runLine(r *chaos.Result) string {
	var ws, wa chaos.Loss
	for _, s := range r.Streams {
		if s.Down {
			continue
		}
		if s.Site && s.Fault.MS+s.Recovery.MS > ws.MS {
			ws = chaos.Loss{MS: s.Fault.MS + s.Recovery.MS, Lost: s.Fault.Lost + s.Recovery.Lost}
		}
		if s.Fault.MS+s.Recovery.MS > wa.MS {
			wa = chaos.Loss{MS: s.Fault.MS + s.Recovery.MS, Lost: s.Fault.Lost + s.Recovery.Lost}
		}
	}
	state := "recovered"
	if !r.Recovered {
		state = "NOT RECOVERED: " + r.Note
	}
	return fmt.Sprintf("worst site stream lost %.1f ms (%d probes), worst stream %.1f ms; %s", ws.MS, ws.Lost, wa.MS, state)
}

func printChaos(w io.Writer, rep *chaosReport) {
	for _, r := range rep.Runs {
		fmt.Fprintf(w, "chaos %s, run %d/%d (lab %q, backend %s)\n", rep.Scenario, r.Run, len(rep.Runs), rep.Lab, rep.Backend)
		fmt.Fprintf(w, "  probes every %gms between sites, %gms between PE loopbacks; they left %s and %s\n", r.Interval, r.CoreInterval, spacingText(r.Achieved), spacingText(r.CoreAchieved))
		fmt.Fprintf(w, "  inject at %.2fs (done %.2fs), restore at %.2fs (done %.2fs), ", r.Inject/1000, r.InjectDone/1000, r.Restore/1000, r.RestoreDone/1000)
		switch {
		case r.Incomplete:
			fmt.Fprintf(w, "INCOMPLETE: %s\n", r.Note)
		case r.Recovered:
			fmt.Fprintf(w, "converged at %.2fs, recovered\n", r.Converged/1000)
		default:
			fmt.Fprintf(w, "NOT RECOVERED: %s\n", r.Note)
		}
		if c := r.Capture; c != nil {
			fmt.Fprintf(w, "  underlay capture: %d cleartext packets, %d ESP, %d IKE", c.Cleartext, c.ESP, c.IKE)
			if c.Cleartext > 0 {
				fmt.Fprintf(w, " (%s); e.g. %s", kindsText(c.Kinds), strings.Join(c.Examples, " | "))
			}
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "STREAM\tFAULT ms\tLOST\tRECOVERY ms\tLOST\tBASELINE ms\tDUP\tREORD\tNOTE\t")
		for _, s := range r.Streams {
			fmt.Fprintf(tw, "%s\t%.1f\t%d\t%.1f\t%d\t%.1f\t%d\t%d\t%s\t\n", s.Name, s.Fault.MS, s.Fault.Lost, s.Recovery.MS, s.Recovery.Lost, s.Baseline.MS, s.Duplicates, s.Reordered, runNote(s))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	a := rep.Summary
	if a == nil || len(rep.Runs) < 2 {
		return
	}
	fmt.Fprintf(w, "chaos %s: %d runs, median / max per stream (backend %s)\n", rep.Scenario, a.Runs, rep.Backend)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STREAM\tFAULT ms med\tmax\tLOST med\tmax\tRECOVERY ms med\tmax\tLOST med\tmax\tNOTE\t")
	row := func(s chaos.StreamAggregate) {
		note := streamNote(s.Down, false)
		if s.OpenRuns > 0 {
			note = fmt.Sprintf("never came back in %d run(s)", s.OpenRuns)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f\t%.0f\t%s\t\n", s.Name,
			s.FaultMS.Median, s.FaultMS.Max, s.FaultLost.Median, s.FaultLost.Max,
			s.RecoveryMS.Median, s.RecoveryMS.Max, s.RecoveryLost.Median, s.RecoveryLost.Max, note)
	}
	for _, s := range a.Streams {
		row(s)
	}
	row(a.Sites)
	row(a.All)
	tw.Flush()
	if a.NotRecovered > 0 {
		fmt.Fprintf(w, "%d of %d runs did not recover\n", a.NotRecovered, a.Runs)
	}
}

// kindsText lists counts by kind, sorted by kind.
func kindsText(kinds map[string]int) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		out = append(out, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	return strings.Join(out, ", ")
}

// runNote is a stream's note in one run.
func runNote(s chaos.StreamResult) string {
	if s.EngineLost {
		return "ends at the crash (its probe engine died with the node)"
	}
	return streamNote(s.Down, s.Open)
}

func streamNote(down, open bool) string {
	switch {
	case open:
		return "NEVER CAME BACK"
	case down:
		return "endpoint taken down"
	}
	return ""
}

// writeChaosSVG writes one timeline per run.
func writeChaosSVG(path string, rep *chaosReport) ([]string, error) {
	var files []string
	for _, r := range rep.Runs {
		file := path
		if len(rep.Runs) > 1 {
			ext := filepath.Ext(path)
			file = strings.TrimSuffix(path, ext) + "-" + strconv.Itoa(r.Run) + ext
		}
		var b bytes.Buffer
		if err := svgtimeline.Render(&b, chaosChart(rep, r)); err != nil {
			return files, err
		}
		if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
			return files, fmt.Errorf("chaos --svg: %w", err)
		}
		files = append(files, file)
	}
	return files, nil
}

func chaosChart(rep *chaosReport, r *chaos.Result) svgtimeline.Chart {
	c := svgtimeline.Chart{
		Title:    fmt.Sprintf("backbone chaos %s (run %d/%d)", rep.Scenario, r.Run, len(rep.Runs)),
		Subtitle: fmt.Sprintf("lab %q, backend %s; one row per probe stream, probes every %gms (left every %.1fms on average, at worst %.1fms apart); shaded: inject/restore commands running", rep.Lab, rep.Backend, r.Interval, r.Achieved.Mean, r.Achieved.Max),
		Start:    0,
		End:      r.End / 1000,
		Markers: []svgtimeline.Marker{
			{At: r.Inject / 1000, Until: r.InjectDone / 1000, Label: "inject", Color: "#ff7f0e"},
			{At: r.Restore / 1000, Until: r.RestoreDone / 1000, Label: "restore", Color: "#2ca02c"},
		},
	}
	if r.Recovered && r.Converged > 0 {
		c.Markers = append(c.Markers, svgtimeline.Marker{At: r.Converged / 1000, Label: "converged", Color: "#1f77b4"})
	}
	for _, s := range r.Streams {
		row := svgtimeline.Row{Label: s.Name, Muted: s.Down}
		if s.Down {
			row.Label += " (down)"
		}
		for _, g := range s.Gaps {
			row.Spans = append(row.Spans, svgtimeline.Span{
				Start: g.Start / 1000, End: g.End / 1000, Open: g.Open,
				Title: fmt.Sprintf("%s: %s loss %.1f ms, %d probes, from %.3fs", s.Name, g.Phase, g.End-g.Start, g.Lost, g.Start/1000),
			})
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}

func spacingText(s chaos.Spacing) string {
	return fmt.Sprintf("%.2fms apart on average (99%% within %.2fms, at worst %.1fms)", s.Mean, s.P99, s.Max)
}
