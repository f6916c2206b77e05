package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/backbone-net/backbone/internal/lab/console"
	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/layout"
)

// Config describes a VM to start.
type Config struct {
	// StateDir is the lab's state directory (absolute, e.g.
	// /run/backbone/default). It is shared read-write with the guest at the
	// same path and holds the VM's pidfile, console log and control data.
	StateDir string
	// CacheDir holds the downloaded kernel (default DefaultCacheDir).
	CacheDir string
	// MemoryMiB defaults to 2048, CPUs to 2.
	MemoryMiB int
	CPUs      int
	// Accel is "auto" (default), "kvm" or "tcg". auto tries KVM with a
	// short deadline (KVMProbeTimeout) and falls back to TCG; a KVM failure
	// is remembered in CacheDir for this host kernel and qemu.
	Accel string
	// BinaryPath is the backbone executable run inside the guest as its
	// init and agent (default: this executable). It is copied to
	// StateDir/bin so the guest sees it.
	BinaryPath string
	// AgentArgs is the subcommand that starts the guest agent in
	// BinaryPath (default "lab-vm-agent").
	AgentArgs []string
	// Modules are loaded by the guest init (default DeviceModules; the lab adds what its routers need).
	Modules []string
	// BootTimeout bounds the wait for the agent (default 120s);
	// KVMProbeTimeout the KVM attempt under auto (default 8s).
	BootTimeout     time.Duration
	KVMProbeTimeout time.Duration
	// Progress receives human-readable progress lines; nil discards.
	Progress func(string)
}

// Timing is one measured phase.
type Timing struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// Machine is a running (or attached) VM.
type Machine struct {
	StateDir string
	PID      int
	Port     int
	Accel    string
	Kernel   string
	// BootDuration is qemu start -> guest agent answering (zero when the
	// Machine came from Attach and the state file lacks it).
	BootDuration time.Duration
	// Timings are the phases of Start (including guest-reported ones).
	Timings []Timing
	// GuestInit is what the guest init reported (modules, warnings).
	GuestInit *agent.InitReport

	client *agent.Client
}

// Files in the state dir.
const (
	stateFileName = "vm.json"
	pidFileName   = "qemu.pid"
	consoleName   = "console.log"
	qemuLogName   = "qemu.log"
	tokenName     = "agent.token"
	initrdName    = "initramfs.cpio"
	binDirName    = "bin"
	lockName      = "vm.lock"
	readyName     = "agent.ready"
)

type stateFile struct {
	PID          int               `json:"pid"`
	Port         int               `json:"port"`
	Accel        string            `json:"accel"`
	Kernel       string            `json:"kernel"`
	StartedAt    time.Time         `json:"started_at"`
	BootDuration time.Duration     `json:"boot_ns"`
	Timings      []Timing          `json:"timings"`
	GuestInit    *agent.InitReport `json:"guest_init,omitempty"`
}

func (c Config) withDefaults() (Config, error) {
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return c, fmt.Errorf("VM state dir %q must be an absolute path", c.StateDir)
	}
	c.StateDir = filepath.Clean(c.StateDir)
	if c.StateDir == "/" || strings.ContainsAny(c.StateDir, "\n\x00") {
		return c, fmt.Errorf("VM state dir %q is not usable", c.StateDir)
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 2048
	}
	if c.MemoryMiB < 256 {
		return c, fmt.Errorf("VM memory %d MiB is too small (at least 256)", c.MemoryMiB)
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.CPUs < 1 {
		return c, fmt.Errorf("VM CPUs must be at least 1, got %d", c.CPUs)
	}
	switch c.Accel {
	case "":
		c.Accel = "auto"
	case "auto", "kvm", "tcg":
	default:
		return c, fmt.Errorf("unknown VM accelerator %q (want auto, kvm or tcg)", c.Accel)
	}
	if c.BinaryPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("find the backbone executable to run in the VM: %w", err)
		}
		c.BinaryPath = exe
	}
	if len(c.AgentArgs) == 0 {
		c.AgentArgs = []string{"lab-vm-agent"}
	}
	if c.Modules == nil {
		c.Modules = DeviceModules
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = 120 * time.Second
	}
	if c.KVMProbeTimeout == 0 {
		c.KVMProbeTimeout = 8 * time.Second
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c, nil
}

// GuestBinaryPath is the backbone executable inside the guest (on the
// guest's /run tmpfs: starting it from there is faster than over 9p). It is
// the binary that was given to Start as Config.BinaryPath.
const GuestBinaryPath = "/run/backbone-vm/backbone"

// hostBinary is the copy of the backbone executable in the state dir,
// which the initramfs copies to GuestBinaryPath.
func hostBinary(stateDir string) string {
	return layout.Lab{StateDir: stateDir}.Binary()
}

