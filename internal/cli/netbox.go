package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/netbox"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/secrets"
)

// NetBoxScheme is the -f form that reads an intent from NetBox:
// netbox://NAME (URL and token from NETBOX_URL and NETBOX_TOKEN).
const NetBoxScheme = "netbox://"

type netboxFlags struct {
	url, token string
}

func (f *netboxFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "url", "", "NetBox URL (default $NETBOX_URL)")
	cmd.Flags().StringVar(&f.token, "token", "", "NetBox API token (default $NETBOX_TOKEN)")
}

func (f *netboxFlags) client() (*netbox.Client, error) {
	u, t := f.url, f.token
	if u == "" {
		u = os.Getenv("NETBOX_URL")
	}
	if t == "" {
		t = os.Getenv("NETBOX_TOKEN")
	}
	if u == "" {
		return nil, fmt.Errorf("netbox: no URL: pass --url or set NETBOX_URL")
	}
	return netbox.New(u, t)
}

// loadIntent reads an intent from a file, stdin ("-"), the embedded
// default (""), or NetBox (netbox://NAME).
func loadIntent(path string, stdin io.Reader) (*intent.Document, error) {
	name, ok := strings.CutPrefix(path, NetBoxScheme)
	if !ok {
		return intent.LoadFrom(path, stdin)
	}
	var f netboxFlags
	c, err := f.client()
	if err != nil {
		return nil, err
	}
	in, err := netbox.Pull(context.Background(), c, name)
	if err != nil {
		return nil, err
	}
	data, err := intent.Format(in)
	if err != nil {
		return nil, err
	}
	return intent.Load(data, path)
}

func newNetBoxCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netbox",
		Short: "NetBox as the source of truth: push an intent into NetBox, pull one out",
		Long: `push writes a backbone into NetBox: its routers as virtual machines of a
cluster named after the backbone, interfaces, loopback and link addresses
(the ones the plan allocated, so they stay pinned), VRFs with route targets,
links as tunnels with their terminations, and custom fields (bb_*) and a
config context for what NetBox has no field for (docs/netbox.md). It is
idempotent: a second push changes nothing; --dry-run lists what would change
(exit 2 when something would).

pull writes the intent back from NetBox. Every command that reads an intent
reads it from NetBox with -f netbox://NAME.

URL and token: --url/--token, or NETBOX_URL/NETBOX_TOKEN.`,
	}
	cmd.AddCommand(newNetBoxPushCmd(e), newNetBoxPullCmd(e), newNetBoxDeleteCmd(e))
	return cmd
}

func newNetBoxPushCmd(e *env) *cobra.Command {
	var f netboxFlags
	var path, secretsPath string
	var dryRun, asJSON, withSecrets bool
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Create or update in NetBox everything the intent and its plan describe",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			doc, p, err := loadPlanFrom(path, e.stdin, e.stderr)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			var opts netbox.Options
			var store *secrets.Store
			if withSecrets {
				if store, err = openSecrets(p, secretsPath); err != nil {
					return err
				}
				opts.Secrets = store
			}
			start := time.Now()
			if err := netbox.NoDevices(cmd.Context(), c, doc.Intent.Name); err != nil {
				return err
			}
			want, kinds := netbox.Desired(doc.Intent, p, opts)
			// Keys generated for the push are kept before NetBox has them.
			if store != nil && !dryRun {
				if err := store.Save(); err != nil {
					return err
				}
			}
			changes, _, err := netbox.Sync(cmd.Context(), c, kinds.All(), want, dryRun)
			rep := syncReport{doc.Intent.Name, c.URL, dryRun, len(want), changes, c.Requests, time.Since(start)}
			if werr := rep.write(e.stdout, asJSON, "push"); werr != nil {
				return werr
			}
			if err != nil {
				return fmt.Errorf("netbox push: %w (run the same push again to complete it: it finds what exists by name)", err)
			}
			if dryRun && len(changes) > 0 {
				return &ExitError{Code: 2}
			}
			return nil
		},
	}
	f.add(cmd)
	intentFlag(cmd, &path)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be created, updated or deleted, change nothing (exit 2 when something would)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&withSecrets, "with-secrets", false, "also write each link's IPsec pre-shared key into its IKE policy (NetBox stores it in clear text)")
	cmd.Flags().StringVar(&secretsPath, "secrets", "", "secrets store for --with-secrets (default ~/.local/state/backbone/<name>.secrets.json)")
	return cmd
}

