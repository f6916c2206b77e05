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

	"github.com/backbone-net/backbone/internal/deploy"
	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/verify"
)

func newVerifyCmd(e *env) *cobra.Command {
	var f labFlags
	var wait, capture time.Duration
	var asJSON, deployed, acceptNew bool
	var inventory string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove a running lab, or the deployed routers, against the plan: control plane, data plane, encryption, kernel",
		Long: `verify checks every promise of the plan on the running lab: OSPFv2/v3
adjacencies and loopback reachability, LDP sessions and LSPs, VPNv4/VPNv6
sessions and every remote site's prefixes installed with labels, site-to-site
reachability and MTU (largest planned packet with DF crosses, one byte more is
refused), IPsec SAs with the intended proposals and a capture of the underlay
that must show only ESP and IKE, and the kernel's MPLS and VRF settings.
Exit status 0 only if every check passes.

On deployed routers (no lab; --deployed or --inventory) the same checks run
over SSH; the CEs and the provider's underlay are not backbone's, so the
data plane is probed from each PE inside its VRF to the remote CEs, and the
underlay is captured on the PEs' underlay interfaces (tcpdump on the
routers).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opt := verify.Options{Capture: capture, NoCapture: capture == 0}
			var p *plan.Plan
			var nodes node.Nodes
			var where, backend string
			s, err := (*lab.Session)(nil), error(nil)
			if !deployed && inventory == "" {
				s, err = f.open()
			}
			switch {
			case s != nil:
				if f.file != "" {
					if err := samePlan(f.file, s, e.stderr); err != nil {
						return err
					}
				}
				p, nodes, where, backend = s.Config.Plan, s, s.Paths.Name, s.Backend()
			case err != nil && f.file == "":
				return fmt.Errorf("verify: %w", err)
			default:
				// No lab: the routers deploy configured, over SSH. Without
				// --deployed or --inventory that is what an intent whose
				// routers have hosts means; any other meant a lab.
				doc, lerr := loadIntent(f.file, e.stdin)
				if err != nil && (lerr != nil || !hasHosts(doc.Intent)) {
					return fmt.Errorf("verify: %w", err)
				}
				if lerr != nil {
					return lerr
				}
				if p, lerr = planDoc(doc, e.stderr); lerr != nil {
					return lerr
				}
				df := deployFlags{file: f.file, inventory: inventory, acceptNew: acceptNew}
				ts, src, terr := df.targetsFor(p)
				if terr != nil {
					if err != nil {
						return fmt.Errorf("verify: no lab: %v; and the deployed routers: %w", err, terr)
					}
					return fmt.Errorf("verify: %w", terr)
				}
				fmt.Fprintf(e.stderr, "verify: the deployed routers of %s (inventory: %s)\n", p.Name, src)
				hosts, derr := deploy.DialHosts(ctx, ts)
				if derr != nil {
					return fmt.Errorf("verify:\n%w", derr)
				}
				defer hosts.Close()
				nodes, backend, opt.Deployed = hosts, "hosts", true
			}
			var rep *verify.Report
			if wait > 0 {
				rep = verify.Wait(ctx, p, nodes, opt, wait, func(r *verify.Report) {
					fmt.Fprintf(e.stderr, "verify: %d of %d checks failing after %s (%s), retrying (--wait %s)\n",
						r.Failed, r.Passed+r.Failed, r.Duration.Round(100*time.Millisecond), failingNames(r, 3), wait)
				})
			} else {
				rep = verify.Run(ctx, p, nodes, opt)
			}
			rep.Lab, rep.Backend = where, backend
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
	cmd.Flags().BoolVar(&deployed, "deployed", false, "verify the routers deploy configured (over SSH, with the inventory), not a lab; the default when no lab runs the intent given with -f")
	cmd.Flags().StringVar(&inventory, "inventory", "", "inventory of the deployed routers (implies --deployed; default: FILE.inventory.yaml next to the intent)")
	cmd.Flags().BoolVar(&acceptNew, "accept-new-host-keys", false, "trust and record host keys not yet in known_hosts")
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

// hasHosts reports whether the intent describes routers that deploy
// configures (a router has a host).
func hasHosts(in *intent.Intent) bool {
	for _, r := range in.Routers {
		if r.Host != nil {
			return true
		}
	}
	return false
}