// canonicalDir resolves symlinks in dir when it exists.
func canonicalDir(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return filepath.Clean(dir)
}

// Running reports whether the VM of stateDir has a live qemu process.
func Running(stateDir string) bool {
	stateDir = canonicalDir(stateDir)
	pid, err := readPID(stateDir)
	return err == nil && qemuAlive(pid, filepath.Join(stateDir, pidFileName))
}

func readPID(stateDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, pidFileName))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("bad pidfile %s", filepath.Join(stateDir, pidFileName))
	}
	return pid, nil
}

// qemuAlive is true when pid is a live process started with our pidfile
// (so a recycled pid is never mistaken for our qemu).
func qemuAlive(pid int, pidFile string) bool {
	if pid <= 1 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("\x00-pidfile\x00"+pidFile+"\x00"))
}

// Start boots a VM for cfg.StateDir and returns once its agent answers.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return nil, fmt.Errorf("%s not found: run `apt-get install qemu-system-x86`", qemuBinary)
	}
	busybox, err := findBusybox()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create VM state dir: %w", err)
	}
	// The guest mounts the state dir at the same path; a symlink in it
	// (e.g. /var/run -> /run) would resolve against the initramfs instead.
	cfg.StateDir = canonicalDir(cfg.StateDir)
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if Running(cfg.StateDir) {
		return nil, fmt.Errorf("a VM is already running for %s (stop it first, e.g. `backbone lab down`)", cfg.StateDir)
	}
	removeRuntimeFiles(cfg.StateDir)

	var timings []Timing
	phase := func(name string, since time.Time) { timings = append(timings, Timing{name, time.Since(since)}) }

	t := time.Now()
	k, err := EnsureKernel(ctx, cfg.CacheDir, cfg.Progress)
	if err != nil {
		return nil, err
	}
	phase("kernel cache", t)

	t = time.Now()
	if err := (layout.Lab{StateDir: cfg.StateDir}).InstallBinary(cfg.BinaryPath); err != nil {
		return nil, fmt.Errorf("copy %s into the VM state dir: %w", cfg.BinaryPath, err)
	}
	token, err := agent.NewToken()
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(cfg.StateDir, tokenName)
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	stage2 := append([]string{GuestBinaryPath}, cfg.AgentArgs...)
	stage2 = append(stage2, "--init",
		"--state-dir", cfg.StateDir,
		"--token-file", tokenFile,
		"--listen", fmt.Sprintf("%s:%d", GuestIP, AgentPort),
		"--mac", GuestMAC,
		"--modules", strings.Join(cfg.Modules, ","))
	initrd := filepath.Join(cfg.StateDir, initrdName)
	if err := buildInitramfs(initrd, k, busybox, cfg.StateDir, stage2, hostBinary(cfg.StateDir)); err != nil {
		return nil, err
	}
	phase("initramfs", t)

	attempts := []string{cfg.Accel}
	if cfg.Accel == "auto" {
		attempts = []string{"tcg"}
		if why := kvmUnusable(cfg.CacheDir, qemu); why == "" {
			attempts = []string{"kvm", "tcg"}
		} else {
			cfg.Progress("KVM skipped: " + why)
		}
	}
	var lastErr error
	for i, accel := range attempts {
		timeout := cfg.BootTimeout
		probing := cfg.Accel == "auto" && accel == "kvm"
		if probing {
			timeout = cfg.KVMProbeTimeout
		}
		cfg.Progress(fmt.Sprintf("booting VM (%s, %d CPUs, %d MiB)", accel, cfg.CPUs, cfg.MemoryMiB))
		t := time.Now()
		m, err := boot(ctx, cfg, qemu, k, accel, timeout, token)
		if err == nil {
			m.Timings = append(timings, m.Timings...)
			if err := m.saveState(); err != nil {
				m.Stop(context.Background())
				return nil, err
			}
			return m, nil
		}
		lastErr = err
		if probing && i+1 < len(attempts) && ctx.Err() == nil {
			os.Rename(filepath.Join(cfg.StateDir, consoleName), filepath.Join(cfg.StateDir, "console-kvm.log"))
			rememberKVMFailure(cfg.CacheDir, qemu, err)
			cfg.Progress(fmt.Sprintf("%s; falling back to TCG (software emulation)", firstLine(err)))
			timings = append(timings, Timing{"kvm probe (failed)", time.Since(t)})
			continue
		}
	}
	return nil, lastErr
}

// kvmSilenceLimit: a KVM guest with an empty console after this long is
// considered hung (seen on nested setups where /dev/kvm exists but guests
// never run).
const kvmSilenceLimit = 3 * time.Second

