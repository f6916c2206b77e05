package cli_test

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/backbone-net/backbone/internal/cli"
	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

var update = flag.Bool("update", false, "rewrite golden files and the cmp sections of scripts")

// TestMain lets scripts run the real CLI: "exec backbone ..." re-executes
// this test binary, which runs cli.Execute like cmd/backbone does.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"backbone": func() {
			code, err := cli.Execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "backbone:", err)
			}
			os.Exit(code)
		},
	})
}

// TestScripts runs testdata/script/*.txtar. Secrets go to the script's
// $WORK, never to the user's state directory.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		UpdateScripts:       *update,
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("BACKBONE_SECRETS_DIR", env.WorkDir)
			env.Setenv("XDG_STATE_HOME", filepath.Join(env.WorkDir, "xdg-must-not-be-used"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mode":   cmdMode,
			"cmpdir": cmdCmpdir,
		},
	})
}

// mode FILE PERM checks a file's permission bits, e.g. mode secrets 0600.
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode FILE PERM")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := fi.Mode().Perm()
	if (got == fs.FileMode(want)) == neg {
		ts.Fatalf("%s has mode %04o (want %s%04o)", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// cmpdir DIR1 DIR2 checks that two trees hold the same files, byte for byte.
func cmdCmpdir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cmpdir DIR1 DIR2")
	}
	read := func(dir string) map[string][]byte {
		m := map[string][]byte{}
		root := ts.MkAbs(dir)
		ts.Check(filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			rel, _ := filepath.Rel(root, path)
			m[rel] = data
			return err
		}))
		return m
	}
	a, b := read(args[0]), read(args[1])
	for k, v := range a {
		if w, ok := b[k]; !ok {
			ts.Fatalf("%s only in %s", k, args[0])
		} else if !bytes.Equal(v, w) {
			ts.Fatalf("%s differs between %s and %s", k, args[0], args[1])
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ts.Fatalf("%s only in %s", k, args[1])
		}
	}
	ts.Logf("%d files identical", len(a))
}

func run(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := cli.Execute(args, bytes.NewReader(stdin), &out, &errb)
	if err != nil {
		fmt.Fprintln(&errb, "backbone:", err)
	}
	return code, out.String(), errb.String()
}

// TestPlanGolden pins the human and JSON plan of the default backbone.
// `go test ./internal/cli -update` rewrites testdata/golden/plan.*.
func TestPlanGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"plan.txt", []string{"plan"}},
		{"plan.json", []string{"plan", "--json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			code, stdout, stderr := run(t, nil, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			path := filepath.Join("testdata", "golden", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/cli -update)", err)
			}
			if stdout != string(want) {
				t.Errorf("backbone %s differs from %s (run go test ./internal/cli -update and review the diff)\n--- got ---\n%s", strings.Join(tc.args, " "), path, stdout)
			}
		})
	}
}

// Exit codes: 0 with warnings, 1 for an invalid intent, 2 for usage.
func TestExitCodes(t *testing.T) {
	broken := intenttest.EditDefault(t, "between: [pe201, pe202]", "between: [pe201, pe299]")
	tunnel := intenttest.EditDefault(t, "  mode: transport\n", "  mode: tunnel\n")
	t.Setenv("BACKBONE_SECRETS_DIR", t.TempDir())
	out := t.TempDir()
	for _, tc := range []struct {
		stdin []byte
		args  []string
		code  int
	}{
		{nil, []string{"validate"}, 0},
		{tunnel, []string{"validate", "-f", "-"}, 0},
		{tunnel, []string{"plan", "-f", "-"}, 0},
		{broken, []string{"validate", "-f", "-"}, 1},
		{broken, []string{"validate", "--json", "-f", "-"}, 1},
		{broken, []string{"plan", "-f", "-"}, 1},
		{broken, []string{"render", "-f", "-", "-o", filepath.Join(out, "x")}, 1},
		{[]byte("name: [\n"), []string{"validate", "-f", "-"}, 1},
		{nil, []string{"render"}, 2},
		{nil, []string{"validate", "-f", filepath.Join(out, "missing.yaml")}, 1},
	} {
		code, _, stderr := run(t, tc.stdin, tc.args...)
		if code != tc.code {
			t.Errorf("backbone %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "x")); err == nil {
		t.Errorf("render of an invalid intent created its output directory")
	}
}

// The embedded default round-trips through the CLI unchanged.
func TestIntentDefault(t *testing.T) {
	code, stdout, _ := run(t, nil, "intent", "default")
	if code != 0 || stdout != string(intent.DefaultYAML()) {
		t.Errorf("intent default: exit %d, output differs from the embedded default", code)
	}
}
