package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

// TestBypassLANLeaksCleartext reproduces the bypass-lan trap: two PEs share
// an underlay subnet, and a charon that loads Debian's bypass-lan plugin
// installs PASS policies for it, so GRE (with OSPF, LDP and BGP inside)
// crosses in clear while every connection still looks loaded. verify must
// pass with the rendered config and catch the leak once bypass-lan is on.
func TestBypassLANLeaksCleartext(t *testing.T) {
	t.Parallel()
	needLab(t)
	const lab = "e2elan"
	// pe101 and pe201 on one LAN, 2001:db8:100::/64.
	c := newCLI(t)
	c.labUp(lab, intenttest.EditDefault(t,
		"name: default", "name: "+lab,
		`"2001:db8:101::2/64"`, `"2001:db8:100::2/64"`,
		`"2001:db8:201::2/64"`, `"2001:db8:100::3/64"`))
	c.verifyGreen(lab, 90*time.Second)

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
