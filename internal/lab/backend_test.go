package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

// Where each node of the default backbone runs, per backend: with UML the
// four PEs (they need MPLS, VRF, ip6gre, ESP) get a kernel each, the CEs
// and the underlay stay in namespaces here.
func TestPlacement(t *testing.T) {
	c := ConfigOf(intenttest.Plan(t, intent.DefaultYAML(), "default.yaml"))
	places := func(backend string) map[string]string {
		out := map[string]string{}
		for _, n := range placement(c, backend) {
			out[n.Name] = n.Place
		}
		return out
	}
	all := func(place string) map[string]string {
		out := map[string]string{}
		for _, n := range c.Nodes() {
			out[n] = place
		}
		return out
	}
	tests := []struct {
		backend string
		want    map[string]string
	}{
		{BackendNative, all(PlaceNetns)},
		{BackendKVM, all(PlaceVM)},
		{BackendTCG, all(PlaceVM)},
		{BackendUML, map[string]string{
			Underlay: PlaceNetns, "ce1": PlaceNetns, "ce2": PlaceNetns,
			"pe101": PlaceUML, "pe102": PlaceUML, "pe201": PlaceUML, "pe202": PlaceUML,
		}},
	}
	for _, tt := range tests {
		if d := cmp.Diff(tt.want, places(tt.backend)); d != "" {
			t.Errorf("%s placement (-want +got):\n%s", tt.backend, d)
		}
	}
	for _, n := range placement(c, BackendUML) {
		if n.Role == "" {
			t.Errorf("node %s has no role", n.Name)
		}
	}
}

// A forced backend is checked before anything is written: an unknown one
// names the valid ones, native on a kernel that lacks a feature names the
// features and the modules to load.
func TestChooseForced(t *testing.T) {
	modules := ConfigOf(intenttest.Plan(t, intent.DefaultYAML(), "default.yaml")).Modules()
	quiet := func(string, ...any) {}
	_, err := Choose(context.Background(), modules, "docker", quiet)
	if err == nil || err.Error() != `unknown backend "docker": use one of native, kvm, uml, tcg` {
		t.Errorf("unknown backend: err = %v", err)
	}
	missing := missingFeatures(modules)
	got, err := Choose(context.Background(), modules, BackendNative, quiet)
	switch {
	case len(missing) == 0 && (err != nil || got != BackendNative):
		t.Errorf("native on a kernel with every feature = %q, %v", got, err)
	case len(missing) > 0 && err == nil:
		t.Errorf("native on a kernel lacking %s was accepted", featureNames(missing))
	case len(missing) > 0:
		for _, f := range missing {
			if !strings.Contains(err.Error(), f.Module) {
				t.Errorf("error does not name module %s: %v", f.Module, err)
			}
		}
	}
	for _, b := range []string{BackendKVM, BackendTCG} {
		if got, err := Choose(context.Background(), modules, b, quiet); err != nil || got != b {
			t.Errorf("forced %s = %q, %v", b, got, err)
		}
	}
}

// Resolve finds a lab by --name, by the name inside the intent given with
// -f, and refuses an intent without a usable name.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	isp6 := filepath.Join(dir, "isp6.yaml")
	if err := os.WriteFile(isp6, intenttest.EditDefault(t, "name: default", "name: isp6"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("routers: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want, err string
	}{
		{name: "lab7", want: "lab7"},
		{name: "lab7", file: isp6, want: "lab7"},
		{name: "..", err: `--name: ".." is not a valid backbone name`},
		{name: "a/b", err: "not a valid backbone name"},
		{file: isp6, want: "isp6"},
		{file: broken, err: "broken.yaml"},
		{file: filepath.Join(dir, "absent.yaml"), err: "absent.yaml"},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.name, tt.file)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Resolve(%q, %q) err = %v, want one naming %s", tt.name, tt.file, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tt.name, tt.file, got, err, tt.want)
		}
	}
}
