package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/backbone-net/backbone/internal/lab/guest"
	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/lab/kmod"
)

// GuestHostname is the VM's hostname.
const GuestHostname = "backbone-vm"

// initReportPath is guest-local (on the guest's /run tmpfs).
const initReportPath = "/run/backbone-vm/init.json"

type guestOptions struct {
	init      bool
	stateDir  string
	tokenFile string
	listen    string
	mac       string
	modules   []string
	log       io.Writer
}

// RunGuest is the guest side of the VM, behind the hidden command
// `backbone lab-vm-agent`. With --init it is the guest's PID 1 (started by
// the initramfs through switch_root): it finishes the mounts, sets the
// hostname, loads the lab's kernel modules, configures the control
// interface, then starts and supervises the agent (the same binary without
// --init) and reaps orphans. Without --init it is the agent server.
func RunGuest(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lab-vm-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o guestOptions
	var modules string
	fs.BoolVar(&o.init, "init", false, "run as the VM's PID 1: set up the guest, then supervise the agent")
	fs.StringVar(&o.stateDir, "state-dir", "", "lab state dir (shared with the host at the same path)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the token clients must present")
	fs.StringVar(&o.listen, "listen", fmt.Sprintf("%s:%d", GuestIP, AgentPort), "agent listen address")
	fs.StringVar(&o.mac, "mac", GuestMAC, "MAC address of the control interface")
	fs.StringVar(&modules, "modules", strings.Join(DeviceModules, ","), "kernel modules to load (comma-separated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if modules != "" {
		o.modules = strings.Split(modules, ",")
	}
	o.log = stderr
	if o.init {
		return guestInit(o, args)
	}
	return guestServe(o)
}

func (o guestOptions) logf(format string, args ...any) {
	fmt.Fprintf(o.log, "backbone-init: "+format+"\n", args...)
}

func guestInit(o guestOptions, args []string) error {
	if os.Getpid() != 1 {
		return errors.New("lab-vm-agent --init only runs as PID 1 inside the backbone VM")
	}
	// PID 1 gets no default signal actions; keep it that way for Go.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	now := guest.Uptime()
	rep := agent.InitReport{KernelBoot: now, ModuleErrors: map[string]string{}}
	if b, err := os.ReadFile(stage1TimesPath); err == nil {
		var t0, t1 float64
		if n, _ := fmt.Sscan(string(b), &t0, &t1); n == 2 {
			sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
			rep.KernelBoot, rep.Initramfs, rep.InitExec = sec(t0), sec(t1-t0), now-sec(t1)
		}
	}
	o.logf("stage 2 (%s) at %.2fs", os.Args[0], now.Seconds())
	start := time.Now()
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		o.logf("warning: %s", msg)
		rep.Warnings = append(rep.Warnings, msg)
	}
	fatal := func(format string, args ...any) error {
		o.logf("FATAL: "+format+"; powering off", args...)
		time.Sleep(500 * time.Millisecond)
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		return fmt.Errorf(format, args...)
	}

	mounts := []struct {
		src, target, fstype, data string
		flags                     uintptr
		optional                  bool
	}{
		{"devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666", unix.MS_NOSUID | unix.MS_NOEXEC, false},
		{"shm", "/dev/shm", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV, false},
		{"bpf", "/sys/fs/bpf", "bpf", "mode=700", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, true},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, true},
	}
	for _, m := range mounts {
		os.MkdirAll(m.target, 0o755)
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil {
			if m.optional {
				warn("mount %s on %s: %v", m.fstype, m.target, err)
				continue
			}
			return fatal("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
	for name, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		os.Symlink(target, name)
	}
	for _, d := range []string{"/run/lock", "/run/netns", filepath.Dir(initReportPath)} {
		os.MkdirAll(d, 0o755)
	}
	if err := unix.Sethostname([]byte(GuestHostname)); err != nil {
		warn("set hostname: %v", err)
	}

	mt := time.Now()
	rep.ModulesLoaded, rep.ModuleErrors = kmod.Load(runningModulesDir(), o.modules)
	rep.Modules = time.Since(mt)
	for _, m := range o.modules {
		if e, ok := rep.ModuleErrors[kmod.Name(m)]; ok {
			o.logf("module %s: %s", m, e)
		}
	}
	o.logf("loaded %d modules in %.2fs", len(rep.ModulesLoaded), rep.Modules.Seconds())

	if err := setupNetwork(o.mac, GuestCIDR); err != nil {
		return fatal("control network: %v", err)
	}
	rep.Setup = time.Since(start)
	if b, err := json.Marshal(rep); err == nil {
		os.WriteFile(initReportPath, b, 0o644)
	}
	o.logf("setup done in %.2fs; starting the agent on %s", rep.Setup.Seconds(), o.listen)

	// Supervise the agent: same binary and arguments without --init.
	var childArgs []string
	for _, a := range args {
		if a != "--init" && a != "-init" {
			childArgs = append(childArgs, a)
		}
	}
	argv := append([]string{os.Args[0]}, os.Args[1:len(os.Args)-len(args)]...)
	argv = append(argv, childArgs...)
	if err := guest.Supervise(argv, agent.DefaultEnv, o.logf); err != nil {
		return fatal("%v", err)
	}
	return nil
}

func setupNetwork(mac, cidr string) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	// The virtio NIC appears when virtio_net is bound; give it a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac) {
				if err := netlink.AddrReplace(l, addr); err != nil {
					return fmt.Errorf("address %s on %s: %w", cidr, l.Attrs().Name, err)
				}
				if err := netlink.LinkSetUp(l); err != nil {
					return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no interface with MAC %s (is virtio_net loaded?)", mac)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func guestServe(o guestOptions) error {
	token := ""
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("agent token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	var rep *agent.InitReport
	if b, err := os.ReadFile(initReportPath); err == nil {
		rep = &agent.InitReport{}
		if json.Unmarshal(b, rep) != nil {
			rep = nil
		}
	}
	var u unix.Utsname
	unix.Uname(&u)
	kernel := unix.ByteSliceToString(u.Release[:])
	srv := &agent.Server{
		Token: token,
		Info: func() agent.Info {
			h, _ := os.Hostname()
			return agent.Info{Kernel: kernel, Hostname: h, Uptime: guest.Uptime(), Init: rep}
		},
		Poweroff: guest.PowerOff,
		Logf:     func(format string, args ...any) { fmt.Fprintf(o.log, format+"\n", args...) },
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		ln, err = net.Listen("tcp", o.listen)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("agent listen on %s: %w", o.listen, err)
	}
	fmt.Fprintf(o.log, "backbone-agent: listening on %s at %.2fs\n", o.listen, guest.Uptime().Seconds())
	if o.stateDir != "" {
		// Tells the host (watching the shared state dir) to connect now.
		os.WriteFile(filepath.Join(o.stateDir, readyName), fmt.Appendf(nil, "%s\n", guest.Uptime()), 0o644)
	}
	return srv.Serve(context.Background(), ln)
}

// runningModulesDir is the running kernel's /lib/modules/<release>.
func runningModulesDir() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}
