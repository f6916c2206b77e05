package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

// The backup-link topology: a high-cost link across the ring, whose LDP
// session follows the IGP through a third router. It must come up all
// green on every backend: GTSM is off for that neighbor.

// TestBackupLink runs it on the machine's backend (UML here).
func TestBackupLink(t *testing.T) {
	t.Parallel()
	needLab(t)
	c := newCLI(t)
	y := intenttest.BackupLink(t)
	c.labUp("backup", y)
	rep := c.verifyGreen("backup", 90*time.Second)
	for _, r := range rep.Results {
		if strings.Contains(r.Name, "session pe101 -> pe202") || strings.Contains(r.Name, "session pe202 -> pe101") {
			t.Logf("%s: %s", r.Name, r.Evidence)
		}
	}
}

// TestQemuSmoke keeps the software-emulation fallback from rotting: the
// smallest backup-link topology (three PEs) in a qemu VM (TCG), reached
// the same way as on every backend (exec, status, verify, chaos, down).
func TestQemuSmoke(t *testing.T) {
	t.Parallel()
	needLab(t, "qemu-system-x86_64")
	const lab = "tcgsmoke"
	c := newCLI(t)
	y := intenttest.MustEdit(t, intenttest.Triangle(t), "name: triangle", "name: "+lab)
	st := c.labUp(lab, y, "--backend", "tcg")
	if st.Backend != "tcg" {
		t.Fatalf("lab up --backend tcg: backend %q", st.Backend)
	}
	for _, n := range st.Nodes {
		if n.Place != "vm" {
			t.Errorf("node %s runs in %q, want the VM", n.Name, n.Place)
		}
	}
	out := c.must("lab", "exec", "--name", lab, "ce1", "--", "ping", "-c2", "-i0.3", "-W3", "fd00:2::1")
	if !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping from ce1 in the VM:\n%s", out)
	}
	var s struct {
		Backend string `json:"backend"`
		Healthy bool   `json:"healthy"`
	}
	if err := json.Unmarshal([]byte(c.must("lab", "status", "--name", lab, "--json")), &s); err != nil || s.Backend != "tcg" || !s.Healthy {
		t.Errorf("status: %+v %v", s, err)
	}
	c.verifyGreen(lab, 120*time.Second)
	out, errOut, err := c.run("chaos", "link-shut", "pe102-pe201", "--name", lab, "--hold", "1s", "--baseline", "1s", "--settle", "1s", "--json")
	var rep chaosReport
	if jerr := json.Unmarshal([]byte(out), &rep); err != nil || jerr != nil || len(rep.Runs) != 1 || !rep.Runs[0].Recovered || rep.Backend != "tcg" {
		t.Errorf("chaos in the VM: err=%v json=%v\n%s\n%s", err, jerr, out, errOut)
	} else {
		t.Logf("chaos in the VM: site probes left %.1f ms apart on average", rep.Runs[0].Achieved.Mean)
	}
	c.must("lab", "down", "--name", lab)
	if left := leftovers(lab); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
