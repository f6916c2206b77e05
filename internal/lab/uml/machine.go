// Package uml runs one router as a User-mode Linux kernel: the Linux
// kernel built as an ordinary program, so its networking (MPLS, VRF,
// ip6gre, VXLAN, XFRM, nftables) is the real one while the router's
// programs run at native CPU speed. The guest sees the host's / read-only
// (hostfs) and runs the host's own FRR, strongSwan and backbone.
//
// A machine lives in a network namespace of the host that holds what the
// kernel is plugged into: one end of a veth pair per wire (attached with
// UML's raw vector transport, so the guest sees a NIC) and a tap device
// for the control network. The host reaches the guest's agent over that
// tap, from inside the namespace: nothing touches the host's own network.
package uml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/backbone-net/backbone/internal/lab/console"
	"github.com/backbone-net/backbone/internal/lab/guest"
	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/node"
)

// The control network: a tap in the machine's host namespace and, in the
// guest, a NIC in a namespace of its own. Every machine has its own host
// namespace, so the addresses can be the same for all.
const (
	ControlTap    = "bbctl"
	ControlNetns  = "bbctl"
	hostCtlAddr   = "169.254.77.1/30"
	guestCtlIP    = "169.254.77.2"
	guestCtlAddr  = guestCtlIP + "/30"
	controlMAC    = "02:bb:00:00:00:01"
	AgentPort     = 7000
	InitCommand   = "lab-guest-init"
	defaultMemory = 512
)

// Files in a machine's directory.
const (
	pidFile     = "uml.pid"
	consoleFile = "console.log"
	tokenFile   = "agent.token"
	readyFile   = "agent.ready"
	reportFile  = "init.json"
	configFile  = "guest.json"
)

// NIC is one wire of the machine: HostIf is the veth end in the
// machine's namespace, Name what the guest calls it.
type NIC struct {
	HostIf string
	MAC    string
	Name   string
	// MTU the NIC boots with (0: 1500). The vector driver's maximum MTU
	// stays 1500: above that, this is the only way to get it.
	MTU int
}

// Spec describes a machine to start.
type Spec struct {
	// Name is the router's name: the guest's hostname and UML's umid.
	Name string
	// Dir holds the machine's host-side files; it must be one of the
	// Guest.Shares (or below one), since the guest writes to it.
	Dir string
	// Netns is the host namespace the kernel runs in (it must exist and
	// hold the NICs' host ends).
	Netns     string
	Kernel    Kernel
	MemoryMiB int
	// Binary is the backbone executable run as the guest's init; the guest
	// must see it at the same path (not under /tmp or /run unless shared).
	Binary string
	NICs   []NIC
	// Guest carries the caller's part of the guest config: shares, tmpfs,
	// binds, modules, environment. Start fills in the rest.
	Guest guest.Config
	// BootTimeout bounds the wait for the agent (default 60 s).
	BootTimeout time.Duration
}

// Machine is a running UML kernel.
type Machine struct {
	Name   string
	Dir    string
	Netns  string
	PID    int
	client *agent.Client
	// Boot is the time from start to the agent answering.
	Boot time.Duration
	// Init is what the guest's init reported.
	Init *agent.InitReport
}

// NICMAC derives a stable, locally administered MAC for a wire.
func NICMAC(node, ifname string) string {
	h := uint32(2166136261)
	for _, c := range []byte(node + "/" + ifname) {
		h = (h ^ uint32(c)) * 16777619
	}
	return fmt.Sprintf("02:bb:%02x:%02x:%02x:%02x", byte(h>>24), byte(h>>16), byte(h>>8), byte(h))
}

