package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/lab/kmod"
	"github.com/backbone-net/backbone/internal/lab/namespace"
)

// AgentCommand is the backbone subcommand that serves the agent; Init
// starts it as `backbone AgentCommand CONFIG`.
const AgentCommand = "lab-guest-agent"

// privateDirs get a guest-local tmpfs over the host's read-only view, so
// that daemons can write their runtime files, logs and state.
var privateDirs = []string{"/run", "/tmp", "/var/tmp", "/var/log", "/root", "/var/lib/frr", "/var/lib/strongswan"}

// modprobeWrapper is what the kernel runs to load a module on demand.
const modprobeWrapper = "/run/backbone-guest/modprobe"

// Init is PID 1 of a UML guest, started by the kernel as
// `backbone lab-guest-init CONFIG`. It prepares the router's system as
// Config says, then supervises the agent and reaps orphans forever. On a
// fatal error it logs and powers off, so the host sees the kernel exit.
func Init(cfgPath string, log io.Writer) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("lab-guest-init runs only as PID 1 of a lab guest")
	}
	// PID 1 gets no default signal actions; keep it that way for Go.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	logf := func(format string, args ...any) { fmt.Fprintf(log, "backbone-init: "+format+"\n", args...) }
	fatal := func(err error) error {
		logf("FATAL: %v; powering off", err)
		time.Sleep(200 * time.Millisecond)
		PowerOff()
		return err
	}
	start := time.Now()
	for _, m := range []struct{ src, dst, fs string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}} {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fatal(fmt.Errorf("mount %s: %w", m.dst, err))
		}
	}
	rep := agent.InitReport{KernelBoot: Uptime(), ModuleErrors: map[string]string{}}
	// Read the config before /run is covered by a tmpfs.
	cfg, err := ReadConfig(cfgPath)
	if err != nil {
		return fatal(err)
	}
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		logf("warning: %s", msg)
		rep.Warnings = append(rep.Warnings, msg)
	}
	if cfg.System != nil {
		if err := enterOverlayRoot(cfg); err != nil {
			return fatal(err)
		}
	}
	if err := mountSystem(cfg, warn); err != nil {
		return fatal(err)
	}
	if cfg.System != nil {
		if err := layImage(cfg); err != nil {
			return fatal(err)
		}
	}
	mt := time.Now()
	if err := setModprobe(cfg.ModulesRoot); err != nil {
		warn("on-demand module loading: %v", err)
	}
	rep.ModulesLoaded, rep.ModuleErrors = kmod.Load(kmodDir(cfg.ModulesRoot), cfg.Modules)
	rep.Modules = time.Since(mt)
	for m, e := range rep.ModuleErrors {
		warn("module %s: %s", m, e)
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		warn("hostname: %v", err)
	}
	if err := setupNICs(cfg); err != nil {
		return fatal(err)
	}
	if err := bindMounts(cfg.Binds); err != nil {
		return fatal(err)
	}
	rep.Setup = time.Since(start)
	if b, err := json.Marshal(rep); err == nil && cfg.ReportFile != "" {
		_ = os.WriteFile(cfg.ReportFile, b, 0o644)
	}
	logf("setup done in %.2fs (uptime %.2fs); starting the agent on %s", rep.Setup.Seconds(), Uptime().Seconds(), cfg.Control.Listen)
	if cfg.System != nil {
		return fatal(bootSystemd(cfg, cfgPath, logf))
	}
	if err := Supervise([]string{os.Args[0], AgentCommand, cfgPath}, agent.DefaultEnv, logf); err != nil {
		return fatal(err)
	}
	return nil
}

// systemd is the init of a System guest.
const systemd = "/lib/systemd/systemd"

