package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/netbox"
)

// netboxStarted records that a test started the NetBox server.
var netboxStarted bool

// netboxServer starts the local NetBox test server (scripts/netbox-server:
// PostgreSQL, Redis and NetBox on 127.0.0.1, cached between runs) unless
// NETBOX_URL and NETBOX_TOKEN name one, and returns its URL and token.
// A server the tests started is stopped after the last one.
func netboxServer(t *testing.T) (string, string) {
	t.Helper()
	if u, tok := os.Getenv("NETBOX_URL"), os.Getenv("NETBOX_TOKEN"); u != "" && tok != "" {
		return u, tok
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "the NetBox test server needs root (scripts/netbox-server)")
	}
	script := "../../scripts/netbox-server"
	running := exec.Command(script, "env").Run() == nil
	start := time.Now()
	cmd := exec.Command(script, "up")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		skipOrFail(t, "scripts/netbox-server up: %v", err)
	}
	t.Logf("NetBox test server up in %s", time.Since(start).Round(100*time.Millisecond))
	if !running {
		netboxStarted = true // TestMain stops it after the last test
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	if vars["NETBOX_URL"] == "" || vars["NETBOX_TOKEN"] == "" {
		t.Fatalf("scripts/netbox-server up printed no NETBOX_URL/NETBOX_TOKEN:\n%s", out)
	}
	return vars["NETBOX_URL"], vars["NETBOX_TOKEN"]
}

// TestNetBoxClient checks the client against the live server: its
// version, a bad token's exact answer, and that a filter NetBox does not
// know is caught rather than returning everything.
func TestNetBoxClient(t *testing.T) {
	url, token := netboxServer(t)
	ctx := context.Background()
	c, err := netbox.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.NetBox, "4.7.") {
		t.Errorf("NetBox %s, want 4.7.x", st.NetBox)
	}
	t.Logf("NetBox %s (Django %s, Python %s)", st.NetBox, st.Django, st.Python)

	bad, _ := netbox.New(url, "0000000000000000000000000000000000000000")
	_, err = bad.Status(ctx)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "check the token") {
		t.Errorf("a wrong token: %v", err)
	}
	if bad.Requests != 1 {
		t.Errorf("a 403 was tried %d times, want once", bad.Requests)
	}
	// Every object type comes back (163 in NetBox 4.7.3).
	objs, err := c.List(ctx, "/api/core/object-types/", nil)
	if err != nil || len(objs) < 100 {
		t.Errorf("content types: %d, %v", len(objs), err)
	}
}

