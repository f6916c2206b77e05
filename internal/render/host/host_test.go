package host_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/host"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// flavours gives the default backbone's PEs a host each: NetworkManager
// and networkd, Debian and Rocky.
func flavours(tb testing.TB) *plan.Plan {
	y := intenttest.WithHosts(tb, intent.DefaultYAML(), "pe101", "{os: debian12, network: networkmanager}",
		"pe201", "{os: debian12}", "pe202", "{os: rocky9}", "pe102", "{os: ubuntu24}")
	return intenttest.Plan(tb, y, "hosts.yaml")
}

func render(t *testing.T, p *plan.Plan, r string) []host.File {
	t.Helper()
	fs, err := host.Render(p, p.Router(r), intenttest.PSKs{})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// The files of each flavour, byte for byte (-update rewrites them).
func TestGolden(t *testing.T) {
	p := flavours(t)
	for _, r := range []string{"pe101", "pe201", "pe202", "pe102"} {
		for _, f := range render(t, p, r) {
			golden := filepath.Join("testdata", "golden", r, f.Path)
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Errorf("%s %s: %v (run go test ./internal/render/host -update)", r, f.Path, err)
				continue
			}
			if !bytes.Equal(want, f.Data) {
				t.Errorf("%s %s differs from %s (run go test ./internal/render/host -update and review the diff)", r, f.Path, golden)
			}
		}
	}
}

// Paths, modes, owners and apply steps per flavour; the underlay
// interface is never touched.
func TestFiles(t *testing.T) {
	p := flavours(t)
	kinds := func(r string) map[string]host.File {
		out := map[string]host.File{}
		for _, f := range render(t, p, r) {
			out[f.Path] = f
			if strings.Contains(f.Path, "eth0") {
				t.Errorf("%s: %s configures the underlay interface", r, f.Path)
			}
		}
		return out
	}
	nm := kinds("pe101")
	for path, apply := range map[string]string{
		"/etc/NetworkManager/system-connections/bb-loopback0.nmconnection": host.ApplyNM,
		"/etc/NetworkManager/system-connections/bb-cust-a.nmconnection":    host.ApplyNM,
		"/etc/NetworkManager/system-connections/bb-gre-pe201.nmconnection": host.ApplyNM,
		"/etc/NetworkManager/system-connections/bb-to-ce1.nmconnection":    host.ApplyNM,
		"/etc/swanctl/conf.d/backbone.conf":                                host.ApplySwanctl,
		"/etc/strongswan.d/backbone.conf":                                  host.ApplyCharon,
		"/etc/frr/frr.conf":                                                host.ApplyFRR,
		"/etc/frr/daemons":                                                 host.ApplyDaemons,
	} {
		if f, ok := nm[path]; !ok || f.Apply != apply {
			t.Errorf("pe101 (NetworkManager): %s = %+v, want apply %s", path, f, apply)
		}
	}
	if f := nm["/etc/swanctl/conf.d/backbone-secrets.conf"]; f.Mode != 0o600 {
		t.Errorf("secrets mode %v, want 0600", f.Mode)
	}
	if f := nm["/etc/frr/frr.conf"]; f.Owner != "frr:frr" || f.Mode != 0o640 {
		t.Errorf("frr.conf %s %v, want frr:frr 0640", f.Owner, f.Mode)
	}
	nd := kinds("pe201")
	for _, path := range []string{"/etc/systemd/network/50-bb-gre-pe101.netdev", "/etc/systemd/network/50-bb-gre-pe101.network", "/etc/systemd/network/50-bb-to-ce2.network"} {
		if _, ok := nd[path]; !ok {
			t.Errorf("pe201 (networkd): no %s", path)
		}
	}
	if _, ok := nd["/etc/systemd/network/50-bb-to-ce2.netdev"]; ok {
		t.Error("pe201: a .netdev for a physical interface")
	}
	rh := kinds("pe202")
	for _, path := range []string{"/etc/strongswan/swanctl/conf.d/backbone.conf", "/etc/strongswan/strongswan.d/backbone.conf", host.FirewalldFile} {
		if _, ok := rh[path]; !ok {
			t.Errorf("pe202 (rocky9): no %s", path)
		}
	}
}

// NetworkManager's own parser accepts every keyfile (nmcli --offline, as
// on the router before a switch), and the MTUs follow the plan: 1414 on
// the ip6gre links of a NetworkManager router, which keep the
// encapsulation limit.
func TestKeyfilesLoad(t *testing.T) {
	nmcli, err := exec.LookPath("nmcli")
	if err != nil {
		t.Skip("nmcli not installed")
	}
	p := flavours(t)
	for _, r := range []string{"pe101", "pe202"} {
		for _, f := range render(t, p, r) {
			if f.Apply != host.ApplyNM {
				continue
			}
			cmd := exec.Command(nmcli, "--offline", "connection", "modify", "connection.autoconnect", "yes")
			cmd.Stdin = bytes.NewReader(f.Data)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s %s: nmcli refuses it: %v\n%s", r, f.Path, err, out)
			}
			if strings.Contains(f.Path, "gre-") && !strings.Contains(string(out), "mtu=1414") {
				t.Errorf("%s %s: want mtu=1414, NetworkManager keeps the encapsulation limit:\n%s", r, f.Path, out)
			}
		}
	}
}

// frr.conf on a host names the loopback dummy and enables MPLS on LDP
// links; FRR accepts it.
func TestFRRHost(t *testing.T) {
	p := flavours(t)
	var conf []byte
	for _, f := range render(t, p, "pe101") {
		if f.Path == host.FRRConf {
			conf = f.Data
		}
	}
	for _, want := range []string{"interface loopback0\n ip ospf area", " mpls enable\n"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("frr.conf lacks %q", want)
		}
	}
	if strings.Contains(string(conf), "interface lo\n") {
		t.Error("frr.conf on a host configures lo")
	}
	vtysh, err := exec.LookPath("vtysh")
	if err != nil {
		t.Skip("vtysh not installed")
	}
	path := filepath.Join(t.TempDir(), "frr.conf")
	os.WriteFile(path, conf, 0o644)
	if out, err := exec.Command(vtysh, "--dryrun", "-f", path).CombinedOutput(); err != nil {
		t.Errorf("vtysh --dryrun refuses it: %v\n%s", err, out)
	}
}

func TestNoHost(t *testing.T) {
	p := intenttest.Plan(t, intent.DefaultYAML(), "default.yaml")
	if _, err := host.Render(p, p.Router("pe101"), intenttest.PSKs{}); err == nil || !strings.Contains(err.Error(), "has no host") {
		t.Errorf("err = %v", err)
	}
}