// Start boots a machine and returns once its agent answers. On failure
// nothing of the machine is left running.
func Start(ctx context.Context, s Spec) (*Machine, error) {
	if s.MemoryMiB == 0 {
		s.MemoryMiB = defaultMemory
	}
	if s.BootTimeout == 0 {
		s.BootTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{pidFile, readyFile, reportFile, consoleFile} {
		_ = os.Remove(filepath.Join(s.Dir, f))
	}
	token, err := agent.NewToken()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, tokenFile), []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	g := s.Guest
	g.Hostname = s.Name
	g.ModulesRoot = s.Kernel.ModulesRoot
	g.NICs = nil
	for _, n := range s.NICs {
		g.NICs = append(g.NICs, guest.NIC{MAC: n.MAC, Name: n.Name})
	}
	g.Control = guest.Control{MAC: controlMAC, Netns: ControlNetns, Address: guestCtlAddr, Listen: net.JoinHostPort(guestCtlIP, strconv.Itoa(AgentPort))}
	g.TokenFile = filepath.Join(s.Dir, tokenFile)
	g.ReadyFile = filepath.Join(s.Dir, readyFile)
	g.ReportFile = filepath.Join(s.Dir, reportFile)
	cfgPath := filepath.Join(s.Dir, configFile)
	if err := guest.WriteConfig(cfgPath, &g); err != nil {
		return nil, err
	}
	if err := addControlTap(s.Netns); err != nil {
		return nil, err
	}
	conlog, err := os.Create(filepath.Join(s.Dir, consoleFile))
	if err != nil {
		return nil, err
	}
	defer conlog.Close()
	cmd := exec.Command(s.Kernel.Binary, cmdline(s, cfgPath)...)
	cmd.Stdout, cmd.Stderr = conlog, conlog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// UML keeps its memory in an unlinked file under TMPDIR: /dev/shm is
	// tmpfs, so guest memory never touches a disk.
	cmd.Env = append(os.Environ(), "TMPDIR=/dev/shm")
	start := time.Now()
	if err := namespace.Do(s.Netns, cmd.Start); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", s.Name, s.Kernel.Binary, err)
	}
	m := &Machine{Name: s.Name, Dir: s.Dir, Netns: s.Netns, PID: cmd.Process.Pid}
	// Reap it if it dies while this process lives; it outlives us otherwise.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := os.WriteFile(filepath.Join(s.Dir, pidFile), []byte(strconv.Itoa(m.PID)+"\n"), 0o644); err != nil {
		m.Kill()
		return nil, err
	}
	m.client = newClient(s.Netns, token)
	if err := m.waitReady(ctx, s.BootTimeout, exited); err != nil {
		m.Kill()
		return nil, fmt.Errorf("%s: the UML kernel did not come up: %w\n%s", s.Name, err, console.Tail(filepath.Join(s.Dir, consoleFile), 25))
	}
	m.Boot = time.Since(start)
	return m, nil
}

// cmdline is the kernel command line of a machine.
func cmdline(s Spec, cfgPath string) []string {
	args := []string{
		fmt.Sprintf("mem=%dM", s.MemoryMiB),
		// Syscalls of the guest's programs are caught with seccomp, not
		// ptrace: measured faster here.
		"seccomp=on",
		"root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
		"umid=" + s.Name, "uml_dir=" + s.Dir,
		"con=null", "con0=null,fd:2", "ssl=null",
		"noreboot", "panic=-1",
		fmt.Sprintf("vec0:transport=tap,ifname=%s,mac=%s", ControlTap, controlMAC),
	}
	for i, n := range s.NICs {
		arg := fmt.Sprintf("vec%d:transport=raw,ifname=%s,mac=%s", i+1, n.HostIf, n.MAC)
		if n.MTU > 1500 {
			arg += fmt.Sprintf(",mtu=%d", n.MTU)
		}
		args = append(args, arg)
	}
	return append(args, "init="+s.Binary, "--", InitCommand, cfgPath)
}

// addControlTap creates the host end of the control network.
func addControlTap(ns string) error {
	return namespace.Do(ns, func() error {
		if l, err := netlink.LinkByName(ControlTap); err == nil {
			_ = netlink.LinkDel(l)
		}
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: ControlTap}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("control tap: %w", err)
		}
		addr, _ := netlink.ParseAddr(hostCtlAddr)
		l, err := netlink.LinkByName(ControlTap)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("control tap address: %w", err)
		}
		return netlink.LinkSetUp(l)
	})
}

// newClient talks to a machine's agent from inside its host namespace.
func newClient(ns, token string) *agent.Client {
	addr := net.JoinHostPort(guestCtlIP, strconv.Itoa(AgentPort))
	return &agent.Client{
		Addr:  addr + " in " + ns,
		Token: token,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var c net.Conn
			err := namespace.Do(ns, func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, "tcp", addr)
				return err
			})
			return c, err
		},
	}
}