// enterOverlayRoot makes the root a writable overlay: the host's / (the
// read-only hostfs root) below, a tmpfs above, and moves into it. /proc,
// /sys and /dev move along; the old root is detached.
func enterOverlayRoot(cfg *Config) error {
	if _, errs := kmod.Load(kmodDir(cfg.ModulesRoot), []string{"overlay"}); len(errs) > 0 {
		return fmt.Errorf("load overlay: %v", errs)
	}
	const scratch = "/tmp"
	if err := unix.Mount("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("tmpfs for the overlay: %w", err)
	}
	upper, work, root := scratch+"/upper", scratch+"/work", scratch+"/root"
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("overlay", root, "overlay", 0, "lowerdir=/,upperdir="+upper+",workdir="+work); err != nil {
		return fmt.Errorf("overlay root: %w", err)
	}
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if err := unix.Mount(d, root+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the overlay root: %w", d, err)
		}
	}
	const old = "/.backbone-oldroot"
	if err := os.MkdirAll(root+old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, root+old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount(old, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return os.Remove(old)
}

// layImage removes what the guest must not have, copies the System's
// image onto the root, and makes the UML kernel's modules the system's
// (so that modprobe and systemd-modules-load find them).
func layImage(cfg *Config) error {
	sys := cfg.System
	// First what the guest must not have, then the image (which may put
	// its own file at the same path).
	for _, r := range sys.Remove {
		if err := os.Remove(r); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove %s: %w", r, err)
		}
	}
	for _, d := range sys.Empty {
		// A tmpfs over it: deleting the host's tree through the overlay
		// would whiteout every file of it, one by one.
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=700"); err != nil {
			return fmt.Errorf("empty %s: %w", d, err)
		}
	}
	err := filepath.WalkDir(sys.Image, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sys.Image, p)
		dst := filepath.Join("/", rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm())
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = os.Remove(dst)
			return os.Symlink(target, dst)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_ = os.Remove(dst)
			if err := os.WriteFile(dst, data, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(dst, info.Mode().Perm())
		}
	})
	if err != nil {
		return fmt.Errorf("image %s: %w", sys.Image, err)
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	_ = os.MkdirAll("/lib/modules", 0o755)
	_ = os.Remove("/lib/modules/" + release)
	return os.Symlink(kmodDir(cfg.ModulesRoot), "/lib/modules/"+release)
}

// bootSystemd starts the agent on its own and hands PID 1 to systemd.
// It returns only if systemd cannot be started.
func bootSystemd(cfg *Config, cfgPath string, logf func(string, ...any)) error {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	p, err := os.StartProcess("/proc/self/exe", []string{os.Args[0], AgentCommand, cfgPath}, &os.ProcAttr{
		Dir: "/", Env: agent.DefaultEnv, Files: []*os.File{devnull, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return fmt.Errorf("start the agent: %w", err)
	}
	_ = p.Release()
	logf("booting systemd (%s) at %.2fs", cfg.System.Target, Uptime().Seconds())
	argv := []string{systemd, "--system", "--unit=" + cfg.System.Target, "--show-status=no", "--log-target=kmsg"}
	return fmt.Errorf("exec %s: %w", systemd, syscall.Exec(systemd, argv, []string{"container=", "TERM=dumb"}))
}

// kmodDir is the module directory of the running kernel under root.
func kmodDir(root string) string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return filepath.Join(root, "lib", "modules", unix.ByteSliceToString(u.Release[:]))
}

func mountSystem(cfg *Config, warn func(string, ...any)) error {
	private := privateDirs
	if cfg.System != nil {
		// The root is writable already; systemd mounts the rest itself.
		private = []string{"/run"}
	}
	for _, d := range private {
		if _, err := os.Stat(d); err != nil {
			continue // the host has no such directory: nothing to cover
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", d, err)
		}
	}
	for _, m := range []struct {
		src, dst, fs, data string
		flags              uintptr
		optional           bool
	}{
		{"devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666", unix.MS_NOSUID | unix.MS_NOEXEC, false},
		{"shm", "/dev/shm", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV, false},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, true},
		{"bpf", "/sys/fs/bpf", "bpf", "mode=700", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, true},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, m.flags, m.data); err != nil {
			if m.optional {
				warn("mount %s on %s: %v", m.fs, m.dst, err)
				continue
			}
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dst, err)
		}
	}
	for name, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, name)
	}
	for _, d := range []string{"/run/lock", namespace.Dir, filepath.Dir(modprobeWrapper)} {
		_ = os.MkdirAll(d, 0o755)
	}
	for _, s := range cfg.Shares {
		if err := os.MkdirAll(s, 0o755); err != nil {
			return fmt.Errorf("share %s: %w", s, err)
		}
		if err := unix.Mount("none", s, "hostfs", 0, s); err != nil {
			return fmt.Errorf("mount host directory %s: %w", s, err)
		}
	}
	for _, d := range cfg.Tmpfs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("tmpfs %s: %w", d, err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", d, err)
		}
	}
	return nil
}

