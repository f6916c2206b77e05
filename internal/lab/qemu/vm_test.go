package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/lab/kmod/kmodtest"
)

func TestQemuArgs(t *testing.T) {
	q := qemuSpec{
		Binary: "/usr/bin/qemu-system-x86_64", Name: "backbone-vm", Accel: "tcg",
		CPUs: 2, MemoryMiB: 2048, Kernel: "/k/vmlinux", Initrd: "/s/initramfs.cpio",
		Append: kernelCmdline(), Console: "/run/backbone/a,b/console.log", PIDFile: "/run/backbone/a,b/qemu.pid",
		StateDir: "/run/backbone/a,b", HostPort: 40123,
	}
	args := q.args()
	joined := strings.Join(args, " ")
	after := func(flag string) []string {
		var vals []string
		for i, a := range args {
			if a == flag && i+1 < len(args) {
				vals = append(vals, args[i+1])
			}
		}
		return vals
	}
	for _, want := range []struct{ flag, val string }{
		{"-accel", "tcg,thread=multi"},
		{"-cpu", "max"},
		{"-smp", "2"},
		{"-m", "2048"},
		{"-kernel", "/k/vmlinux"},
		{"-initrd", "/s/initramfs.cpio"},
		{"-pidfile", "/run/backbone/a,b/qemu.pid"},
		{"-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40123-10.0.2.15:7000"},
		{"-chardev", "file,id=con0,path=/run/backbone/a,,b/console.log"},
		{"-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"},
		{"-fsdev", "local,id=state,path=/run/backbone/a,,b,security_model=none"},
		{"-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"},
		{"-device", "virtio-9p-pci,fsdev=state,mount_tag=state"},
		{"-device", "virtio-net-pci,netdev=n0,mac=" + GuestMAC},
	} {
		if !slices.Contains(after(want.flag), want.val) {
			t.Errorf("missing %s %s in %s", want.flag, want.val, joined)
		}
	}
	for _, flag := range []string{"-daemonize", "-nodefaults", "-no-reboot"} {
		if !slices.Contains(args, flag) {
			t.Errorf("missing %s", flag)
		}
	}
	if strings.Contains(joined, "readonly=on,multidevs=remap") && strings.Contains(strings.Join(after("-fsdev")[1:], " "), "readonly") {
		t.Error("the state share must be writable")
	}

	q.Accel = "kvm"
	kargs := q.args()
	if !slices.Contains(kargs, "kvm") || !slices.Contains(kargs, "host") {
		t.Errorf("kvm args: %v", kargs)
	}
}

func TestKernelCmdline(t *testing.T) {
	c := kernelCmdline()
	if !strings.Contains(c, "console=ttyS0") || !strings.Contains(c, "panic=-1") {
		t.Errorf("cmdline %q", c)
	}
	if strings.Contains(c, "quiet") {
		t.Errorf("cmdline %q must not be quiet: the console log explains failed boots", c)
	}
}

func TestPickPort(t *testing.T) {
	seen := map[int]bool{}
	for range 5 {
		p, err := pickPort()
		if err != nil {
			t.Fatal(err)
		}
		if p < 1024 || p > 65535 {
			t.Fatalf("port %d out of range", p)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("picked port %d is not free: %v", p, err)
		}
		ln.Close()
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Errorf("pickPort keeps returning the same port: %v", seen)
	}
}

// fakeKernel lays out a tiny lib/modules tree with a modules.dep shaped
// like Debian's.
func fakeKernel(t *testing.T) Kernel {
	t.Helper()
	root := t.TempDir()
	ver := "6.1.0-99-amd64"
	kmodtest.Tree(t, root, ver)
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-"+ver)
	os.WriteFile(vmlinuz, []byte("not a kernel"), 0o644)
	return Kernel{Version: ver, Vmlinuz: vmlinuz, ModulesDir: filepath.Join(root, "lib", "modules")}
}

