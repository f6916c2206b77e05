package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/netbox"
)

// netboxServer starts the local NetBox test server (scripts/netbox-server:
// PostgreSQL, Redis and NetBox on 127.0.0.1, cached between runs) unless
// NETBOX_URL and NETBOX_TOKEN name one, and returns its URL and token.
// A server the test started is stopped at the end.
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
		t.Cleanup(func() { exec.Command(script, "down").Run() })
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
