package ansible

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/sshnode"
)

var update = flag.Bool("update", false, "rewrite testdata/inventory.yml")

// flavours: the default backbone's PEs on NetworkManager and networkd,
// Debian and Rocky; auth psk or pubkey.
func flavours(tb testing.TB, edits ...string) *plan.Plan {
	y := intenttest.WithHosts(tb, intenttest.EditDefault(tb, edits...), "pe101", "{os: debian12, network: networkmanager}",
		"pe201", "{os: debian12}", "pe202", "{os: rocky9}", "pe102", "{os: ubuntu24}")
	return intenttest.Plan(tb, y, "hosts.yaml")
}

func options(p *plan.Plan) Options {
	var ts []sshnode.Target
	for _, r := range p.Routers {
		if r.Role != intent.RoleCE {
			ts = append(ts, sshnode.Target{Name: r.Name, Address: r.Underlay.IPv6.Addr().String(), User: "admin",
				KeyFile: "/keys/backbone", KnownHosts: "/keys/known_hosts", Netns: "mgmt"})
		}
	}
	return Options{Targets: ts, SecretsFile: "/state/default.secrets.json", Proxy: "/usr/bin/backbone ssh-proxy",
		InventoryCommand: "/usr/bin/backbone ansible inventory -f /x/pe.yaml"}
}

// The static inventory, byte for byte (-update rewrites it).
func TestInventoryGolden(t *testing.T) {
	p := flavours(t)
	files, err := Project(p, intenttest.PSKs{}, options(p))
	if err != nil {
		t.Fatal(err)
	}
	var inv []byte
	for _, f := range files {
		if f.Path == "inventory.yml" {
			inv = f.Data
		}
	}
	golden := filepath.Join("testdata", "inventory.yml")
	if *update {
		if err := os.WriteFile(golden, inv, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/ansible -update)", err)
	}
	if d := cmp.Diff(string(want), string(inv)); d != "" {
		t.Errorf("inventory.yml differs from %s (run go test ./internal/ansible -update and review):\n%s", golden, d)
	}
	again, _ := Project(p, intenttest.PSKs{}, options(p))
	if !cmp.Equal(files, again) {
		t.Error("two runs give different projects")
	}
}

// No key is ever in the project or the dynamic inventory: neither a
// pre-shared key nor a private key.
func TestNoKeys(t *testing.T) {
	for _, auth := range []string{"psk", "pubkey"} {
		p := flavours(t, "  auth: psk\n", "  auth: "+auth+"\n")
		keys := intenttest.PSKs{}
		var secrets []string
		for _, l := range p.Links {
			secrets = append(secrets, keys.PSK(plan.LinkKey(l.Ends[0], l.Ends[1])))
		}
		for _, r := range p.Routers {
			_, key := keys.RouterCert(r.Name)
			secrets = append(secrets, strings.TrimSpace(string(key)))
		}
		files, err := Project(p, keys, options(p))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := Inventory(p, keys, options(p))
		if err != nil {
			t.Fatal(err)
		}
		dyn, _ := json.Marshal(inv)
		for _, s := range secrets {
			if s == "" {
				continue
			}
			if strings.Contains(string(dyn), s[:20]) {
				t.Errorf("%s: the dynamic inventory holds a key", auth)
			}
			for _, f := range files {
				if strings.Contains(string(f.Data), s[:20]) {
					t.Errorf("%s: %s holds a key", auth, f.Path)
				}
			}
		}
	}
}

// The dynamic inventory carries the same files as the project (inline
// instead of under files/) and the same variables.
func TestInventoryMatchesProject(t *testing.T) {
	p := flavours(t)
	o := options(p)
	files, err := Project(p, intenttest.PSKs{}, o)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]string{}
	for _, f := range files {
		onDisk[f.Path] = string(f.Data)
	}
	inv, err := Inventory(p, intenttest.PSKs{}, o)
	if err != nil {
		t.Fatal(err)
	}
	hv := inv["_meta"].(map[string]any)["hostvars"].(map[string]any)
	if len(hv) != 4 {
		t.Fatalf("%d hosts, want the 4 PEs", len(hv))
	}
	for name, v := range hv {
		vars := v.(map[string]any)
		if vars["ansible_host"] == "" || !strings.Contains(vars["ansible_ssh_common_args"].(string), "ProxyCommand='/usr/bin/backbone ssh-proxy --netns mgmt %h %p'") {
			t.Errorf("%s: connection variables %v", name, vars)
		}
		n := 0
		for _, f := range vars["bb_files"].([]hostFile) {
			n++
			if got := onDisk["files/"+name+f.Path]; got != f.Content {
				t.Errorf("%s %s: inline content differs from the project's file", name, f.Path)
			}
			if f.Src != "" {
				t.Errorf("%s %s: src in the dynamic inventory", name, f.Path)
			}
		}
		if n == 0 {
			t.Errorf("%s: no files", name)
		}
	}
	// Group by role, group variables on backbone.
	bb := inv["backbone"].(map[string]any)
	if !cmp.Equal(bb["children"], []string{"pe"}) || bb["vars"].(map[string]any)["bb_secrets_file"] != o.SecretsFile {
		t.Errorf("group backbone: %v", bb)
	}
	o.NoAnsibleHost = true
	inv, _ = Inventory(p, intenttest.PSKs{}, o)
	for name, v := range inv["_meta"].(map[string]any)["hostvars"].(map[string]any) {
		if _, ok := v.(map[string]any)["ansible_host"]; ok {
			t.Errorf("%s: ansible_host with NoAnsibleHost", name)
		}
	}
}
