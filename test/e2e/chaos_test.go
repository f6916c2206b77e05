package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent"
)

// chaosLab is the lab of the chaos test: its own, so that it never meets
// the lab of TestDefaultBackbone.
const chaosLab = "chaos"

// TestChaosLinkShut brings up the default backbone, shuts the tunnel
// between the two site PEs under 1 ms probe traffic, restores it, and
// checks that the blackhole was bounded and that every stream recovered.
func TestChaosLinkShut(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the lab needs root")
	}
	for _, tool := range []string{"vtysh", "charon-systemd", "swanctl", "nft"} {
		if _, err := exec.LookPath(tool); err != nil && !fileExists("/usr/sbin/"+tool) && !fileExists("/usr/bin/"+tool) {
			skipOrFail(t, "%s is not installed: run scripts/setup", tool)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "backbone")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/backbone").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	yaml := strings.Replace(string(intent.DefaultYAML()), "name: default", "name: "+chaosLab, 1)
	intentPath := filepath.Join(dir, "chaos.yaml")
	if err := os.WriteFile(intentPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, bin: bin, env: []string{"BACKBONE_SECRETS_DIR=" + dir}}
	c.run("lab", "down", "--name", chaosLab) // a leftover from a crashed run
	t.Cleanup(func() { c.run("lab", "down", "--name", chaosLab) })

	var st struct{ Mode string }
	if err := json.Unmarshal([]byte(c.must("lab", "up", "-f", intentPath, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	// BFD (300 ms x 3) detects the far side; emulation (TCG) slows every
	// reaction down several times.
	bound := 2 * time.Second
	if st.Mode == "vm" {
		bound = 5 * time.Second
	}

	out, errOut, err := c.run("chaos", "link-shut", "pe101-pe201", "--name", chaosLab, "--hold", "5s", "--json")
	var rep struct {
		Runs []struct {
			Recovered bool    `json:"recovered"`
			Note      string  `json:"note"`
			Achieved  float64 `json:"achieved_interval_ms"`
			Streams   []struct {
				Name  string `json:"name"`
				Site  bool   `json:"site"`
				Open  bool   `json:"open"`
				Fault struct {
					Longest float64 `json:"longest_ms"`
					Lost    int     `json:"lost"`
				} `json:"fault"`
				Recovery struct {
					Longest float64 `json:"longest_ms"`
				} `json:"recovery"`
			} `json:"streams"`
		} `json:"runs"`
	}
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil || len(rep.Runs) != 1 {
		t.Fatalf("chaos --json: err=%v json=%v\nstdout:\n%s\nstderr:\n%s", err, jerr, out, errOut)
	}
	run := rep.Runs[0]
	if err != nil || !run.Recovered {
		t.Errorf("chaos link-shut did not recover (err=%v): %s\n%s", err, run.Note, errOut)
	}
	sawLoss := false
	for _, s := range run.Streams {
		t.Logf("%-18s fault longest %7.1f ms (%d lost), recovery longest %7.1f ms", s.Name, s.Fault.Longest, s.Fault.Lost, s.Recovery.Longest)
		if s.Open {
			t.Errorf("%s never came back: a permanent blackhole", s.Name)
		}
		if s.Fault.Longest > float64(bound.Milliseconds()) || s.Recovery.Longest > float64(bound.Milliseconds()) {
			t.Errorf("%s: a gap longer than %s (%s mode)", s.Name, bound, st.Mode)
		}
		if s.Site && s.Fault.Lost > 0 {
			sawLoss = true
		}
	}
	// The tunnel carried the customer traffic: shutting it must show. No
	// loss at all would mean the probes did not cross the link.
	if !sawLoss {
		t.Errorf("no site stream lost anything when the link between the site PEs went down: the probes did not measure that link")
	}
	t.Logf("probes achieved one per %.1f ms per stream (%s mode)", run.Achieved, st.Mode)
}
