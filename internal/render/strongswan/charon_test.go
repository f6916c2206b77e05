package strongswan_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/render"
	"github.com/backbone-net/backbone/internal/render/strongswan"
	"github.com/backbone-net/backbone/internal/secrets"
)

// requireCharon returns the paths of charon-systemd, swanctl and ip. The
// test needs root (a network namespace per charon, so that its XFRM
// policies stay out of the host). Without them it skips on a developer
// machine but fails in CI (CI=true) or when lab tests are asked for
// (BACKBONE_LAB_TESTS=1).
func requireCharon(t *testing.T) (charon, swanctl, ip string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	find := func(name string, dirs ...string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range dirs {
			if p := filepath.Join(d, name); fileExists(p) {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	charon = find("charon-systemd", "/usr/sbin", "/usr/lib/ipsec", "/usr/libexec/ipsec")
	swanctl = find("swanctl", "/usr/sbin")
	ip = find("ip", "/usr/sbin", "/sbin")
	if len(missing) > 0 {
		msg := "strongSwan load test needs " + strings.Join(missing, ", ")
		if os.Getenv("CI") == "true" || os.Getenv("BACKBONE_LAB_TESTS") == "1" {
			t.Fatal(msg + " (required with CI=true or BACKBONE_LAB_TESTS=1)")
		}
		t.Skip(msg)
	}
	return charon, swanctl, ip
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

var nsSeq atomic.Int64

// TestCharonLoadsRenderedConfigs starts a real charon per PE, in its own
// network namespace with the rendered strongswan.conf, and loads the
// rendered swanctl.conf (and its secrets) into it: every connection must
// load, and the bypass-lan plugin must be off.
func TestCharonLoadsRenderedConfigs(t *testing.T) {
	charon, swanctl, ip := requireCharon(t)
	for _, v := range intenttest.Variants(t) {
		t.Run(v.Name, func(t *testing.T) {
			p := intenttest.Plan(t, v.YAML, v.Name)
			// Unix socket paths are limited to 108 bytes: keep it short.
			base, err := os.MkdirTemp("", "bbsw")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			out, rt := filepath.Join(base, "out"), filepath.Join(base, "run")
			// Certificates must be real for charon to load them.
			var creds strongswan.Credentials = intenttest.PSKs{}
			if p.Encryption.Auth == "pubkey" {
				st, err := secrets.Open(filepath.Join(base, "secrets.json"))
				if err != nil {
					t.Fatal(err)
				}
				creds = st
			}
			if err := render.Write(out, render.Files(p, creds, render.Options{RuntimeDir: rt})); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range p.Routers {
				if !strongswan.Needed(r) {
					continue
				}
				n++
				t.Run(r.Name, func(t *testing.T) {
					want := 0
					for _, i := range r.Interfaces {
						if i.Encrypted {
							want++
						}
					}
					loadRouter(t, charon, swanctl, ip, filepath.Join(out, r.Name), filepath.Join(rt, r.Name), want, p.Encryption.Auth)
				})
			}
			if p.Encryption.Enabled && n == 0 {
				t.Error("encryption is on but no router runs charon")
			}
		})
	}
}

func loadRouter(t *testing.T, charon, swanctl, ip, confDir, runDir string, want int, auth string) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("bbsw-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	env := append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(confDir, "strongswan.conf"))
	var stderr strings.Builder
	cmd := exec.Command(ip, "netns", "exec", ns, charon)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start charon: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	// Wait for the vici socket rendered into strongswan.conf.
	sock := strongswan.Paths{Dir: runDir}.VICISocket()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("charon exited before opening %s: %v\n%s", sock, err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("charon did not open %s within 20 s\n%s", sock, stderr.String())
		}
	}

	swan := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, ip, append([]string{"netns", "exec", ns, swanctl}, args...)...)
		c.Env = env
		out, err := c.CombinedOutput()
		return string(out), err
	}
	out, err := swan("--load-all", "--file", filepath.Join(confDir, "swanctl.conf"))
	if err != nil {
		var ee *exec.ExitError
		errors.As(err, &ee)
		t.Fatalf("swanctl --load-all: %v\n%s\n--- swanctl.conf ---\n%s", err, out, readFile(filepath.Join(confDir, "swanctl.conf")))
	}
	if !strings.Contains(out, fmt.Sprintf("successfully loaded %d connections", want)) {
		t.Errorf("swanctl --load-all did not load %d connections:\n%s", want, out)
	}
	// swanctl's own plugin and credential-directory noise aside, any
	// "loading ... failed" is a rejected connection or secret.
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "loading ") && strings.Contains(l, "failed") {
			t.Errorf("swanctl --load-all: %s\n%s", l, out)
		}
	}
	if auth == "pubkey" {
		for _, w := range []string{"loaded certificate from", "backbone-ca.pem", "loaded ECDSA key from"} {
			if !strings.Contains(out, w) {
				t.Errorf("swanctl --load-all did not report %q:\n%s", w, out)
			}
		}
	} else if n := strings.Count(out, "loaded ike secret"); n != want {
		t.Errorf("%d IKE secrets loaded, want %d:\n%s", n, want, out)
	}
	stats, err := swan("--stats")
	if err != nil {
		t.Fatalf("swanctl --stats: %v\n%s", err, stats)
	}
	if strings.Contains(stats, "bypass-lan") {
		t.Errorf("bypass-lan plugin loaded: PEs sharing an underlay subnet would talk in clear\n%s", stats)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
