package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

// TestBackupLinkAndSharedLAN runs two hard cases in one lab on the
// machine's backend (UML here):
//   - a high-cost backup link across the ring (pe101-pe202), whose LDP
//     session follows the IGP through a third router: it must come up,
//     GTSM being off for that neighbor;
//   - pe101 and pe201 on one underlay LAN: all green as rendered, and once
//     their charons load Debian's bypass-lan plugin, the PASS policies it
//     installs send GRE (with OSPF, LDP and BGP inside) in clear while
//     every connection still looks loaded. verify's capture must say so.
func TestBackupLinkAndSharedLAN(t *testing.T) {
	t.Parallel()
	needLab(t)
	const lab = "backup"
	c := newCLI(t)
	c.labUp(lab, intenttest.MustEdit(t, intenttest.BackupLink(t),
		`"2001:db8:101::2/64"`, `"2001:db8:100::2/64"`,
		`"2001:db8:201::2/64"`, `"2001:db8:100::3/64"`))
	rep := c.verifyGreen(lab, 90*time.Second)
	// A route reflector-less mesh, a backup link and LDP GTSM exceptions:
	// still FRR's normal form (what deploy's reloads rely on).
	for _, pe := range []string{"pe101", "pe201", "pe202", "pe102"} {
		c.frrNormalForm(lab, pe, "/run/backbone/"+lab+"/config/"+pe+"/frr.conf")
	}
	for _, r := range rep.Results {
		if strings.Contains(r.Name, "session pe101 -> pe202") || strings.Contains(r.Name, "session pe202 -> pe101") {
			t.Logf("%s: %s", r.Name, r.Evidence)
		}
	}

	// Restart charon on both PEs with bypass-lan added to the plugins.
	for _, pe := range []string{"pe101", "pe201"} {
		node := "/run/backbone/" + lab + "/run/nodes/" + pe
		conf := "/run/backbone/" + lab + "/config/" + pe
		script := strings.Join([]string{
			"set -e",
			"sed 's/^    load = random/    load = bypass-lan random/' " + conf + "/strongswan.conf > " + node + "/bypass.conf",
			"grep -q 'load = bypass-lan' " + node + "/bypass.conf",
			"pid=$(cat " + node + "/charon.pid); kill $pid",
			"while kill -0 $pid 2>/dev/null; do sleep 0.1; done",
			"rm -f " + node + "/charon.vici",
			"export STRONGSWAN_CONF=" + node + "/bypass.conf",
			"setsid /usr/sbin/charon-systemd >/dev/null 2>&1 </dev/null & echo $! > " + node + "/charon.pid",
			"while [ ! -S " + node + "/charon.vici ]; do sleep 0.1; done",
			"swanctl --load-all --noprompt --file " + conf + "/swanctl.conf >/dev/null 2>&1",
		}, "\n")
		c.must("lab", "exec", "--name", lab, pe, "--", "sh", "-c", script)
	}
	// Restarting charon renegotiates the PEs' other links: wait until only
	// the leak (and the SAs the PASS policies make unnecessary) remain.
	expected := func(name string) bool {
		return strings.HasPrefix(name, "underlay capture") ||
			strings.HasPrefix(name, "ipsec pe101 -> pe201") || strings.HasPrefix(name, "ipsec pe201 -> pe101")
	}
	var failing []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _, _ := c.run("verify", "--name", lab, "--json", "--capture", "3s")
		rep = parseReport(t, out)
		failing = rep.failing()
		settled, leak := true, false
		for _, name := range failing {
			settled = settled && expected(name)
			leak = leak || strings.HasPrefix(name, "underlay capture")
		}
		if settled && leak {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("verify did not settle on the cleartext leak alone within 90 s; failing: %v", failing)
		}
		time.Sleep(2 * time.Second)
	}
	for _, r := range rep.Results {
		if strings.HasPrefix(r.Name, "underlay capture") {
			t.Logf("capture: %s", r.Evidence)
		}
	}
}

// TestQemuSmoke keeps the software-emulation fallback from rotting: the
// smallest backup-link topology (three PEs) in a qemu VM (TCG), reached
// the same way as on every backend (exec, status, verify, down). lab up
// waits for the first packets through the probe engine chaos runs in the
// VM, so that path is covered too.
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
	c.must("lab", "down", "--name", lab)
	if left := leftovers(lab); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestJumboIPv4TunnelMode runs the variant furthest from the default: an
// IPv4 underlay with a 9000-byte MTU (UML's NICs can only boot with a
// jumbo MTU: their maximum stays 1500), ESP tunnel mode with UDP
// encapsulation, CBC proposals, default OSPF timers.
func TestJumboIPv4TunnelMode(t *testing.T) {
	t.Parallel()
	needLab(t)
	var y []byte
	for _, v := range intenttest.Variants(t) {
		if v.Name == "ipv4-underlay-tunnel-cbc" {
			y = intenttest.MustEdit(t, v.YAML, "name: default", "name: jumbo")
		}
	}
	c := newCLI(t)
	c.labUp("jumbo", y)
	rep := c.verifyGreen("jumbo", 90*time.Second)
	t.Logf("verify: %d checks passed", rep.Passed)
}