// boot runs one qemu and waits for the agent.
func boot(ctx context.Context, cfg Config, qemu string, k Kernel, accel string, timeout time.Duration, token string) (*Machine, error) {
	pidFile := filepath.Join(cfg.StateDir, pidFileName)
	conPath := filepath.Join(cfg.StateDir, consoleName)
	qlog := filepath.Join(cfg.StateDir, qemuLogName)
	var (
		pid, port int
		launched  time.Time
		launchDur time.Duration
	)
	for try := 0; ; try++ {
		var err error
		if port, err = pickPort(); err != nil {
			return nil, err
		}
		os.Remove(pidFile)
		os.Remove(filepath.Join(cfg.StateDir, readyName))
		spec := qemuSpec{
			Binary: qemu, Name: "backbone-vm", Accel: accel,
			CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB,
			Kernel: k.BootImage(), Initrd: filepath.Join(cfg.StateDir, initrdName), Append: kernelCmdline(),
			Console: conPath, PIDFile: pidFile, StateDir: cfg.StateDir, HostPort: port,
		}
		logf, err := os.Create(qlog)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(qemu, spec.args()...)
		cmd.Stdout, cmd.Stderr = logf, logf
		launched = time.Now()
		err = cmd.Run() // returns when qemu has daemonized
		launchDur = time.Since(launched)
		logf.Close()
		if err != nil {
			out := console.Tail(qlog, 20)
			if strings.Contains(out, "forwarding rule") && try < 3 {
				continue // lost the race for the port
			}
			return nil, fmt.Errorf("qemu (%s) failed to start: %v\n%s", accel, err, out)
		}
		if pid, err = readPID(cfg.StateDir); err != nil {
			return nil, fmt.Errorf("qemu started but wrote no usable pidfile: %w", err)
		}
		break
	}
	m := &Machine{
		StateDir: cfg.StateDir, PID: pid, Port: port, Accel: accel, Kernel: k.Version,
		client: &agent.Client{Addr: fmt.Sprintf("127.0.0.1:%d", port), Token: token},
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	alive := func() error {
		if !qemuAlive(pid, pidFile) {
			return errors.New("qemu exited during boot")
		}
		return nil
	}
	// The agent creates agent.ready in the shared state dir once it
	// listens. Watching for it is cheap and exact, whereas pinging
	// through the port forward before the guest listens can hang for a
	// while in qemu's user networking.
	var err error
	ready := filepath.Join(cfg.StateDir, readyName)
	for {
		if err = alive(); err != nil {
			break
		}
		if _, serr := os.Stat(ready); serr == nil || wctx.Err() != nil {
			break
		}
		// A KVM guest that hangs here never prints a line, while a working
		// one prints the kernel banner well within a second.
		if accel == "kvm" && time.Since(launched) > kvmSilenceLimit {
			if fi, serr := os.Stat(conPath); serr == nil && fi.Size() == 0 {
				err = fmt.Errorf("KVM guest printed nothing in %s (hung)", kvmSilenceLimit)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	var info agent.Info
	if err == nil {
		info, err = m.client.WaitReady(wctx, 50*time.Millisecond, alive)
	}
	if err != nil {
		killQemu(pid, pidFile, 2*time.Second)
		os.Remove(pidFile)
		return nil, fmt.Errorf("VM (%s) did not come up: %w\n%s", accel, err, console.Tail(conPath, 25))
	}
	m.BootDuration = time.Since(launched)
	m.Timings = []Timing{{"qemu launch", launchDur}}
	if in := info.Init; in != nil {
		m.GuestInit = in
		m.Timings = append(m.Timings,
			Timing{"guest kernel", in.KernelBoot},
			Timing{"guest initramfs", in.Initramfs},
			Timing{"guest init exec", in.InitExec},
			Timing{"guest init", in.Setup},
			Timing{"guest modules", in.Modules})
	}
	m.Timings = append(m.Timings, Timing{"VM boot", m.BootDuration})
	return m, nil
}

// Attach returns the Machine of a VM started earlier for stateDir. It
// succeeds as long as the state is there, even if qemu has died, so that
// Stop can clean up; use Running to check liveness.
func Attach(stateDir string) (*Machine, error) {
	stateDir = canonicalDir(stateDir)
	var st stateFile
	b, err := os.ReadFile(filepath.Join(stateDir, stateFileName))
	if err != nil {
		if _, perr := os.Stat(filepath.Join(stateDir, pidFileName)); perr != nil {
			return nil, fmt.Errorf("no VM in %s: %w", stateDir, fs.ErrNotExist)
		}
	} else if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("corrupt VM state %s: %w (stop the VM and start again)", filepath.Join(stateDir, stateFileName), err)
	}
	if pid, err := readPID(stateDir); err == nil {
		st.PID = pid
	}
	token, _ := os.ReadFile(filepath.Join(stateDir, tokenName))
	return &Machine{
		StateDir: stateDir, PID: st.PID, Port: st.Port, Accel: st.Accel, Kernel: st.Kernel,
		BootDuration: st.BootDuration, Timings: st.Timings, GuestInit: st.GuestInit,
		client: &agent.Client{Addr: fmt.Sprintf("127.0.0.1:%d", st.Port), Token: strings.TrimSpace(string(token))},
	}, nil
}

func (m *Machine) saveState() error {
	b, err := json.MarshalIndent(stateFile{
		PID: m.PID, Port: m.Port, Accel: m.Accel, Kernel: m.Kernel, StartedAt: time.Now().UTC(),
		BootDuration: m.BootDuration, Timings: m.Timings, GuestInit: m.GuestInit,
	}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(m.StateDir, stateFileName), append(b, '\n'), 0o644)
}

// Client returns the agent client (for callers that need Ping or WaitReady).
func (m *Machine) Client() *agent.Client { return m.client }

// GuestBinary is the path of the backbone executable inside the guest.
func (m *Machine) GuestBinary() string { return GuestBinaryPath }

// ConsoleLog is the host path of the guest console log.
func (m *Machine) ConsoleLog() string { return filepath.Join(m.StateDir, consoleName) }

func (m *Machine) notRunning() error {
	return fmt.Errorf("the VM of %s is not running (qemu pid %d is gone); its console log is %s:\n%s",
		m.StateDir, m.PID, m.ConsoleLog(), console.Tail(m.ConsoleLog(), 15))
}

// Exec runs req in the guest's root namespace, streaming output. See
// agent.Client.Exec.
func (m *Machine) Exec(ctx context.Context, req agent.ExecRequest, stdout, stderr io.Writer) (int, error) {
	return m.ExecStream(ctx, req, nil, stdout, stderr)
}

// ExecStream is Exec with standard input streamed from stdin (nil: none).
func (m *Machine) ExecStream(ctx context.Context, req agent.ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if !Running(m.StateDir) {
		return -1, m.notRunning()
	}
	code, err := m.client.ExecStream(ctx, req, stdin, stdout, stderr)
	if err != nil && ctx.Err() == nil && !Running(m.StateDir) {
		return code, fmt.Errorf("%w (%v)", m.notRunning(), err)
	}
	return code, err
}

// Ping asks the guest agent for its status.
func (m *Machine) Ping(ctx context.Context) (agent.Info, error) {
	if !Running(m.StateDir) {
		return agent.Info{}, m.notRunning()
	}
	return m.client.Ping(ctx)
}

// Stop powers the guest off (asking the agent first, then killing qemu) and
// removes the VM's runtime files from the state dir (the console log is
// kept). It is safe to call when the guest or qemu already died.
func (m *Machine) Stop(ctx context.Context) error {
	pidFile := filepath.Join(m.StateDir, pidFileName)
	pid := m.PID
	if p, err := readPID(m.StateDir); err == nil {
		pid = p
	}
	if qemuAlive(pid, pidFile) {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := m.client.Poweroff(pctx)
		cancel()
		if err == nil {
			waitGone(ctx, pid, pidFile, 10*time.Second)
		}
		if !killQemu(pid, pidFile, 3*time.Second) {
			return fmt.Errorf("qemu (pid %d) of %s does not die even with SIGKILL", pid, m.StateDir)
		}
	}
	removeRuntimeFiles(m.StateDir)
	return nil
}

// killQemu sends SIGTERM, then SIGKILL, and reports whether it is gone.
func killQemu(pid int, pidFile string, grace time.Duration) bool {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if !qemuAlive(pid, pidFile) {
			return true
		}
		syscall.Kill(pid, sig)
		waitGone(context.Background(), pid, pidFile, grace)
	}
	return !qemuAlive(pid, pidFile)
}

func waitGone(ctx context.Context, pid int, pidFile string, d time.Duration) {
	deadline := time.Now().Add(d)
	for qemuAlive(pid, pidFile) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

func removeRuntimeFiles(stateDir string) {
	for _, n := range []string{pidFileName, stateFileName, tokenName, initrdName, readyName} {
		os.Remove(filepath.Join(stateDir, n))
	}
	os.RemoveAll(filepath.Join(stateDir, binDirName))
}

// lockStateDir serialises Start on one state dir.
func lockStateDir(stateDir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(stateDir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another backbone process is starting the VM of %s", stateDir)
	}
	return func() { f.Close() }, nil
}
