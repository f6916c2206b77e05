// Package e2e runs the real backbone CLI against real labs: real kernels
// (this machine's, UML guests, a qemu VM), real FRR and strongSwan. The
// binary is built once; each test brings up its own lab and takes it down.
// The lab tests need root; with CI=true or BACKBONE_LAB_TESTS=1 they fail
// instead of skipping when something they need is missing.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bin is the backbone binary the tests run (built by TestMain).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "backbone-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "backbone")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/backbone").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if netboxStarted {
		exec.Command("../../scripts/netbox-server", "down").Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// required reports whether the lab tests must run (and fail rather than
// skip when something is missing).
func required() bool { return os.Getenv("BACKBONE_LAB_TESTS") == "1" || os.Getenv("CI") == "true" }

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if required() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (set BACKBONE_LAB_TESTS=1 to make this a failure)", args...)
}

// needLab skips (or fails) when the machine cannot run labs.
func needLab(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "the lab needs root")
	}
	for _, tool := range append([]string{"vtysh", "charon-systemd", "swanctl", "ping", "tcpdump", "nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil && !fileExists("/usr/sbin/"+tool) && !fileExists("/usr/bin/"+tool) && !fileExists("/usr/lib/frr/"+tool) {
			skipOrFail(t, "%s is not installed: run scripts/setup", tool)
		}
	}
}

type cli struct {
	t   *testing.T
	env []string
}

// newCLI returns a CLI whose secrets stay in a test directory.
func newCLI(t *testing.T) *cli {
	return &cli{t: t, env: []string{"BACKBONE_SECRETS_DIR=" + t.TempDir()}}
}

// with returns the same CLI reporting to t (a subtest must fail itself,
// never its parent).
func (c *cli) with(t *testing.T) *cli { return &cli{t: t, env: c.env} }

func (c *cli) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	return cmd
}

func (c *cli) run(args ...string) (string, string, error) {
	c.t.Helper()
	cmd := c.cmd(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	c.t.Logf("backbone %s (%s, err=%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err)
	return out.String(), errb.String(), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("backbone %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// labUp writes an intent, brings its lab up (taking down a leftover of a
// crashed run first, and down again at the end of the test) and returns
// the lab's state as lab up --json printed it.
func (c *cli) labUp(name string, yaml []byte, extra ...string) upState {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, yaml, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.run("lab", "down", "--name", name)
	c.t.Cleanup(func() { c.run("lab", "down", "--name", name) })
	out := c.must(append([]string{"lab", "up", "-f", path, "--json"}, extra...)...)
	var st upState
	if err := json.Unmarshal([]byte(out), &st); err != nil || !st.Ready {
		c.t.Fatalf("lab up --json: ready=%v err=%v\n%s", st.Ready, err, out)
	}
	c.t.Logf("lab %s up on %s: boot %s, first IPv4 packet %s, IPv6 %s", name, st.Backend,
		time.Duration(st.Timings.Boot), time.Duration(st.Timings.FirstIPv4), time.Duration(st.Timings.FirstIPv6))
	return st
}

type upState struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
	Ready   bool   `json:"ready"`
	Nodes   []struct {
		Name  string `json:"name"`
		Place string `json:"place"`
	} `json:"nodes"`
	Timings struct {
		Boot      int64 `json:"boot_ns"`
		FirstIPv4 int64 `json:"first_ipv4_ns"`
		FirstIPv6 int64 `json:"first_ipv6_ns"`
	} `json:"timings"`
}

// place is where a node of the lab runs (netns, uml, vm).
func (st upState) place(node string) string {
	for _, n := range st.Nodes {
		if n.Name == node {
			return n.Place
		}
	}
	return ""
}

// verifyGreen runs verify until every check passes (or wait is up).
func (c *cli) verifyGreen(lab string, wait time.Duration) report {
	c.t.Helper()
	out, errOut, err := c.run("verify", "--name", lab, "--wait", wait.String(), "--json")
	if out == "" {
		// No report at all (a crash, a hang killed): what it said instead.
		c.t.Fatalf("verify %s: no report: err=%v\nstderr:\n%s", lab, err, errOut)
	}
	rep := parseReport(c.t, out)
	if err != nil || rep.Failed != 0 {
		c.t.Fatalf("verify %s: err=%v failing=%v\n%s", lab, err, rep.failing(), errOut)
	}
	return rep
}

type report struct {
	Backend  string  `json:"backend"`
	Results  []check `json:"results"`
	Passed   int     `json:"passed"`
	Failed   int     `json:"failed"`
	Duration int64   `json:"duration_ns"`
}

// result returns the check of that name.
func (r report) result(name string) (check, bool) {
	for _, res := range r.Results {
		if res.Name == name {
			return res, true
		}
	}
	return check{}, false
}

type check = struct {
	Name     string `json:"name"`
	Pass     bool   `json:"pass"`
	Evidence string `json:"evidence"`
}

func (r report) failing() []string {
	var out []string
	for _, res := range r.Results {
		if !res.Pass {
			out = append(out, res.Name)
		}
	}
	return out
}

func parseReport(t *testing.T, out string) report {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	return r
}

// leftovers lists what of a lab still exists: namespaces, its state
// directory, and processes that name it (daemons, UML kernels, qemu).
func leftovers(lab string) []string {
	var out []string
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "bb-"+lab+".") {
			out = append(out, "namespace "+e.Name())
		}
	}
	if fileExists("/run/backbone/" + lab) {
		out = append(out, "/run/backbone/"+lab)
	}
	procs, _ := exec.Command("pgrep", "-af", "/run/backbone/"+lab+"/").Output()
	for _, p := range strings.Split(strings.TrimSpace(string(procs)), "\n") {
		if p != "" {
			out = append(out, "process "+p)
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// frrNormalForm fails the test unless frr-reload.py finds nothing to
// change between the router's running FRR and the rendered file at path
// (on the router): the file is in FRR's own normal form, so a deployed
// change reloads exactly the lines that changed.
func (c *cli) frrNormalForm(lab, router, path string) {
	c.t.Helper()
	out := c.must("lab", "exec", "--name", lab, router, "--", "/usr/lib/frr/frr-reload.py", "--test", path)
	var changes []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Lines To") && !strings.HasPrefix(l, "=====") && !strings.HasPrefix(l, "frr version") {
			changes = append(changes, l)
		}
	}
	if len(changes) > 0 {
		c.t.Errorf("%s: frr-reload.py would change %q: the rendered frr.conf is not in FRR's normal form", router, changes)
	}
}

// startUntil starts the command (its stdout into stdout, if not nil) and
// returns once its standard error says want; after 60 s without it, the
// command is killed and the test fails saying what never happened.
func (c *cli) startUntil(cmd *exec.Cmd, stdout io.Writer, want, never string) *watch {
	c.t.Helper()
	stderr := &watch{want: want, seen: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-stderr.seen:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		c.t.Fatalf("%s:\n%s", never, stderr.String())
	}
	return stderr
}
