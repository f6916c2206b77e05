package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

func newIntentCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "intent",
		Short: "Work with intent files",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the embedded default backbone intent (a 4-PE ring with two customer sites)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := e.stdout.Write(intent.DefaultYAML())
			return err
		},
	})
	return cmd
}

// intentFlag adds -f/--file to a command.
func intentFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "file", "f", "", "intent YAML file (default: the embedded default backbone; - for stdin)")
}

// loadPlan loads, validates and plans an intent, printing warnings to w.
// On validation errors it prints every problem and returns exit code 1.
func loadPlan(path string, w io.Writer) (*intent.Document, *plan.Plan, error) {
	return loadPlanFrom(path, os.Stdin, w)
}

// loadPlanFrom is loadPlan with "-" reading from stdin (the command's, so
// that in-process runs and tests can feed it).
func loadPlanFrom(path string, stdin io.Reader, w io.Writer) (*intent.Document, *plan.Plan, error) {
	doc, err := loadIntent(path, stdin)
	if err != nil {
		return nil, nil, err
	}
	p, err := planDoc(doc, w)
	if err != nil {
		return nil, nil, err
	}
	return doc, p, nil
}

// planDoc validates and plans a loaded intent, printing warnings and
// errors to w.
func planDoc(doc *intent.Document, w io.Writer) (*plan.Plan, error) {
	p, ps := plan.Build(doc)
	for _, pr := range ps.Warnings() {
		fmt.Fprintf(w, "%s: warning: %s\n", doc.Source, pr)
	}
	if errs := ps.Errors(); len(errs) > 0 {
		for _, pr := range errs {
			fmt.Fprintf(w, "%s: error: %s\n", doc.Source, pr)
		}
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: %d error(s); nothing was written", doc.Source, len(errs))}
	}
	return p, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newValidateCmd(e *env) *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check an intent and report every problem at once (exit 1 on any error)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			doc, err := loadIntent(path, e.stdin)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			_, ps := plan.Build(doc)
			if asJSON {
				if ps == nil {
					ps = intent.Problems{}
				}
				if err := writeJSON(e.stdout, map[string]any{"source": doc.Source, "valid": len(ps.Errors()) == 0, "problems": ps}); err != nil {
					return err
				}
			} else {
				for _, pr := range ps {
					fmt.Fprintf(e.stdout, "%s: %s: %s\n", doc.Source, pr.Severity, pr)
				}
			}
			if n := len(ps.Errors()); n > 0 {
				if asJSON {
					return &ExitError{Code: 1}
				}
				return &ExitError{Code: 1, Err: fmt.Errorf("%s: %d error(s), %d warning(s)", doc.Source, n, len(ps.Warnings()))}
			}
			if !asJSON {
				fmt.Fprintf(e.stdout, "%s: valid (%d warning(s))\n", doc.Source, len(ps.Warnings()))
			}
			return nil
		},
	}
	intentFlag(cmd, &path)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print problems as JSON")
	return cmd
}
