package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/host"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// hostsPlan is the default backbone with pe101 on NetworkManager and the
// other PEs on networkd (pe202 has no host unless withAll).
func hostsPlan(t *testing.T, withAll bool) *plan.Plan {
	t.Helper()
	pairs := []string{
		`    underlay: {ipv6: "2001:db8:101::2/64"}`, `    underlay: {ipv6: "2001:db8:101::2/64"}
    host: {os: rocky9}`,
		`    underlay: {ipv6: "2001:db8:201::2/64"}`, `    underlay: {ipv6: "2001:db8:201::2/64"}
    host: {os: debian12}`,
		`    underlay: {ipv6: "2001:db8:102::2/64"}`, `    underlay: {ipv6: "2001:db8:102::2/64"}
    host: {os: debian12}`,
	}
	if withAll {
		pairs = append(pairs, `    underlay: {ipv6: "2001:db8:202::2/64"}`, `    underlay: {ipv6: "2001:db8:202::2/64"}
    host: {os: ubuntu24}`)
	}
	return intenttest.Plan(t, intenttest.EditDefault(t, pairs...), "hosts.yaml")
}

func writeInventory(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pe.inventory.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInventoryFile(t *testing.T) {
	for in, want := range map[string]string{
		"pe.yaml":            "pe.inventory.yaml",
		"/srv/net/core.yml":  "/srv/net/core.inventory.yaml",
		"backbone":           "backbone.inventory.yaml",
		"dir.v2/backbone.yq": "dir.v2/backbone.inventory.yaml",
	} {
		if got := InventoryFile(in); got != want {
			t.Errorf("InventoryFile(%q) = %q, want %q", in, got, want)
		}
	}
}

// The defaults reach every router at its underlay address; per-router
// entries override single fields.
func TestTargetsDefaults(t *testing.T) {
	key := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := LoadInventory(writeInventory(t, `
defaults: {user: admin, port: 2222, key: `+key+`}
routers:
  pe201: {address: pe201.example.net, user: root}
`))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := inv.Targets(hostsPlan(t, true), false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range ts {
		got = append(got, tg.Name+" "+tg.User+"@"+tg.Address+":"+strconv.Itoa(tg.Port)+" "+filepath.Base(tg.KeyFile))
	}
	want := []string{
		"pe101 admin@2001:db8:101::2:2222 id",
		"pe102 admin@2001:db8:102::2:2222 id",
		"pe201 root@pe201.example.net:2222 id",
		"pe202 admin@2001:db8:202::2:2222 id",
	}
	if !reflect.DeepEqual(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("targets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Every inventory problem is reported at once, each with where it is.
func TestTargetsReportsEverything(t *testing.T) {
	path := writeInventory(t, `
routers:
  pe999: {address: 192.0.2.9}
  ce1: {address: 192.0.2.10}
  pe101: {port: 70000, key: /nonexistent/key}
  pe201: {known_hosts: /nonexistent/known_hosts}
`)
	inv, err := LoadInventory(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = inv.Targets(hostsPlan(t, false), false)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		path + `: routers.pe999: router "pe999" is not in the intent`,
		path + `: routers.ce1: ce1 is a CE: backbone does not deploy CEs`,
		path + `: routers.pe101.port: 70000 is not a port`,
		path + `: routers.pe101.key: stat /nonexistent/key: no such file or directory`,
		path + `: routers.pe201.known_hosts: stat /nonexistent/known_hosts: no such file or directory`,
		`(pe202) has no host: add host: {os: debian12|ubuntu24|rocky9|rhel9, network: networkmanager|networkd} to deploy it`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 6 {
		t.Errorf("%d problems reported, want 6:\n%v", n, err)
	}
	// Accepting new host keys allows a known_hosts file that does not
	// exist yet (it is created), never a missing key.
	_, err = inv.Targets(hostsPlan(t, false), true)
	if err == nil || strings.Contains(err.Error(), "known_hosts") || !strings.Contains(err.Error(), "pe101.key") {
		t.Errorf("with accept-new: %v", err)
	}
}

func TestLoadInventoryStrict(t *testing.T) {
	path := writeInventory(t, "routers:\n  pe101: {adress: 192.0.2.1}\n")
	_, err := LoadInventory(path)
	if err == nil || !strings.Contains(err.Error(), path+":2: ") || !strings.Contains(err.Error(), `unknown field "adress"`) {
		t.Errorf("misspelt field: %v", err)
	}
	path = writeInventory(t, "routers:\n  pe101: {password: hunter2}\n")
	if _, err := LoadInventory(path); err == nil || !strings.Contains(err.Error(), `unknown field "password"`) {
		t.Errorf("a password must be refused: %v", err)
	}
}

// The manifest is what apply.sh reads: one line per file, seven fields.
func TestManifest(t *testing.T) {
	got := string(manifest([]host.File{
		{Path: "/etc/frr/frr.conf", Data: []byte("hello\n"), Mode: 0o640, Owner: "frr:frr", Apply: host.ApplyFRR, Order: 60},
		{Path: "/etc/systemd/network/50-bb-loopback0.netdev", Data: nil, Mode: 0o644, Owner: "root:root", Apply: host.ApplyNetdev, Device: "loopback0", Order: 30},
	}))
	want := "60 frr 640 frr:frr 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 /etc/frr/frr.conf -\n" +
		"30 netdev 644 root:root e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 /etc/systemd/network/50-bb-loopback0.netdev loopback0\n"
	if got != want {
		t.Errorf("manifest:\n%s\nwant:\n%s", got, want)
	}
}

// Files only root may read are never shown in a diff; NetworkManager
// keyfiles are 0600 by NetworkManager's rule but hold no secret.
func TestDiffHidesSecrets(t *testing.T) {
	secretFile := host.File{Path: "/etc/swanctl/conf.d/backbone-secrets.conf", Mode: 0o600}
	if d := diffText(secretFile, "secret = old\n", "secret = new\n"); strings.Contains(d, "secret =") || !strings.Contains(d, "hidden") {
		t.Errorf("secret shown: %q", d)
	}
	nm := host.File{Path: "/etc/NetworkManager/system-connections/bb-loopback0.nmconnection", Mode: 0o600}
	if d := diffText(nm, "mtu=1400\n", "mtu=1422\n"); !strings.Contains(d, "-mtu=1400") || !strings.Contains(d, "+mtu=1422") {
		t.Errorf("keyfile diff: %q", d)
	}
	frr := host.File{Path: "/etc/frr/frr.conf", Mode: 0o640}
	if d := diffText(frr, " ip ospf cost 10\n", " ip ospf cost 20\n"); !strings.Contains(d, "--- a/etc/frr/frr.conf") || !strings.Contains(d, "+ ip ospf cost 20") {
		t.Errorf("frr diff: %q", d)
	}
}

// Every way of applying a change is told in words.
func TestReloadOfCoversEveryApply(t *testing.T) {
	for _, a := range []string{host.ApplySysctl, host.ApplyModules, host.ApplyNM, host.ApplyNetwork, host.ApplyNetdev,
		host.ApplyFRR, host.ApplyDaemons, host.ApplyCharon, host.ApplySwanctl, host.ApplyFirewall, host.ApplyGuard} {
		if got := reloadOf(host.File{Apply: a, Path: "/x", Device: "d"}); got == a || got == "" {
			t.Errorf("reloadOf(%s) = %q", a, got)
		}
	}
}

// The apply program knows every Apply category the renderer uses, for
// every host flavour.
func TestApplyProgramKnowsEveryCategory(t *testing.T) {
	p := hostsPlan(t, true)
	seen := map[string]bool{}
	for _, r := range p.Routers {
		if r.Host == nil {
			continue
		}
		files, err := host.Render(p, r, intenttest.PSKs{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			seen[f.Apply] = true
		}
	}
	for a := range seen {
		if !strings.Contains(string(applyScript), "has "+a+" ") && !strings.Contains(string(applyScript), "\t\t"+a+")") {
			t.Errorf("apply.sh has no case for %q", a)
		}
	}
	if len(seen) < 8 {
		t.Errorf("only %d categories rendered: %v", len(seen), seen)
	}
	// A rollback to a generation without the guard removes its policies,
	// found by the priority the renderer gives them.
	if want := fmt.Sprintf("deleteall action block priority %d", linux.GuardPriority); !strings.Contains(string(applyScript), want) {
		t.Errorf("apply.sh does not remove the guard policies (%q)", want)
	}
}
