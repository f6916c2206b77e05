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
	c.run("netbox", "delete", "--name", name) // what an earlier run left
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
	tunnels, err := nb.List(ctx, "/api/vpn/tunnels/", map[string][]string{"name": {name + "/pe101-pe201"}})
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
	if err != nil || len(back.Changes) != 1 || back.Changes[0].Action != "update" || back.Changes[0].Key != name+"/pe101-pe201" {
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

	// delete removes what push wrote; nothing is left to delete after.
	out, _, err = c.run("netbox", "delete", "--name", name, "--json")
	var gone pushReport
	json.Unmarshal([]byte(out), &gone)
	shared := map[string]bool{"tag": true, "custom field": true, "cluster type": true, "role": true, "platform": true, "RIR": true, "ASN": true, "route target": true}
	owned := 0
	for _, ch := range first.Changes {
		if ch.Action == "create" && !shared[ch.Kind] {
			owned++
		}
	}
	if err != nil || len(gone.Changes) != owned {
		t.Errorf("netbox delete: %v, %d deletes, want the %d objects the first push created", err, len(gone.Changes), owned)
	}
	if _, _, err := c.run("netbox", "delete", "--name", name, "--dry-run"); err != nil {
		t.Errorf("delete --dry-run after delete: %v, want exit 0", err)
	}
}

