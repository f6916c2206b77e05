package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/verify"
)

func newVerifyCmd(e *env) *cobra.Command {
	var f labFlags
	var wait, capture time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove a running lab against its plan: control plane, data plane, encryption, kernel",
		Long: `verify checks every promise of the plan on the running lab: OSPFv2/v3
adjacencies and loopback reachability, LDP sessions and LSPs, VPNv4/VPNv6
sessions and every remote site's prefixes installed with labels, site-to-site
reachability and MTU (largest planned packet with DF crosses, one byte more is
refused), IPsec SAs with the intended proposals and a capture of the underlay
that must show only ESP and IKE, and the kernel's MPLS and VRF settings.
Exit status 0 only if every check passes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := f.open()
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if f.file != "" {
				if err := samePlan(f.file, s, e.stderr); err != nil {
					return err
				}
			}
			opt := verify.Options{Capture: capture, NoCapture: capture == 0}
			var rep *verify.Report
			if wait > 0 {
				rep = verify.Wait(ctx, s.Config.Plan, s, opt, wait, func(r *verify.Report) {
					fmt.Fprintf(e.stderr, "verify: %d of %d checks failing after %s (%s), retrying (--wait %s)\n",
						r.Failed, r.Passed+r.Failed, r.Duration.Round(100*time.Millisecond), failingNames(r, 3), wait)
				})
			} else {
				rep = verify.Run(ctx, s.Config.Plan, s, opt)
			}
			rep.Lab, rep.Backend = s.Paths.Name, s.Backend()
			if asJSON {
				if err := writeJSON(e.stdout, rep); err != nil {
					return err
				}
			} else {
				printReport(e.stdout, rep)
			}
			if !rep.OK() {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&wait, "wait", 0, "retry until every check passes or this time is up (e.g. 60s, right after lab up)")
	cmd.Flags().DurationVar(&capture, "capture", verify.DefaultCapture, "how long to capture the underlay for cleartext (0: no capture)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// samePlan checks that the intent at path plans exactly what the lab runs.
func samePlan(path string, s *lab.Session, w io.Writer) error {
	_, p, err := loadPlan(path, w)
	if err != nil {
		return err
	}
	want, _ := json.Marshal(p)
	got, _ := json.Marshal(s.Config.Plan)
	if !bytes.Equal(want, got) {
		return fmt.Errorf("verify: lab %q runs a different plan than %s: rebuild it (backbone lab down --name %s; backbone lab up -f %s)", s.Paths.Name, path, s.Paths.Name, path)
	}
	return nil
}

func printReport(w io.Writer, rep *verify.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tCHECK\tRESULT\tEVIDENCE")
	for _, r := range rep.Results {
		res := "pass"
		if !r.Pass {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Group, r.Name, res, r.Evidence)
		if !r.Pass && r.Cause != "" {
			fmt.Fprintf(tw, "\t\t\tlikely cause: %s\n", r.Cause)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "verify: %d passed, %d failed in %s (%d attempt(s), lab %q, backend %s)\n", rep.Passed, rep.Failed, rep.Duration.Round(100*time.Millisecond), rep.Attempts, rep.Lab, rep.Backend)
}

// failingNames names the first n failing checks of a report.
func failingNames(r *verify.Report, n int) string {
	var names []string
	for _, res := range r.Results {
		if !res.Pass {
			names = append(names, res.Name)
		}
	}
	if len(names) > n {
		return strings.Join(names[:n], "; ") + fmt.Sprintf("; %d more", len(names)-n)
	}
	return strings.Join(names, "; ")
}
