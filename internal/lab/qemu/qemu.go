package qemu

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Guest network of the control channel (qemu user networking defaults).
const (
	GuestIP    = "10.0.2.15"
	GuestCIDR  = GuestIP + "/24"
	GuestMAC   = "52:54:00:12:34:56"
	AgentPort  = 7000
	qemuBinary = "qemu-system-x86_64"
)

// qemuSpec is one qemu invocation.
type qemuSpec struct {
	Binary    string
	Name      string
	Accel     string // kvm or tcg
	CPUs      int
	MemoryMiB int
	Kernel    string
	Initrd    string
	Append    string
	Console   string // file receiving the guest's ttyS0
	PIDFile   string
	StateDir  string // shared read-write with tag "state"
	HostPort  int    // 127.0.0.1:HostPort -> guest AgentPort
}

// qemuOpt escapes a value for qemu's comma-separated option syntax.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// kernelCmdline is the guest kernel command line. No "quiet": the console
// log is what explains a failed boot.
func kernelCmdline() string {
	return strings.Join([]string{
		"console=ttyS0",
		"rdinit=/init",
		"panic=-1", // with -no-reboot: a guest panic ends qemu at once
		"mitigations=off",
		"i8042.noaux", "i8042.nokbd", "i8042.nopnp",
		"8250.nr_uarts=1",
		"net.ifnames=0",
	}, " ")
}

func (q qemuSpec) args() []string {
	a := []string{
		"-name", q.Name + ",process=" + q.Name,
		"-machine", "q35",
		"-nodefaults", "-no-user-config",
		"-display", "none", "-vga", "none",
		"-no-reboot",
		"-m", strconv.Itoa(q.MemoryMiB),
		"-smp", strconv.Itoa(q.CPUs),
	}
	switch q.Accel {
	case "kvm":
		a = append(a, "-accel", "kvm", "-cpu", "host")
	default:
		a = append(a, "-accel", "tcg,thread=multi", "-cpu", "max")
	}
	a = append(a,
		"-kernel", q.Kernel,
		"-initrd", q.Initrd,
		"-append", q.Append,
		"-chardev", "file,id=con0,path="+qemuOpt(q.Console),
		"-serial", "chardev:con0",
		"-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
		"-fsdev", "local,id=state,path="+qemuOpt(q.StateDir)+",security_model=none",
		"-device", "virtio-9p-pci,fsdev=state,mount_tag=state",
		// restrict=on: the guest cannot reach the host or anything beyond;
		// only the explicit forward to the agent exists.
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-%s:%d", q.HostPort, GuestIP, AgentPort),
		"-device", "virtio-net-pci,netdev=n0,mac="+GuestMAC,
		"-device", "virtio-rng-pci",
		"-pidfile", q.PIDFile,
		"-daemonize",
	)
	return a
}

// pickPort returns a currently free TCP port on 127.0.0.1. qemu binds it a
// moment later; a lost race shows up as a hostfwd error and is retried by
// the caller with a new port.
func pickPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
