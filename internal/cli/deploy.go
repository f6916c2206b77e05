package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/deploy"
	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/sshnode"
)

// deployFlags are the flags every deploy command shares.
type deployFlags struct {
	file, inventory, secrets string
	acceptNew, asJSON        bool
}

func (f *deployFlags) register(cmd *cobra.Command) {
	intentFlag(cmd, &f.file)
	cmd.Flags().StringVar(&f.inventory, "inventory", "", "how to reach the routers (default: FILE.inventory.yaml next to the intent, else a bare lab's of the same name, else each router's underlay address as root with your SSH agent or ~/.ssh keys)")
	cmd.Flags().BoolVar(&f.acceptNew, "accept-new-host-keys", false, "trust and record the host key of a router not yet in known_hosts (a changed key is always refused)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
}

// targets loads the intent and resolves the inventory.
func (f *deployFlags) targets(e *env) (*plan.Plan, []sshnode.Target, string, error) {
	_, p, err := loadPlan(f.file, e.stderr)
	if err != nil {
		return nil, nil, "", err
	}
	ts, src, err := f.targetsFor(p)
	return p, ts, src, err
}

// targetsFor resolves the inventory for a plan: the SSH targets and where
// they were read from.
func (f *deployFlags) targetsFor(p *plan.Plan) ([]sshnode.Target, string, error) {
	var err error
	inv := &deploy.Inventory{}
	path := f.inventory
	if path == "" && f.file != "" && f.file != "-" {
		if _, err := os.Stat(deploy.InventoryFile(f.file)); err == nil {
			path = deploy.InventoryFile(f.file)
		}
	}
	if path == "" {
		if st, err := lab.ReadState(layout.ForLab(p.Name)); err == nil && st.Bare {
			path = layout.ForLab(p.Name).Inventory()
		}
	}
	if path != "" {
		if inv, err = deploy.LoadInventory(path); err != nil {
			return nil, "", err
		}
	}
	ts, err := inv.Targets(p, f.acceptNew)
	if err != nil {
		return nil, "", err
	}
	if len(ts) == 0 {
		return nil, "", fmt.Errorf("intent %q has no router to deploy: give its PE and P routers a host: {os: ..., network: ...}", p.Name)
	}
	src := "defaults (no inventory file)"
	if path != "" {
		src = path
	}
	return ts, src, nil
}

func newDeployCmd(e *env) *cobra.Command {
	var f deployFlags
	var diff, atomic bool
	var confirm, stepTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Put the backbone on its routers over SSH: diff, staged and checked files, one router at a time, automatic rollback",
		Long: `deploy configures real routers (or a bare lab's, lab up --bare) over SSH.

Every router is reached and checked first (host key, login, packages): if one
fails, nothing changes anywhere. --diff shows, per router and file, what would
change and which services would reload (exit 0: nothing, 2: something).
Otherwise each router in turn gets a new generation of its files, checked with
its own tools (vtysh --dryrun, nmcli --offline) before the switch; the switch
reloads only what changed (frr-reload, swanctl --load-all, the changed
connections) and the router's sessions with the routers done before it must
come up. The first failure puts that router back on its previous generation
and stops (--atomic: every router changed in this run too).

--confirm 5m arms, on each changed router, a rollback that fires by itself
after 5 minutes (also when you lost the router) unless "backbone deploy
confirm" arrives. "backbone deploy rollback" returns to the previous
generation on demand. Generations are kept on each router in /var/lib/backbone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, ts, src, err := f.targets(e)
			if err != nil {
				return err
			}
			store, err := openSecrets(p, f.secrets)
			if err != nil {
				return err
			}
			// Secrets first: no router gets a key that was not stored.
			if err := store.Save(); err != nil {
				return err
			}
			progress := progressTo(e.stderr)
			progress("inventory: %s", src)
			user := os.Getenv("SUDO_USER")
			if user == "" {
				user = os.Getenv("USER")
			}
			rep, err := deploy.Deploy(cmd.Context(), deploy.Options{
				Plan: p, Keys: store, Targets: ts, Diff: diff, Confirm: confirm, Atomic: atomic, StepTimeout: stepTimeout,
				Note: fmt.Sprintf("intent %s (%s), by %s at %s", p.Name, orDefault(f.file), user, time.Now().UTC().Format(time.RFC3339)), Progress: progress,
			})
			if rep != nil {
				if f.asJSON {
					if werr := writeJSON(e.stdout, rep); werr != nil {
						return werr
					}
				} else {
					printDeploy(e.stdout, rep)
				}
			}
			if err != nil {
				if rep != nil && cmd.Context().Err() != nil {
					return &ExitError{Code: 130, Err: fmt.Errorf("deploy: %w", err)}
				}
				return fmt.Errorf("deploy: %w", err)
			}
			if diff && rep.Changed {
				return &ExitError{Code: 2}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.secrets, "secrets", "", "secrets store (default ~/.local/state/backbone/<name>.secrets.json)")
	cmd.Flags().BoolVar(&diff, "diff", false, "only show what would change (exit 2 when something would)")
	cmd.Flags().DurationVar(&confirm, "confirm", 0, "arm a rollback on each changed router that fires after this time unless \"backbone deploy confirm\" runs (like commit confirmed)")
	cmd.Flags().BoolVar(&atomic, "atomic", false, "when a router fails, roll back the routers this run changed too")
	cmd.Flags().DurationVar(&stepTimeout, "step-timeout", 2*time.Minute, "how long a router's sessions with the routers done may take to come up")
	cmd.AddCommand(newDeployConfirmCmd(e), newDeployRollbackCmd(e))
	return cmd
}

func newDeployConfirmCmd(e *env) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "confirm",
		Short: "Keep what the last deploy --confirm put on the routers: disarm their automatic rollback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, ts, _, err := f.targets(e)
			if err != nil {
				return err
			}
			rep, err := deploy.Confirm(cmd.Context(), p, ts)
			return reportDeploy(e, f.asJSON, rep, err, "deploy confirm")
		},
	}
	f.register(cmd)
	return cmd
}

func newDeployRollbackCmd(e *env) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Put every router back on the generation before its current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, ts, _, err := f.targets(e)
			if err != nil {
				return err
			}
			rep, err := deploy.Rollback(cmd.Context(), p, ts, progressTo(e.stderr))
			return reportDeploy(e, f.asJSON, rep, err, "deploy rollback")
		},
	}
	f.register(cmd)
	return cmd
}

func reportDeploy(e *env, asJSON bool, rep *deploy.Report, err error, what string) error {
	if rep != nil {
		if asJSON {
			if werr := writeJSON(e.stdout, rep); werr != nil {
				return werr
			}
		} else {
			printDeploy(e.stdout, rep)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func orDefault(file string) string {
	if file == "" {
		return "embedded default"
	}
	return file
}

func printDeploy(w io.Writer, rep *deploy.Report) {
	if rep.Diff {
		for _, r := range rep.Routers {
			for _, c := range r.Changes {
				fmt.Fprintf(w, "=== %s %s (%s)\n", r.Name, c.Path, c.Change)
				if c.Diff != "" {
					fmt.Fprint(w, c.Diff)
					if !strings.HasSuffix(c.Diff, "\n") {
						fmt.Fprintln(w)
					}
				}
			}
			if len(r.Reloads) > 0 {
				fmt.Fprintf(w, "=== %s would run: %s\n", r.Name, strings.Join(r.Reloads, "; "))
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ROUTER\tSTATUS\tGENERATION\tCHANGES\tCHECKS\tTIME\tNOTE\n")
	for _, r := range rep.Routers {
		gen := fmt.Sprint(r.Current)
		if r.Current != r.Previous {
			gen = fmt.Sprintf("%d -> %d", r.Previous, r.Current)
		}
		note := r.Error
		if r.Armed && note == "" {
			note = "rollback armed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Name, r.Status, gen, len(r.Changes), r.Checks, r.Duration.Round(100*time.Millisecond), note)
	}
	tw.Flush()
	switch {
	case rep.Stopped != "":
		fmt.Fprintf(w, "deploy %s: %s\n", rep.Intent, rep.Stopped)
	case rep.Diff && !rep.Changed:
		fmt.Fprintf(w, "deploy %s: nothing would change\n", rep.Intent)
	case rep.Diff:
		fmt.Fprintf(w, "deploy %s: changes above (run without --diff to apply)\n", rep.Intent)
	case rep.Confirm != "":
		fmt.Fprintf(w, "deploy %s: done in %s; %s\n", rep.Intent, rep.Duration.Round(100*time.Millisecond), rep.Confirm)
	case rep.Duration > 0:
		fmt.Fprintf(w, "deploy %s: done in %s\n", rep.Intent, rep.Duration.Round(100*time.Millisecond))
	}
}