func newNetBoxPullCmd(e *env) *cobra.Command {
	var f netboxFlags
	var name, out, secretsPath string
	var withSecrets bool
	cmd := &cobra.Command{
		Use:   "pull",
		Short: "Write the intent of a backbone held in NetBox",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("netbox pull: --name: which backbone (its cluster and tag bb-NAME in NetBox)")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			in, err := netbox.Pull(cmd.Context(), c, name)
			if err != nil {
				return err
			}
			data, err := intent.Format(in)
			if err != nil {
				return err
			}
			// What NetBox holds must make a valid intent.
			var problems strings.Builder
			_, p, err := loadPlanFrom("-", strings.NewReader(string(data)), &problems)
			if err != nil {
				fmt.Fprint(e.stderr, strings.ReplaceAll(problems.String(), "-: ", NetBoxScheme+name+": "))
				return fmt.Errorf("netbox pull %s: NetBox holds an intent that does not validate: %w", name, err)
			}
			if withSecrets {
				if err := pullSecrets(cmd.Context(), c, p, secretsPath, e.stderr); err != nil {
					return err
				}
			}
			if out == "" || out == "-" {
				_, err = e.stdout.Write(data)
				return err
			}
			return os.WriteFile(out, data, 0o644)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&name, "name", "", "the backbone's name")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the intent to this file (default stdout)")
	cmd.Flags().BoolVar(&withSecrets, "with-secrets", false, "also copy the pre-shared keys NetBox holds (push --with-secrets) into the secrets store")
	cmd.Flags().StringVar(&secretsPath, "secrets", "", "secrets store for --with-secrets (default ~/.local/state/backbone/<name>.secrets.json)")
	return cmd
}

// pullSecrets copies the links' pre-shared keys from NetBox's IKE policies
// into the secrets store.
func pullSecrets(ctx context.Context, c *netbox.Client, p *plan.Plan, path string, w io.Writer) error {
	store, err := openSecrets(p, path)
	if err != nil {
		return err
	}
	keys, err := netbox.PullSecrets(ctx, c, p)
	if err != nil {
		return err
	}
	for link, key := range keys {
		store.SetPSK(link, key)
	}
	if err := store.Save(); err != nil {
		return err
	}
	fmt.Fprintf(w, "netbox pull %s: %d pre-shared keys from NetBox in %s\n", p.Name, len(keys), store.Path())
	return nil
}

// syncReport is what push and delete report.
type syncReport struct {
	Backbone string          `json:"backbone"`
	URL      string          `json:"url"`
	DryRun   bool            `json:"dry_run"`
	Objects  int             `json:"objects"`
	Changes  []netbox.Change `json:"changes"`
	Requests int             `json:"requests"`
	Duration time.Duration   `json:"duration_ns"`
}

func (r syncReport) write(w io.Writer, asJSON bool, verb string) error {
	if r.Changes == nil {
		r.Changes = []netbox.Change{}
	}
	if asJSON {
		return writeJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ch := range r.Changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.Action, ch.Kind, ch.Key, strings.Join(ch.Fields, ","))
	}
	tw.Flush()
	done := map[string]string{"push": "pushed", "delete": "deleted"}[verb]
	if r.DryRun {
		done = "would " + verb
	}
	what := fmt.Sprintf("%d changes of %d objects", len(r.Changes), r.Objects)
	if verb == "delete" {
		what = fmt.Sprintf("%d objects", len(r.Changes))
	}
	_, err := fmt.Fprintf(w, "netbox %s %s: %s %s at %s in %s (%d requests)\n",
		verb, r.Backbone, done, what, r.URL, r.Duration.Round(10*time.Millisecond), r.Requests)
	return err
}

func newNetBoxDeleteCmd(e *env) *cobra.Command {
	var f netboxFlags
	var name string
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Remove from NetBox every object push wrote for a backbone (tag bb-NAME)",
		Long: `delete removes the objects of one backbone that push owns (those tagged
bb-NAME: cluster, config context, VRFs, virtual machines, interfaces,
addresses, tunnels, IKE/IPsec objects, prefixes), dependents first. Shared
objects (tags, custom fields, roles, platforms, RIRs, the ASN, route
targets) and devices stay. --dry-run lists what would go (exit 2 when
something would).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("netbox delete: --name: which backbone (its tag bb-NAME in NetBox)")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			start := time.Now()
			changes, err := netbox.Delete(cmd.Context(), c, name, dryRun)
			rep := syncReport{name, c.URL, dryRun, len(changes), changes, c.Requests, time.Since(start)}
			if werr := rep.write(e.stdout, asJSON, "delete"); werr != nil {
				return werr
			}
			if err != nil {
				return fmt.Errorf("netbox delete: %w (run it again to finish)", err)
			}
			if dryRun && len(changes) > 0 {
				return &ExitError{Code: 2}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&name, "name", "", "the backbone's name")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be deleted, change nothing (exit 2 when something would)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