// TestNetBoxRoundTrip pushes the default backbone into a live NetBox,
// pushes again (nothing changes), pulls it back (the same plan), edits a
// link's cost in NetBox (the pulled plan changes exactly there), and
// brings the lab up from NetBox and verifies it.
func TestNetBoxRoundTrip(t *testing.T) {
	url, token := netboxServer(t)
	needLab(t)
	const name = "nbrt"
	c := newCLI(t)
	c.env = append(c.env, "NETBOX_URL="+url, "NETBOX_TOKEN="+token)
	dir := t.TempDir()
	orig := filepath.Join(dir, name+".yaml")
	writeFile(t, orig, intenttest.EditDefault(t, "name: default", "name: "+name))

	type pushReport struct {
		Objects  int   `json:"objects"`
		Requests int   `json:"requests"`
		Duration int64 `json:"duration_ns"`
		Changes  []struct {
			Action, Kind, Key string
		} `json:"changes"`
	}
	push := func(args ...string) (pushReport, error) {
		out, errOut, err := c.run(append([]string{"netbox", "push", "-f", orig, "--json"}, args...)...)
		var r pushReport
		if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
			t.Fatalf("netbox push --json: %v\n%s\n%s", jerr, out, errOut)
		}
		return r, err
	}
	first, err := push()
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	t.Logf("first push: %d changes of %d objects, %d requests, %s", len(first.Changes), first.Objects, first.Requests, time.Duration(first.Duration).Round(10*time.Millisecond))
	second, err := push()
	if err != nil || len(second.Changes) != 0 {
		t.Errorf("a second push changed %d objects (err %v): %+v", len(second.Changes), err, second.Changes)
	}
	t.Logf("no-op push: %d requests, %s", second.Requests, time.Duration(second.Duration).Round(10*time.Millisecond))
	if _, err := push("--dry-run"); err != nil {
		t.Errorf("push --dry-run with nothing to change: %v, want exit 0", err)
	}

	planOf := func(f string) map[string]any {
		out := c.must("plan", "-f", f, "--json")
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	pulled := filepath.Join(dir, "pulled.yaml")
	start := time.Now()
	c.must("netbox", "pull", "--name", name, "-o", pulled)
	t.Logf("pull: %s", time.Since(start).Round(10*time.Millisecond))
	if d := cmp.Diff(planOf(orig), planOf(pulled)); d != "" {
		data, _ := os.ReadFile(pulled)
		t.Errorf("the plan of the pulled intent differs (-pushed +pulled):\n%s\npulled:\n%s", d, data)
	}
	if d := cmp.Diff(planOf(orig), planOf("netbox://"+name)); d != "" {
		t.Errorf("-f netbox://%s plans differently (-pushed +netbox):\n%s", name, d)
	}

	// An operator changes a link's OSPF cost in NetBox.
	nb, err := netbox.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tunnels, err := nb.List(ctx, "/api/vpn/tunnels/", map[string][]string{"name": {"pe101-pe201"}})
	if err != nil || len(tunnels) != 1 {
		t.Fatalf("tunnel pe101-pe201: %d, %v", len(tunnels), err)
	}
	var tun struct{ ID int }
	json.Unmarshal(tunnels[0], &tun)
	if err := nb.Do(ctx, "PATCH", fmt.Sprintf("/api/vpn/tunnels/%d/", tun.ID), nil, map[string]any{"custom_fields": map[string]any{"bb_cost": 30}}, nil); err != nil {
		t.Fatal(err)
	}
	before, after := planOf(orig), planOf("netbox://"+name)
	d := cmp.Diff(before, after)
	if !strings.Contains(d, "30") || strings.Count(d, "\n-") != 2 {
		t.Errorf("after a cost change in NetBox, the plan differs by (-before +after):\n%s\nwant exactly the cost on both ends of pe101-pe201", d)
	} else {
		t.Logf("the plan after the NetBox edit:\n%s", d)
	}
	// The next push from the file puts it back: one update.
	back, err := push()
	if err != nil || len(back.Changes) != 1 || back.Changes[0].Action != "update" || back.Changes[0].Key != "pe101-pe201" {
		t.Errorf("push after the NetBox edit: %v %+v, want one update of tunnel pe101-pe201", err, back.Changes)
	}

	// A prefix removed from the intent: --dry-run says so (exit 2), the
	// push deletes exactly that prefix; putting it back creates it.
	smaller := filepath.Join(dir, "smaller.yaml")
	writeFile(t, smaller, intenttest.MustEdit(t, intenttest.EditDefault(t, "name: default", "name: "+name),
		`prefixes: [192.168.2.0/24, "fd00:2::/64"]`, `prefixes: [192.168.2.0/24]`))
	if _, _, err := c.run("netbox", "push", "-f", smaller, "--dry-run"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("push --dry-run of a change: %v, want exit status 2", err)
	}
	out, errOut, err := c.run("netbox", "push", "-f", smaller, "--json")
	var del pushReport
	json.Unmarshal([]byte(out), &del)
	if err != nil || len(del.Changes) != 1 || del.Changes[0].Action != "delete" || del.Changes[0].Key != "fd00:2::/64|cust-a" {
		t.Errorf("push without a prefix: %v %+v\n%s", err, del.Changes, errOut)
	}
	if again, err := push(); err != nil || len(again.Changes) != 1 || again.Changes[0].Action != "create" {
		t.Errorf("push with the prefix again: %v %+v", err, again.Changes)
	}

	// The lab from NetBox.
	c.run("lab", "down", "--name", name)
	t.Cleanup(func() { c.run("lab", "down", "--name", name) })
	c.must("lab", "up", "-f", "netbox://"+name)
	rep := c.verifyGreen(name, 60*time.Second)
	t.Logf("lab up -f netbox://%s: verify %d passed", name, rep.Passed)
}