func (m *Machine) waitReady(ctx context.Context, timeout time.Duration, exited <-chan struct{}) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ready := filepath.Join(m.Dir, readyFile)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-exited:
			return errors.New("the kernel exited during boot")
		case <-wctx.Done():
			return fmt.Errorf("no agent after %s", timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
	info, err := m.client.WaitReady(wctx, 20*time.Millisecond, func() error {
		if !m.Alive() {
			return errors.New("the kernel exited during boot")
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.Init = info.Init
	return nil
}

// Attach returns the machine whose files are in dir, started earlier by
// any process. It fails when the machine is not running.
func Attach(name, dir, ns string) (*Machine, error) {
	m := &Machine{Name: name, Dir: dir, Netns: ns}
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return nil, fmt.Errorf("%s: no UML kernel recorded in %s", name, dir)
	}
	m.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	if !m.Alive() {
		return nil, fmt.Errorf("%s: its UML kernel (pid %d) is not running; the console log is %s:\n%s", name, m.PID, filepath.Join(dir, consoleFile), console.Tail(filepath.Join(dir, consoleFile), 10))
	}
	token, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		return nil, fmt.Errorf("%s: agent token: %w", name, err)
	}
	m.client = newClient(ns, strings.TrimSpace(string(token)))
	return m, nil
}

// Alive reports whether the machine's kernel process runs (a recycled pid
// is not mistaken for it: its command line must name the machine's dir).
func (m *Machine) Alive() bool {
	if m.PID <= 1 || !namespace.Alive(m.PID) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", m.PID))
	return err == nil && bytes.Contains(b, []byte("\x00uml_dir="+m.Dir+"\x00"))
}

// Run implements node.Runner: the command runs in the guest, in the
// router's namespace.
func (m *Machine) Run(ctx context.Context, c node.Cmd) error {
	code, err := m.client.ExecStream(ctx, agent.ExecRequest{Argv: c.Argv, Env: c.Env}, c.Stdin, c.Stdout, c.Stderr)
	if err != nil {
		var ae *agent.Error
		if errors.As(err, &ae) && code == 127 {
			return &node.ExitError{Node: m.Name, Argv: c.Argv, Code: 127, Stderr: ae.Msg}
		}
		if ctx.Err() == nil && !m.Alive() {
			return fmt.Errorf("%s: its UML kernel is gone (%v); console log %s", m.Name, err, filepath.Join(m.Dir, consoleFile))
		}
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	if code != 0 {
		return &node.ExitError{Node: m.Name, Argv: c.Argv, Code: code}
	}
	return nil
}

// Ping asks the agent how the guest is.
func (m *Machine) Ping(ctx context.Context) (agent.Info, error) { return m.client.Ping(ctx) }

// Stop powers the guest off, then kills whatever of it is left (its
// kernel and the host processes of its programs), and returns once all of
// it is gone.
func (m *Machine) Stop(ctx context.Context) error {
	if m.Alive() {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if m.client != nil && m.client.Poweroff(pctx) == nil {
			deadline := time.Now().Add(3 * time.Second)
			for m.Alive() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		cancel()
	}
	return m.kill(time.Second)
}

// Kill crashes the machine at once (SIGKILL to its kernel and programs):
// what a power cut does to a router.
func (m *Machine) Kill() error { return m.kill(0) }

func (m *Machine) kill(grace time.Duration) error {
	pids := namespace.Processes([]string{m.Netns})
	if m.Alive() {
		pids = append(pids, m.PID)
	}
	if grace == 0 {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if left := namespace.Kill(pids, grace); len(left) > 0 {
		return fmt.Errorf("%s: processes %v of its UML kernel do not die", m.Name, left)
	}
	return nil
}

// ConsoleLog is the path of the guest's console output.
func (m *Machine) ConsoleLog() string { return filepath.Join(m.Dir, consoleFile) }

// Processes returns the UML kernels whose machine directory is under dir,
// found by their command line (also after their namespace is gone).
func Processes(dir string) []int {
	prefix := "uml_dir=" + filepath.Clean(dir) + "/"
	return namespace.ProcessesMatching(func(argv []string) bool {
		for _, a := range argv {
			if strings.HasPrefix(a, prefix) {
				return true
			}
		}
		return false
	})
}