// setModprobe points the kernel's on-demand module loading (nftables
// expressions, crypto templates) at the guest's module tree.
func setModprobe(root string) error {
	if root == "" {
		return fmt.Errorf("no module tree")
	}
	script := fmt.Sprintf("#!/bin/sh\nexec /sbin/modprobe -d %s \"$@\"\n", root)
	if err := os.WriteFile(modprobeWrapper, []byte(script), 0o755); err != nil {
		return err
	}
	return os.WriteFile("/proc/sys/kernel/modprobe", []byte(modprobeWrapper), 0o644)
}

// setupNICs puts loopback up, renames each NIC by MAC to its planned
// name, and moves the control NIC into its own namespace with its address.
func setupNICs(cfg *Config) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	byMAC := map[string]netlink.Link{}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		byMAC[strings.ToLower(l.Attrs().HardwareAddr.String())] = l
	}
	for _, n := range cfg.NICs {
		l, ok := byMAC[strings.ToLower(n.MAC)]
		if !ok {
			return fmt.Errorf("no interface with MAC %s for %s", n.MAC, n.Name)
		}
		if err := netlink.LinkSetName(l, n.Name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", l.Attrs().Name, n.Name, err)
		}
	}
	c := cfg.Control
	l, ok := byMAC[strings.ToLower(c.MAC)]
	if !ok {
		return fmt.Errorf("no control interface with MAC %s", c.MAC)
	}
	addr, err := netlink.ParseAddr(c.Address)
	if err != nil {
		return fmt.Errorf("control address: %w", err)
	}
	if err := namespace.EnsureDir(); err != nil {
		return err
	}
	if err := namespace.Create(c.Netns); err != nil {
		return err
	}
	ns, err := netns.GetFromName(c.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		return fmt.Errorf("move the control interface to %s: %w", c.Netns, err)
	}
	name := l.Attrs().Name
	return namespace.Do(c.Netns, func() error {
		for _, n := range []string{"lo", name} {
			l, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			if n == name {
				if err := netlink.AddrAdd(l, addr); err != nil {
					return fmt.Errorf("control address %s: %w", c.Address, err)
				}
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		return nil
	})
}

func bindMounts(binds []Bind) error {
	for _, b := range binds {
		for _, d := range []string{b.From, b.To} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("bind %s on %s: %w", b.From, b.To, err)
			}
		}
		if b.Owner != "" {
			if err := chown(b.From, b.Owner); err != nil {
				return err
			}
		}
		if err := unix.Mount(b.From, b.To, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.From, b.To, err)
		}
	}
	return nil
}

// chown gives dir to a user and its group.
func chown(dir, owner string) error {
	u, err := user.Lookup(owner)
	if err != nil {
		return fmt.Errorf("user %s: %w", owner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// ServeAgent is the agent of a UML guest (`backbone lab-guest-agent
// CONFIG`): it listens in the control namespace and runs commands in the
// router's own namespace, the guest's root one.
func ServeAgent(cfgPath string, log io.Writer) error {
	cfg, err := ReadConfig(cfgPath)
	if err != nil {
		return err
	}
	token, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("agent token: %w", err)
	}
	var rep *agent.InitReport
	if b, err := os.ReadFile(cfg.ReportFile); err == nil {
		rep = &agent.InitReport{}
		if json.Unmarshal(b, rep) != nil {
			rep = nil
		}
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	kernel := unix.ByteSliceToString(u.Release[:])
	srv := &agent.Server{
		Token: strings.TrimSpace(string(token)),
		Env:   append(append([]string(nil), agent.DefaultEnv...), cfg.Env...),
		Info: func() agent.Info {
			h, _ := os.Hostname()
			return agent.Info{Kernel: kernel, Hostname: h, Uptime: Uptime(), Init: rep}
		},
		Poweroff: PowerOff,
		Logf:     func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) },
	}
	var ln net.Listener
	if err := namespace.Do(cfg.Control.Netns, func() error {
		var err error
		ln, err = net.Listen("tcp", cfg.Control.Listen)
		return err
	}); err != nil {
		return fmt.Errorf("agent listen on %s in %s: %w", cfg.Control.Listen, cfg.Control.Netns, err)
	}
	fmt.Fprintf(log, "backbone-agent: listening on %s at %.2fs\n", cfg.Control.Listen, Uptime().Seconds())
	if cfg.ReadyFile != "" {
		_ = os.WriteFile(cfg.ReadyFile, fmt.Appendf(nil, "%s\n", Uptime()), 0o644)
	}
	return srv.Serve(context.Background(), ln)
}
