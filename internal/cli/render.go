package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render"
	"github.com/backbone-net/backbone/internal/secrets"
)

func newRenderCmd(e *env) *cobra.Command {
	var path, out, secretsPath, runtimeDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "render -o DIR",
		Short: "Render FRR, strongSwan and Linux configs, one folder per router",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("render: -o DIR is required")}
			}
			_, p, err := loadPlanFrom(path, e.stdin, e.stderr)
			if err != nil {
				return err
			}
			files, store, err := renderPlan(p, secretsPath, runtimeDir)
			if err != nil {
				return err
			}
			// Secrets first: configs on disk never use a key that is not stored.
			if err := store.Save(); err != nil {
				return err
			}
			if err := render.Write(out, files); err != nil {
				return err
			}
			if asJSON {
				var list []map[string]any
				for _, f := range files {
					list = append(list, map[string]any{"path": f.Path, "bytes": len(f.Data), "mode": fmt.Sprintf("%04o", f.Mode)})
				}
				return writeJSON(e.stdout, map[string]any{"dir": out, "secrets": store.Path(), "files": list})
			}
			fmt.Fprintf(e.stdout, "rendered %d files for %d routers into %s (secrets: %s)\n", len(files), len(p.Routers), out, store.Path())
			return nil
		},
	}
	intentFlag(cmd, &path)
	cmd.Flags().StringVarP(&out, "output", "o", "", "output directory")
	cmd.Flags().StringVar(&secretsPath, "secrets", "", "secrets store (default ~/.local/state/backbone/<name>.secrets.json, or $BACKBONE_SECRETS_DIR)")
	cmd.Flags().StringVar(&runtimeDir, "runtime-dir", "", "runtime directory baked into configs (default /run/backbone/<name>)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "list the written files as JSON")
	return cmd
}

// renderPlan renders every file with the backbone's secrets (created on
// first use; the caller saves the store after writing).
func renderPlan(p *plan.Plan, secretsPath, runtimeDir string) ([]render.File, *secrets.Store, error) {
	store, err := openSecrets(p, secretsPath)
	if err != nil {
		return nil, nil, err
	}
	return render.Files(p, store, render.Options{RuntimeDir: runtimeDir}), store, nil
}

// openSecrets opens the secrets store of a plan (at path, or its default).
func openSecrets(p *plan.Plan, path string) (*secrets.Store, error) {
	if path == "" {
		var err error
		if path, err = secrets.DefaultPath(p.Name); err != nil {
			return nil, err
		}
	}
	return secrets.Open(path)
}
