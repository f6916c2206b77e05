package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ansibleEnv installs the pinned Ansible (scripts/ansible-setup, cached)
// and returns the environment that runs it.
func ansibleEnv(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("../../scripts/ansible-setup")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		skipOrFail(t, "scripts/ansible-setup: %v", err)
	}
	env := []string{"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0"}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if !ok {
			continue
		}
		env = append(env, k+"="+strings.ReplaceAll(v, "$PATH", os.Getenv("PATH")))
	}
	return env
}

// ansibleBin is a program of the Ansible environment: exec resolves names
// with this process's PATH, not the command's.
func ansibleBin(env []string, name string) string {
	for _, e := range env {
		if path, ok := strings.CutPrefix(e, "PATH="); ok {
			if p, err := exec.LookPath(filepath.Join(strings.Split(path, ":")[0], name)); err == nil {
				return p
			}
		}
	}
	return name
}

// recap is one host's line of a PLAY RECAP.
type recap struct{ ok, changed, unreachable, failed int }

var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

func parseRecap(out string) map[string]recap {
	m := map[string]recap{}
	for _, f := range recapLine.FindAllStringSubmatch(out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(f[i]); return v }
		m[f[1]] = recap{n(2), n(3), n(4), n(5)}
	}
	return m
}

// TestAnsible deploys the default backbone with ansible-playbook onto a
// bare lab (the hosts of TestDeployBare: NetworkManager and networkd,
// over real SSH), from the project `backbone ansible` writes:
// ansible-lint passes on it; the first run from bare hosts makes verify
// green and leaves exactly the files backbone deploy would install (deploy
// --diff finds nothing, the secrets Ansible templated included); a second
// run changes nothing; a cost change through the dynamic inventory shows
// in --check --diff as exactly the two cost lines on the link's two
// routers, and applied under probes it loses no more than backbone deploy
// does; and the same playbook runs from NetBox's inventory (nb_inventory).
// It runs alone: its probe figures must not be those of a busy machine.
func TestAnsible(t *testing.T) {
	needLab(t)
	const lab = "ansible"
	c := newCLI(t)
	env := append(ansibleEnv(t), c.env...)
	base, cost := bareIntents(t, lab)
	dir := t.TempDir()
	intentFile, costFile := filepath.Join(dir, lab+".yaml"), filepath.Join(dir, "cost.yaml")
	writeFile(t, intentFile, base)
	writeFile(t, costFile, cost)
	st := c.labUp(lab, base, "--bare")
	if st.Backend != "uml" {
		skipOrFail(t, "a bare lab needs the uml backend, this machine's is %s", st.Backend)
	}

	proj := filepath.Join(dir, "site")
	c.must("ansible", "-f", intentFile, "-o", proj)
	ansible := func(args ...string) (string, error) {
		t.Helper()
		// The controller at the lowest CPU priority: on this 2-core machine
		// it shares the CPUs with the routers it configures, which a real
		// controller does not.
		cmd := exec.Command("nice", append([]string{"-n", "19", ansibleBin(env, args[0])}, args[1:]...)...)
		cmd.Dir, cmd.Env = proj, append(os.Environ(), env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("%s (%s, err=%v)", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond), err)
		return string(out), err
	}
	if out, err := ansible("ansible-lint", "--offline", "--nocolor"); err != nil {
		t.Errorf("ansible-lint on the generated project: %v\n%s", err, out)
	}
	if out, err := ansible("ansible-playbook", "--version"); err == nil {
		t.Logf("%s", strings.SplitN(out, "\n", 2)[0])
	}

	// From bare hosts, all routers at once.
	start := time.Now()
	out, err := ansible("ansible-playbook", "site.yml", "-e", "backbone_serial=100%")
	first := parseRecap(out)
	if err != nil || len(first) != 4 {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	t.Logf("first run from bare hosts: %s", time.Since(start).Round(100*time.Millisecond))
	rep := c.verifyGreen(lab, 60*time.Second)
	t.Logf("verify after the first run: %d passed", rep.Passed)
	// What Ansible installed is byte for byte what backbone deploy would
	// (modes and owners too): deploy --diff finds nothing.
	if out, errOut, err := c.run("deploy", "-f", intentFile, "--diff"); err != nil {
		t.Errorf("deploy --diff after the Ansible run: %v (exit 2: files differ)\n%s\n%s", err, out, errOut)
	}

	// A second run changes nothing.
	start = time.Now()
	out, err = ansible("ansible-playbook", "site.yml")
	for h, r := range parseRecap(out) {
		if r.changed != 0 || r.failed != 0 {
			t.Errorf("second run: %s changed=%d failed=%d", h, r.changed, r.failed)
		}
	}
	if err != nil {
		t.Errorf("second run: %v\n%s", err, out)
	}
	t.Logf("no-op run: %s", time.Since(start).Round(100*time.Millisecond))

	// A cost change, through the dynamic inventory: --check --diff shows
	// exactly the two cost lines of frr.conf on pe101 and pe201.
	costInv := filepath.Join(dir, "cost-inventory.sh")
	writeFile(t, costInv, []byte("#!/bin/sh\nexec "+bin+" ansible inventory -f "+costFile+" \"$@\"\n"))
	os.Chmod(costInv, 0o755)
	out, err = ansible("ansible-playbook", "-i", costInv, "site.yml", "--check", "--diff")
	if err != nil {
		t.Fatalf("--check --diff: %v\n%s", err, out)
	}
	var plus, minus []string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "+++ ") || strings.HasPrefix(l, "--- "):
			if !strings.HasSuffix(l, "/etc/frr/frr.conf") {
				t.Errorf("--check --diff changes another file: %s", l)
			}
		case strings.HasPrefix(l, "+"):
			plus = append(plus, strings.TrimSpace(l[1:]))
		case strings.HasPrefix(l, "-"):
			minus = append(minus, strings.TrimSpace(l[1:]))
		}
	}
	if strings.Join(plus, "|") != "ip ospf cost 20|ipv6 ospf6 cost 20|ip ospf cost 20|ipv6 ospf6 cost 20" ||
		strings.Join(minus, "|") != "ip ospf cost 10|ipv6 ospf6 cost 10|ip ospf cost 10|ipv6 ospf6 cost 10" {
		t.Errorf("--check --diff adds %q and removes %q, want the two cost lines on two routers:\n%s", plus, minus, out)
	}
	for h, r := range parseRecap(out) {
		if want := h == "pe101" || h == "pe201"; (r.changed > 0) != want {
			t.Errorf("--check: %s changed=%d", h, r.changed)
		}
	}

	// Applied, one router at a time, under probes.
	var applied map[string]recap
	for _, s := range c.observeFor(lab, 60*time.Second, func() {
		start := time.Now()
		defer func() { t.Logf("the cost change with Ansible: %s", time.Since(start).Round(100*time.Millisecond)) }()
		out, err := ansible("ansible-playbook", "-i", costInv, "site.yml")
		if applied = parseRecap(out); err != nil {
			t.Errorf("the cost change: %v\n%s", err, out)
		}
	}, "--baseline", "1s", "--interval", "10ms") {
		lost := s.Fault.Lost + s.Recovery.Lost
		if gap := max(s.Fault.Longest, s.Recovery.Longest); s.Site && gap > 1000 {
			t.Errorf("%s: a gap of %.1f ms during the cost change (bound 1000 ms, as for backbone deploy)", s.Name, gap)
		}
		t.Logf("cost change with Ansible: %s lost %d probes, longest gap %.1f ms", s.Name, lost, max(s.Fault.Longest, s.Recovery.Longest))
	}
	for h, r := range applied {
		if want := h == "pe101" || h == "pe201"; (r.changed > 0) != want || r.failed > 0 {
			t.Errorf("the cost change: %s changed=%d failed=%d", h, r.changed, r.failed)
		}
	}
	if out := c.must("lab", "exec", "--name", lab, "pe101", "--", "vtysh", "-c", "show running-config"); !strings.Contains(out, "ip ospf cost 20") {
		t.Errorf("pe101 does not run the new cost")
	}
	c.verifyGreen(lab, 60*time.Second)

	// From NetBox: the routers and their addresses come from nb_inventory,
	// the intent from NetBox too; nothing is left to change.
	url, token := netboxServer(t)
	c.env = append(c.env, "NETBOX_URL="+url, "NETBOX_TOKEN="+token)
	env = append(env, "NETBOX_URL="+url, "NETBOX_TOKEN="+token, "NETBOX_API="+url)
	c.must("netbox", "push", "-f", costFile)
	t.Cleanup(func() { c.run("netbox", "delete", "--name", lab) })
	proj = filepath.Join(dir, "netbox")
	c.must("ansible", "-f", "netbox://"+lab, "--no-ansible-host", "-o", proj)
	if out, err := ansible("ansible-inventory", "-i", "netbox.yml", "--host", "pe101"); err != nil || !strings.Contains(out, `"ansible_host": "2001:db8:101::2"`) {
		t.Errorf("nb_inventory --host pe101: %v\n%s", err, out)
	}
	out, err = ansible("ansible-playbook", "-i", "inventory.sh", "-i", "netbox.yml", "site.yml")
	nb := parseRecap(out)
	if err != nil || len(nb) != 4 {
		t.Fatalf("the playbook with NetBox's inventory: %v\n%s", err, out)
	}
	for h, r := range nb {
		if r.changed != 0 || r.failed != 0 {
			t.Errorf("with NetBox's inventory: %s changed=%d failed=%d", h, r.changed, r.failed)
		}
	}
}
