package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent"
)

// TestBypassLANLeaksCleartext reproduces the bypass-lan trap: two PEs share
// an underlay subnet, and a charon that loads Debian's bypass-lan plugin
// installs PASS policies for it, so GRE (with OSPF, LDP and BGP inside)
// crosses in clear while every connection still looks loaded. verify must
// pass with the rendered config and catch the leak once bypass-lan is on.
func TestBypassLANLeaksCleartext(t *testing.T) {
	const lab = "e2elan"
	if os.Geteuid() != 0 {
		skipOrFail(t, "the lab needs root")
	}
	if _, err := exec.LookPath("charon-systemd"); err != nil && !fileExists("/usr/sbin/charon-systemd") {
		skipOrFail(t, "charon-systemd is not installed: run scripts/setup")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "backbone")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/backbone").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// pe101 and pe201 on one LAN, 2001:db8:100::/64.
	yaml := string(intent.DefaultYAML())
	for _, r := range [][2]string{
		{"name: default", "name: " + lab},
		{`"2001:db8:101::2/64"`, `"2001:db8:100::2/64"`},
		{`"2001:db8:201::2/64"`, `"2001:db8:100::3/64"`},
	} {
		if !strings.Contains(yaml, r[0]) {
			t.Fatalf("default intent has no %q", r[0])
		}
		yaml = strings.Replace(yaml, r[0], r[1], 1)
	}
	path := filepath.Join(dir, "lan.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, bin: bin, env: []string{"BACKBONE_SECRETS_DIR=" + dir}}
	c.run("lab", "down", "--name", lab)
	t.Cleanup(func() { c.run("lab", "down", "--name", lab) })
	c.must("lab", "up", "-f", path)

	out, errOut, err := c.run("verify", "--name", lab, "--wait", "90s", "--json")
	if rep := parseReport(t, out); err != nil || rep.Failed != 0 {
		t.Fatalf("verify on a shared LAN without bypass-lan: %v\n%s", rep.failing(), errOut)
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
	var rep report
	var failing []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _, _ = c.run("verify", "--name", lab, "--json", "--capture", "3s")
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
		time.Sleep(3 * time.Second)
	}
	for _, r := range rep.Results {
		if strings.HasPrefix(r.Name, "underlay capture") {
			t.Logf("capture: %s", r.Evidence)
		}
	}
}
