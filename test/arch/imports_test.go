// Package arch holds tests of the codebase's shape: which packages may
// import which, so that data keeps flowing one way (intent -> plan ->
// render -> lab -> verify/chaos) and the pure core stays pure.
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/backbone-net/backbone/"

// forbidden maps a package (relative to the module) to the imports it
// must not have, directly or through others.
var forbidden = map[string][]string{
	// The pure core: no system access, nothing downstream.
	"internal/intent":            {"os/exec", "github.com/vishvananda/netlink", "internal/plan", "internal/render", "internal/lab", "internal/node"},
	"internal/plan":              {"os/exec", "github.com/vishvananda/netlink", "internal/render", "internal/lab", "internal/node"},
	"internal/render":            {"os/exec", "github.com/vishvananda/netlink", "internal/lab", "internal/node", "internal/verify", "internal/chaos"},
	"internal/render/frr":        {"os/exec", "internal/lab"},
	"internal/render/strongswan": {"os/exec", "internal/lab"},
	"internal/render/linux":      {"os/exec", "internal/lab"},
	// Readers of a running backbone reach nodes only through node.Runner:
	// they work on any backend, and on real hosts.
	"internal/frrstate": {"internal/lab", "internal/verify", "internal/chaos"},
	"internal/verify":   {"internal/lab", "internal/chaos"},
	"internal/node":     {"internal/"},
	"internal/probe":    {"internal/lab"},
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestImports(t *testing.T) {
	for pkg, bad := range forbidden {
		for _, d := range deps(t, pkg) {
			if d == module+pkg {
				continue
			}
			for _, b := range bad {
				if matches(d, b) {
					t.Errorf("%s depends on %s (forbidden: %s)", pkg, d, b)
				}
			}
		}
	}
}

// matches says whether import path d is rule b or below it: module
// packages are written relative to the module ("internal/lab" covers
// internal/lab/uml too), "internal/" covers all of them.
func matches(d, b string) bool {
	if strings.HasPrefix(b, "internal/") {
		b = module + b
	}
	return d == strings.TrimSuffix(b, "/") || strings.HasPrefix(d, strings.TrimSuffix(b, "/")+"/")
}