func TestInitramfsContent(t *testing.T) {
	k := fakeKernel(t)
	dir := t.TempDir()
	busybox := filepath.Join(dir, "busybox")
	os.WriteFile(busybox, []byte("#!fake busybox"), 0o755)
	dst := filepath.Join(dir, "initramfs.cpio")
	stage2 := []string{"/run/backbone/lab x/bin/backbone", "lab-vm-agent", "--init", "--state-dir", "/run/backbone/lab x"}
	if err := buildInitramfs(dst, k, busybox, "/run/backbone/lab x", stage2, "/run/backbone/lab x/bin/backbone"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := listCPIO(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init", "bin/busybox", "bin/sh", "dev/console", "modules/virtio_pci.ko", "modules/9pnet_virtio.ko", "modules/9p.ko", "modules/overlay.ko", "modules/fscache.ko"} {
		if !slices.Contains(names, want) {
			t.Errorf("initramfs lacks %s; has %v", want, names)
		}
	}
	if slices.Contains(names, "modules/mpls_router.ko") {
		t.Error("initramfs should only carry the boot modules")
	}
	// The system cpio must agree with our writer.
	if cpio, err := exec.LookPath("cpio"); err == nil {
		out, err := exec.Command("sh", "-c", cpio+" -it --quiet < "+shq(dst)).CombinedOutput()
		if err != nil {
			t.Fatalf("cpio -t: %v\n%s", err, out)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		if !slices.Equal(got, names) {
			t.Errorf("cpio -t lists %v, we list %v", got, names)
		}
	}
}

func TestInitScriptOrder(t *testing.T) {
	s := initramfsSpec{
		Busybox: "/bin/busybox", StateDir: "/run/backbone/it's", ModulesDir: "/var/cache/backbone/kernel/6.1/lib/modules",
		Modules: []string{"/m/virtio.ko", "/m/9p.ko"},
		Stage2:  []string{"/run/backbone/it's/bin/backbone", "lab-vm-agent", "--init"},
	}
	script := s.initScript()
	idx := func(sub string) int {
		i := strings.Index(script, sub)
		if i < 0 {
			t.Fatalf("init script lacks %q:\n%s", sub, script)
		}
		return i
	}
	steps := []string{
		"insmod '/modules/virtio.ko'",
		"insmod '/modules/9p.ko'",
		"hostroot /lower",
		"mount -t overlay",
		"tmpfs /newroot/run",
		"tmpfs /newroot/tmp",
		`state '/newroot/run/backbone/it'\''s'`,
		"mount --bind '/lower/var/cache/backbone/kernel/6.1/lib/modules' /newroot/lib/modules",
		"mount --move /proc /newroot/proc",
		`exec switch_root /newroot '/run/backbone/it'\''s/bin/backbone' 'lab-vm-agent' '--init'`,
	}
	for i := 1; i < len(steps); i++ {
		if idx(steps[i-1]) > idx(steps[i]) {
			t.Errorf("%q must come before %q", steps[i-1], steps[i])
		}
	}
	if !strings.Contains(script, ",ro,") || strings.Contains(script, "quiet") {
		t.Errorf("host root must be mounted read-only:\n%s", script)
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("init script does not parse: %v\n%s", err, out)
		}
	}
}

func TestKernelPackageParsing(t *testing.T) {
	out := []byte("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n")
	pkg, err := parseKernelDepends(out)
	if err != nil || pkg != "linux-image-6.1.0-56-amd64" {
		t.Fatalf("got %q %v", pkg, err)
	}
	if v := kernelVersionFromPackage(pkg); v != "6.1.0-56-amd64" {
		t.Errorf("version %q", v)
	}
	if _, err := parseKernelDepends([]byte("")); err == nil || !strings.Contains(err.Error(), "apt-get update") {
		t.Errorf("empty apt-cache output: %v", err)
	}
	k := Kernel{Version: "v", Vmlinuz: "/a", ModulesDir: "/b", Vmlinux: "/c"}
	if got := parseCurrent(formatCurrent(k)); got != k {
		t.Errorf("current round trip: %+v", got)
	}
}

func TestLoadKernelFromCache(t *testing.T) {
	k := fakeKernel(t)
	cache := t.TempDir()
	if _, err := LoadKernel(cache); err == nil || !strings.Contains(err.Error(), "lab setup") {
		t.Fatalf("empty cache: %v", err)
	}
	os.MkdirAll(filepath.Join(cache, "kernel"), 0o755)
	os.WriteFile(currentFile(cache), formatCurrent(k), 0o644)
	got, err := LoadKernel(cache)
	if err != nil || got != k {
		t.Fatalf("got %+v %v", got, err)
	}
	if got.BootImage() != k.Vmlinuz {
		t.Errorf("boot image %s, want the bzImage when there is no vmlinux", got.BootImage())
	}
	if err := checkPVH(k.Vmlinuz); err == nil {
		t.Error("checkPVH accepted a non-ELF file")
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{StateDir: "/run/backbone/x/"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/run/backbone/x" || c.MemoryMiB != 2048 || c.CPUs != 2 || c.Accel != "auto" ||
		c.CacheDir != DefaultCacheDir || c.BinaryPath == "" || c.AgentArgs[0] != "lab-vm-agent" {
		t.Errorf("defaults: %+v", c)
	}
	for _, bad := range []Config{{StateDir: "rel"}, {StateDir: "/"}, {StateDir: "/x", Accel: "hvf"}, {StateDir: "/x", MemoryMiB: 64}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestAttachWithoutVM(t *testing.T) {
	_, err := Attach(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
}

// TestStopDeadAndLiveQemu checks that Stop cleans up after a crashed qemu
// and kills a live one that does not answer, identifying it by pidfile.
func TestStopDeadAndLiveQemu(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, pidFileName)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Dead: a pid that is certainly not our qemu.
	write(pidFileName, "999999\n")
	write(stateFileName, `{"pid":999999,"port":1}`)
	write(consoleName, "boot log\n")
	if Running(dir) {
		t.Fatal("Running with a dead pid")
	}
	m, err := Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Exec(t.Context(), execReq("true"), nil, nil); err == nil || !strings.Contains(err.Error(), "boot log") {
		t.Errorf("Exec on a dead VM: %v (want not running plus console tail)", err)
	}
	if err := m.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Error("pidfile left behind")
	}
	if _, err := os.Stat(filepath.Join(dir, consoleName)); err != nil {
		t.Error("console log should be kept")
	}

	// Live: a process whose command line carries our pidfile, like qemu's.
	cmd := exec.Command("sh", "-c", "sleep 60", "fake-qemu", "-pidfile", pidFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	write(pidFileName, fmt.Sprintf("%d\n", cmd.Process.Pid))
	write(stateFileName, `{"port":1}`) // nothing listens: poweroff fails fast
	if !Running(dir) {
		t.Fatal("Running false for a live process with our pidfile")
	}
	m, err = Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("fake qemu still running after Stop")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Stop took %s", d)
	}
	if Running(dir) {
		t.Error("still Running after Stop")
	}
}

// listCPIO returns the member names of a newc archive.
func listCPIO(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	var names []string
	off := 0
	skip := func(n int) error {
		_, err := io.CopyN(io.Discard, br, int64(n))
		off += n
		return err
	}
	for {
		hdr := make([]byte, 110)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("cpio header: %w", err)
		}
		off += 110
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("bad cpio magic %q", hdr[:6])
		}
		var size, nameSize int
		fmt.Sscanf(string(hdr[54:62]), "%08X", &size)
		fmt.Sscanf(string(hdr[94:102]), "%08X", &nameSize)
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(br, name); err != nil {
			return nil, err
		}
		off += nameSize
		if err := skip((4 - off%4) % 4); err != nil {
			return nil, err
		}
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			sort.Strings(names)
			return names, nil
		}
		names = append(names, n)
		if err := skip(size); err != nil {
			return nil, err
		}
		if err := skip((4 - off%4) % 4); err != nil {
			return nil, err
		}
	}
}