// TestNetBoxDevicesAndSecrets: a backbone with AES proposals (which NetBox
// can name) gets IKE/IPsec proposals, policies and per-link profiles; its
// pre-shared keys go into NetBox only with --with-secrets and come back
// with pull --with-secrets; and once an operator has turned its routers
// into dcim devices, pull reads the same plan and push refuses to add
// virtual machines beside them.
func TestNetBoxDevicesAndSecrets(t *testing.T) {
	url, token := netboxServer(t)
	const name = "nbdev"
	c := newCLI(t)
	c.env = append(c.env, "NETBOX_URL="+url, "NETBOX_TOKEN="+token)
	dir := t.TempDir()
	orig := filepath.Join(dir, name+".yaml")
	yaml := intenttest.EditDefault(t, "name: default", "name: "+name)
	yaml = intenttest.MustEdit(t, yaml, "ike: chacha20poly1305-prfsha256-x25519", "ike: aes256gcm16-prfsha384-ecp384")
	yaml = intenttest.MustEdit(t, yaml, "esp: chacha20poly1305-x25519", "esp: aes256-sha256-modp3072")
	// Its own addresses: NetBox refuses a second copy of nbrt's in the
	// global table.
	for _, r := range [][2]string{{"10.10.0.", "10.11.0."}, {"10.20.0.0", "10.21.0.0"}, {"fd53:ba85:6bf9:", "fd53:ba85:6bfa:"}, {"2001:db8:", "2001:db8:f"}} {
		yaml = []byte(strings.ReplaceAll(string(yaml), r[0], r[1]))
	}
	writeFile(t, orig, yaml)
	nb, err := netbox.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func(path string, q ...string) []map[string]any {
		t.Helper()
		f := map[string][]string{}
		for i := 0; i+1 < len(q); i += 2 {
			f[q[i]] = append(f[q[i]], q[i+1])
		}
		raw, err := nb.List(ctx, path, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, r := range raw {
			var m map[string]any
			json.Unmarshal(r, &m)
			out = append(out, m)
		}
		return out
	}
	do := func(method, path string, body any) map[string]any {
		t.Helper()
		var out map[string]any
		if err := nb.Do(ctx, method, path, nil, body, &out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return out
	}
	// What the test adds to NetBox goes when it ends (and what an earlier
	// run left, first): the backbone's objects, then the devices and what
	// they need.
	cleanup := func() {
		c.run("netbox", "delete", "--name", name)
		for _, l := range []struct{ path, filter, value string }{
			{"/api/dcim/devices/", "tag", netbox.Tag(name)}, {"/api/dcim/device-types/", "slug", "bb-e2e-" + name},
			{"/api/dcim/manufacturers/", "slug", "bb-e2e-" + name}, {"/api/dcim/sites/", "slug", "bb-e2e-" + name},
		} {
			raw, _ := nb.List(ctx, l.path, map[string][]string{l.filter: {l.value}})
			for _, r := range raw {
				var o struct{ ID int }
				json.Unmarshal(r, &o)
				nb.Do(ctx, "DELETE", fmt.Sprintf("%s%d/", l.path, o.ID), nil, nil, nil)
			}
		}
	}
	cleanup()
	t.Cleanup(cleanup)

	storeA, storeB := filepath.Join(dir, "a.secrets.json"), filepath.Join(dir, "b.secrets.json")
	c.must("netbox", "push", "-f", orig, "--secrets", storeA)
	pols := get("/api/vpn/ike-policies/", "tag", netbox.Tag(name))
	if len(pols) != 4 {
		t.Fatalf("%d IKE policies, want one per encrypted link (4)", len(pols))
	}
	for _, p := range pols {
		if p["preshared_key"] != "" {
			t.Errorf("IKE policy %v holds a key without --with-secrets", p["name"])
		}
	}
	props := get("/api/vpn/ike-proposals/", "tag", netbox.Tag(name))
	if len(props) != 1 || choiceOf(props[0]["encryption_algorithm"]) != "aes-256-gcm" || choiceOf(props[0]["group"]) != "20" ||
		choiceOf(props[0]["authentication_method"]) != "preshared-keys" {
		t.Errorf("IKE proposals: %v", props)
	}
	esp := get("/api/vpn/ipsec-proposals/", "tag", netbox.Tag(name))
	if len(esp) != 1 || choiceOf(esp[0]["encryption_algorithm"]) != "aes-256-cbc" || choiceOf(esp[0]["authentication_algorithm"]) != "hmac-sha256" {
		t.Errorf("IPsec proposals: %v", esp)
	}
	tun := get("/api/vpn/tunnels/", "name", name+"/pe101-pe201")
	if prof, _ := tun[0]["ipsec_profile"].(map[string]any); prof == nil || prof["name"] != name+"/pe101-pe201" {
		t.Errorf("tunnel pe101-pe201's IPsec profile: %v", tun[0]["ipsec_profile"])
	}

	// Keys: written only when asked, read back into another store.
	out := c.must("netbox", "push", "-f", orig, "--secrets", storeA, "--with-secrets", "--json")
	var rep struct{ Changes []netbox.Change }
	json.Unmarshal([]byte(out), &rep)
	if len(rep.Changes) != 4 {
		t.Errorf("push --with-secrets: %d changes, want the 4 IKE policies: %+v", len(rep.Changes), rep.Changes)
	}
	for _, ch := range rep.Changes {
		if ch.Kind != "IKE policy" || strings.Join(ch.Fields, ",") != "preshared_key" {
			t.Errorf("push --with-secrets changed %+v", ch)
		}
	}
	if strings.Contains(out, "preshared_key\":\"") {
		t.Errorf("push --json shows a key:\n%s", out)
	}
	c.must("netbox", "pull", "--name", name, "--with-secrets", "--secrets", storeB, "-o", filepath.Join(dir, "pulled.yaml"))
	a, _ := os.ReadFile(storeA)
	b, _ := os.ReadFile(storeB)
	var sa, sb struct{ PSKs map[string]string }
	json.Unmarshal(a, &sa)
	json.Unmarshal(b, &sb)
	if len(sa.PSKs) != 4 || !cmp.Equal(sa.PSKs, sb.PSKs) {
		t.Errorf("keys pulled from NetBox differ from the pushed ones: %d pushed, %d pulled", len(sa.PSKs), len(sb.PSKs))
	}

	planOf := func(f string) string {
		return c.must("plan", "-f", f, "--json")
	}
	want := planOf(orig)

	// The operator turns the virtual machines into devices.
	site := do("POST", "/api/dcim/sites/", map[string]any{"name": "bb-e2e-" + name, "slug": "bb-e2e-" + name})
	mf := do("POST", "/api/dcim/manufacturers/", map[string]any{"name": "bb-e2e-" + name, "slug": "bb-e2e-" + name})
	dt := do("POST", "/api/dcim/device-types/", map[string]any{"manufacturer": mf["id"], "model": "linux " + name, "slug": "bb-e2e-" + name})
	ids := func(v any) any {
		if m, ok := v.(map[string]any); ok {
			return m["id"]
		}
		return v
	}
	slugs := func(v any) []map[string]any {
		var out []map[string]any
		for _, t := range v.([]any) {
			out = append(out, map[string]any{"slug": t.(map[string]any)["slug"]})
		}
		return out
	}
	for _, vm := range get("/api/virtualization/virtual-machines/", "tag", netbox.Tag(name)) {
		dev := do("POST", "/api/dcim/devices/", map[string]any{"name": vm["name"], "role": ids(vm["role"]), "platform": ids(vm["platform"]),
			"device_type": dt["id"], "site": site["id"], "status": "active", "tags": slugs(vm["tags"]), "custom_fields": vm["custom_fields"]})
		do("PATCH", fmt.Sprintf("/api/virtualization/virtual-machines/%v/", vm["id"]), map[string]any{"primary_ip4": nil, "primary_ip6": nil})
		for _, vi := range get("/api/virtualization/interfaces/", "virtual_machine_id", fmt.Sprint(vm["id"])) {
			di := do("POST", "/api/dcim/interfaces/", map[string]any{"device": dev["id"], "name": vi["name"], "type": "virtual",
				"mtu": vi["mtu"], "vrf": ids(vi["vrf"]), "tags": slugs(vi["tags"]), "custom_fields": vi["custom_fields"]})
			for _, ip := range get("/api/ipam/ip-addresses/", "vminterface_id", fmt.Sprint(vi["id"])) {
				do("PATCH", fmt.Sprintf("/api/ipam/ip-addresses/%v/", ip["id"]), map[string]any{"assigned_object_type": "dcim.interface", "assigned_object_id": di["id"]})
			}
			for _, term := range get("/api/vpn/tunnel-terminations/", "termination_type", "virtualization.vminterface", "termination_id", fmt.Sprint(vi["id"])) {
				do("PATCH", fmt.Sprintf("/api/vpn/tunnel-terminations/%v/", term["id"]), map[string]any{"termination_type": "dcim.interface", "termination_id": di["id"]})
			}
		}
		do("PATCH", fmt.Sprintf("/api/dcim/devices/%v/", dev["id"]), map[string]any{"primary_ip4": ids(vm["primary_ip4"]), "primary_ip6": ids(vm["primary_ip6"])})
		do("DELETE", fmt.Sprintf("/api/virtualization/virtual-machines/%v/", vm["id"]), nil)
	}
	if got := planOf("netbox://" + name); got != want {
		t.Errorf("the backbone read from devices plans differently:\n%s", cmp.Diff(want, got))
	}
	_, errOut, err := c.run("netbox", "push", "-f", orig)
	if err == nil || !strings.Contains(errOut, "NetBox holds the backbone's routers as devices (6, e.g. device") {
		t.Errorf("push over devices: %v\n%s", err, errOut)
	}
}

// choiceOf is a NetBox choice's value ({value, label}) as a string.
func choiceOf(v any) string {
	if m, ok := v.(map[string]any); ok {
		return fmt.Sprint(m["value"])
	}
	return fmt.Sprint(v)
}
