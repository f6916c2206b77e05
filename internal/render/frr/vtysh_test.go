package frr_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/render/frr"
)

// requireTool returns the path of a tool the test needs. Without it the
// test skips on a developer machine, but fails where the tool must be
// present: in CI (CI=true) and when lab tests are asked for
// (BACKBONE_LAB_TESTS=1).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" || os.Getenv("BACKBONE_LAB_TESTS") == "1" {
		t.Fatalf("%s is required here (CI=true or BACKBONE_LAB_TESTS=1): %v", name, err)
	}
	t.Skipf("%s not installed: %v", name, err)
	return ""
}

func dryrun(t *testing.T, vtysh, file string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, vtysh, "--dryrun", "-f", file).CombinedOutput()
	return string(out), err
}

// TestVtyshAcceptsRenderedConfigs runs FRR's own parser on every rendered
// frr.conf of every variant: a line FRR rejects fails the test.
func TestVtyshAcceptsRenderedConfigs(t *testing.T) {
	vtysh := requireTool(t, "vtysh")
	dir := t.TempDir()

	// The parser must be able to fail, or the test proves nothing.
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("interface x\n ip ospf no-such-option 3\nexit\n"), 0o644)
	if out, err := dryrun(t, vtysh, bad); err == nil {
		t.Fatalf("vtysh --dryrun accepted a broken config: %s", out)
	}

	for _, v := range intenttest.Variants(t) {
		t.Run(v.Name, func(t *testing.T) {
			p := intenttest.Plan(t, v.YAML, v.Name)
			for _, r := range p.Routers {
				conf := frr.Render(p, r)
				file := filepath.Join(dir, v.Name+"-"+r.Name+".conf")
				if err := os.WriteFile(file, conf, 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := dryrun(t, vtysh, file); err != nil {
					t.Errorf("%s: vtysh --dryrun -f %s: %v\n%s\n--- config ---\n%s", r.Name, file, err, out, numbered(conf))
				}
			}
		})
	}
}

func numbered(conf []byte) string {
	var b bytes.Buffer
	for i, l := range bytes.Split(conf, []byte("\n")) {
		b.WriteString(itoa(i+1) + "  ")
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}
