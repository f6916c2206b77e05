package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

// TestDownAfterKill kills `lab up` with SIGKILL while the routers' daemons
// start: `lab down` must then remove everything, and return only once
// every process it stopped is gone. (On a backend without guest kernels
// there is no "booted" line: the kill then comes at the timeout.)
func TestDownAfterKill(t *testing.T) {
	t.Parallel()
	needLab(t)
	const lab = "e2ekill"
	c := newCLI(t)
	path := t.TempDir() + "/kill.yaml"
	writeFile(t, path, intenttest.EditDefault(t, "name: default", "name: "+lab))
	c.run("lab", "down", "--name", lab)
	t.Cleanup(func() { c.run("lab", "down", "--name", lab) })
	cmd := c.cmd("lab", "up", "-f", path)
	// A router printed "booted": its daemons start right after.
	c.startUntil(cmd, nil, " booted in ", "lab up never reached its daemons")
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	out := c.must("lab", "down", "--name", lab)
	if !strings.Contains(out, "is down") {
		t.Errorf("lab down: %s", out)
	}
	// Right after down returns, not a moment later.
	if left := leftovers(lab); len(left) > 0 {
		t.Errorf("lab down returned with %v still there", left)
	}
}
