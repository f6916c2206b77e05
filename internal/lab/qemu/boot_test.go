package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/lab/console"
	"github.com/backbone-net/backbone/internal/lab/guest/agent"
)

// TestMain lets the test binary act as the guest: TestBootAndExec boots a VM
// whose init is this binary with the arguments "lab-vm-agent ...", as the
// real backbone binary would get them.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "lab-vm-agent" {
		if err := RunGuest(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "lab-vm-agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func execReq(argv ...string) agent.ExecRequest { return agent.ExecRequest{Argv: argv} }

// TestBootAndExec boots a real VM. It skips when the prerequisites are
// missing, unless CI=true or BACKBONE_VM_TESTS=1, where it must run.
func TestBootAndExec(t *testing.T) {
	required := os.Getenv("CI") == "true" || os.Getenv("BACKBONE_VM_TESTS") == "1"
	skip := func(format string, args ...any) {
		t.Helper()
		reason := fmt.Sprintf(format, args...)
		if required {
			t.Fatalf("VM test required (CI=true or BACKBONE_VM_TESTS=1) but cannot run: %s", reason)
		}
		t.Skip(reason + " (set BACKBONE_VM_TESTS=1 to make this a failure)")
	}
	if os.Geteuid() != 0 {
		skip("needs root (qemu shares / with the guest, which runs as root)")
	}
	if _, err := exec.LookPath(qemuBinary); err != nil {
		skip("%s not found: apt-get install qemu-system-x86", qemuBinary)
	}
	if _, err := findBusybox(); err != nil {
		skip("%v", err)
	}
	if _, err := LoadKernel(DefaultCacheDir); err != nil && !required {
		skip("no cached kernel: run scripts/setup")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stateDir := filepath.Join(t.TempDir(), "state")
	cfg := Config{
		StateDir:   stateDir,
		BinaryPath: exe,
		MemoryMiB:  1024,
		Progress:   func(s string) { t.Log("vm:", s) },
	}
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if Running(stateDir) {
			t.Error("VM still running after Stop")
		}
	}()
	t.Logf("VM boot (qemu start -> agent answering): %s, accel %s", m.BootDuration, m.Accel)
	for _, tm := range m.Timings {
		t.Logf("  %-24s %s", tm.Name, tm.Duration)
	}
	if !Running(stateDir) {
		t.Fatal("Running false after Start")
	}

	run := func(m *Machine, req agent.ExecRequest) string {
		t.Helper()
		var out, errb bytes.Buffer
		start := time.Now()
		code, err := m.Exec(ctx, req, &out, &errb)
		if err != nil || code != 0 {
			t.Fatalf("%v: exit %d, err %v, stderr %s\nconsole:\n%s", req.Argv, code, err, errb.String(), console.Tail(m.ConsoleLog(), 20))
		}
		t.Logf("%v: %s (%s)", req.Argv, strings.TrimSpace(out.String()), time.Since(start))
		return strings.TrimSpace(out.String())
	}

	if got := run(m, execReq("uname", "-r")); got != m.Kernel {
		t.Errorf("guest kernel %q, want %q", got, m.Kernel)
	}
	if got := run(m, execReq("sh", "-c", "modprobe mpls_router && cat /proc/sys/net/mpls/platform_labels")); got == "" {
		t.Error("no platform_labels")
	}
	if got := run(m, execReq("hostname")); got != GuestHostname {
		t.Errorf("hostname %q", got)
	}

	// The state dir is shared read-write in both directions at the same path.
	if err := os.WriteFile(filepath.Join(stateDir, "from-host"), []byte("hello guest"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(m, execReq("cat", filepath.Join(stateDir, "from-host"))); got != "hello guest" {
		t.Errorf("guest read %q", got)
	}
	run(m, agent.ExecRequest{Argv: []string{"sh", "-c", "cat > " + shq(filepath.Join(stateDir, "from-guest"))}, Stdin: []byte("hello host")})
	if b, err := os.ReadFile(filepath.Join(stateDir, "from-guest")); err != nil || string(b) != "hello host" {
		t.Errorf("host read %q %v", b, err)
	}
	// The host root is visible but read-only (writes land in the overlay).
	run(m, execReq("sh", "-c", "echo x > /etc/backbone-vm-test && test ! -e /etc/backbone-vm-test.never"))
	if _, err := os.Stat("/etc/backbone-vm-test"); err == nil {
		os.Remove("/etc/backbone-vm-test")
		t.Error("a guest write reached the host root")
	}

	// A later invocation attaches through the state dir.
	m2, err := Attach(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Port != m.Port || m2.Accel != m.Accel {
		t.Errorf("attached %+v, started %+v", m2, m)
	}
	run(m2, execReq("true"))
	code, err := m2.Exec(ctx, execReq("sh", "-c", "exit 3"), nil, nil)
	if err != nil || code != 3 {
		t.Errorf("exit code %d err %v, want 3", code, err)
	}
}
