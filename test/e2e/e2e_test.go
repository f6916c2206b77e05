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

	t.Run("verify passes", func(t *testing.T) {
		out, errOut, err := c.run("verify", "--name", labName, "--wait", "90s", "--json")
		rep := parseReport(t, out)
		if err != nil || rep.Failed != 0 {
			t.Fatalf("verify: err=%v failed=%v\n%s", err, rep.failing(), errOut)
		}
		t.Logf("verify: %d checks passed in %.1fs", rep.Passed, float64(rep.Duration)/1e9)
	})

	// Each fault must turn exactly the expected checks red; the lab is
	// repaired (and verified green) before the next one.
	faults := []struct {
		name    string
		inject  [][]string // each: node, argv...
		restore [][]string
		want    []string // substrings of check names that must fail
		may     []string // substrings of check names that may fail too; nothing else may
	}{
		{
			name:    "wrong route target on pe101",
			inject:  [][]string{{"pe101", "vtysh", "-c", "configure terminal", "-c", "router bgp 65000 vrf cust-a", "-c", "address-family ipv4 unicast", "-c", "rt vpn import 65000:999", "-c", "exit-address-family", "-c", "address-family ipv6 unicast", "-c", "rt vpn import 65000:999"}},
			restore: [][]string{{"pe101", "vtysh", "-c", "configure terminal", "-c", "router bgp 65000 vrf cust-a", "-c", "address-family ipv4 unicast", "-c", "rt vpn import 65000:100", "-c", "exit-address-family", "-c", "address-family ipv6 unicast", "-c", "rt vpn import 65000:100"}},
			want:    []string{"vrf cust-a on pe101", "reach ce1 -> ce2", "reach ce2 -> ce1"},
		},
		{
			name:    "tunnel MTU too high on one side",
			inject:  [][]string{{"pe101", "ip", "link", "set", "gre-pe201", "mtu", "1476"}},
			restore: [][]string{{"pe101", "ip", "link", "set", "gre-pe201", "mtu", "1422"}},
			want:    []string{"tunnel mtu pe101 gre-pe201"},
			// OSPF compares interface MTUs in its database exchange: the
			// adjacency over that link may drop, which is the point.
			may: []string{"ospfv2 pe101 gre-pe201", "ospfv2 pe201 gre-pe101", "ospfv3 pe101 gre-pe201", "ospfv3 pe201 gre-pe101", "session pe101 -> pe201", "session pe201 -> pe101"},
		},
		{
			name:    "LDP disabled on one link",
			inject:  [][]string{{"pe101", "vtysh", "-c", "configure terminal", "-c", "mpls ldp", "-c", "address-family ipv4", "-c", "no interface gre-pe201", "-c", "exit-address-family", "-c", "address-family ipv6", "-c", "no interface gre-pe201"}},
			restore: [][]string{{"pe101", "vtysh", "-c", "configure terminal", "-c", "mpls ldp", "-c", "address-family ipv4", "-c", "interface gre-pe201", "-c", "exit", "-c", "exit-address-family", "-c", "address-family ipv6", "-c", "interface gre-pe201"}},
			want:    []string{"session pe101 -> pe201", "session pe201 -> pe101", "LSPs ipv6 from pe101", "LSPs ipv6 from pe201"},
			// OSPFv2 has LDP-IGP sync and routes IPv4 around the link;
			// OSPFv3 has none, so IPv6 keeps the unlabelled link and the
			// IPv6 VPN routes over it cannot resolve: a real gap.
			may: []string{"LSPs ipv4", "vrf cust-a on pe101: fd00", "vrf cust-a on pe201: fd00", "reach ce1 -> ce2 ipv6", "reach ce2 -> ce1 ipv6", "mtu 1388"},
		},
		{
			// Stopping charon removes its policies, trap or not: GRE then
			// crosses the underlay in clear, and only a capture shows it.
			name:   "charon stopped on pe101 and pe201",
			inject: [][]string{{"pe101", "sh", "-c", "kill $(cat /run/backbone/" + labName + "/run/nodes/pe101/charon.pid)"}, {"pe201", "sh", "-c", "kill $(cat /run/backbone/" + labName + "/run/nodes/pe201/charon.pid)"}},
			want:   []string{"underlay capture", "ipsec pe101 -> pe201", "ipsec pe201 -> pe101", "ipsec pe101 -> pe102", "ipsec pe201 -> pe202", "ipsec pe102 -> pe101", "ipsec pe202 -> pe201"},
			// pe102 and pe202 still require ESP from pe101 and pe201: the
			// links to them break, so routing fails around them.
			may: []string{"ospfv2 ", "ospfv3 ", "loopbacks reachable", "session ", "LSPs ", "VPNv", "vrf cust-a", "reach ", "mtu 1388"},
		},
	}
	for _, f := range faults {
		t.Run("verify catches "+f.name, func(t *testing.T) {
			for _, cmd := range f.inject {
				c.must(append([]string{"lab", "exec", "--name", labName, cmd[0], "--"}, cmd[1:]...)...)
			}
			// Give the control plane a moment to react to the fault.
			time.Sleep(8 * time.Second)
			out, _, _ := c.run("verify", "--name", labName, "--json", "--capture", "2s")
			rep := parseReport(t, out)
			failing := rep.failing()
			for _, w := range f.want {
				found := false
				for _, name := range failing {
					if strings.Contains(name, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("expected a failing check matching %q; failing: %v", w, failing)
				}
			}
			for _, name := range failing {
				expected := false
				for _, w := range append(f.want, f.may...) {
					if strings.Contains(name, w) {
						expected = true
					}
				}
				if !expected {
					t.Errorf("unexpected failing check %q", name)
				}
			}
			t.Logf("failing checks: %v", failing)
			if len(f.restore) == 0 {
				return
			}
			for _, cmd := range f.restore {
				c.must(append([]string{"lab", "exec", "--name", labName, cmd[0], "--"}, cmd[1:]...)...)
			}
			out, errOut, err := c.run("verify", "--name", labName, "--wait", "90s", "--json")
			if rep := parseReport(t, out); err != nil || rep.Failed != 0 {
				t.Fatalf("lab did not recover after restoring: %v\n%s", rep.failing(), errOut)
			}
		})
	}

	t.Run("down leaves nothing behind", func(t *testing.T) {
		c.must("lab", "down", "--name", labName)
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "bb-"+labName+"-") {
				t.Errorf("namespace %s left behind", e.Name())
			}
		}
		for _, p := range []string{"/run/backbone/" + labName} {
			if fileExists(p) {
				t.Errorf("%s left behind", p)
			}
		}
		if out, _ := exec.Command("pgrep", "-f", "/run/backbone/"+labName).Output(); len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("processes left behind: %s", out)
		}
	})
}

type report struct {
	Results []struct {
		Name     string `json:"name"`
		Pass     bool   `json:"pass"`
		Evidence string `json:"evidence"`
	} `json:"results"`
	Passed   int   `json:"passed"`
	Failed   int   `json:"failed"`
	Duration int64 `json:"duration_ns"`
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

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
