package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/backbone-net/backbone/internal/lab/namespace"
)

// KVMUnusable returns why KVM is not worth trying on this machine: no
// usable /dev/kvm, or a KVM guest that failed to boot earlier with this
// host kernel and qemu build. "" means it may work.
func KVMUnusable(cacheDir string) string {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return qemuBinary + " not found"
	}
	return kvmUnusable(cacheDir, qemu)
}

// ProbeKVM boots a throwaway guest under KVM with a short deadline and
// powers it off: KVM counts as working only when a guest really boots
// (on some hosts /dev/kvm answers but guests hang). A failure is
// remembered, so later runs skip KVM at once.
func ProbeKVM(ctx context.Context, cfg Config) error {
	if why := KVMUnusable(cfg.CacheDir); why != "" {
		return fmt.Errorf("%s", why)
	}
	cfg.Accel = "kvm"
	if cfg.KVMProbeTimeout == 0 {
		cfg.KVMProbeTimeout = 8 * time.Second
	}
	cfg.BootTimeout = cfg.KVMProbeTimeout
	m, err := Start(ctx, cfg)
	if err != nil {
		if qemu, lerr := exec.LookPath(qemuBinary); lerr == nil && ctx.Err() == nil {
			c := cfg.CacheDir
			if c == "" {
				c = DefaultCacheDir
			}
			rememberKVMFailure(c, qemu, err)
		}
		return err
	}
	return m.Stop(context.Background())
}

// kvmUnusable returns why KVM should not be tried, or "".
func kvmUnusable(cacheDir, qemu string) string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("/dev/kvm not usable (%v)", err)
	}
	f.Close()
	b, err := os.ReadFile(filepath.Join(cacheDir, "kvm-probe"))
	if err == nil && strings.HasPrefix(string(b), kvmProbeKey(qemu)+"\n") {
		return fmt.Sprintf("a KVM guest failed to boot earlier on this host kernel and qemu (delete %s to retry)", filepath.Join(cacheDir, "kvm-probe"))
	}
	return ""
}

// kvmProbeKey identifies the host kernel and qemu build a KVM failure was
// seen with.
func kvmProbeKey(qemu string) string {
	var u syscall.Utsname
	syscall.Uname(&u)
	rel := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	key := "host=" + string(rel)
	if fi, err := os.Stat(qemu); err == nil {
		key += fmt.Sprintf(" qemu=%d/%d", fi.Size(), fi.ModTime().Unix())
	}
	return key
}

func firstLine(err error) string { return strings.SplitN(err.Error(), "\n", 2)[0] }

func rememberKVMFailure(cacheDir, qemu string, cause error) {
	msg := firstLine(cause)
	os.WriteFile(filepath.Join(cacheDir, "kvm-probe"), []byte(kvmProbeKey(qemu)+"\nfailed: "+msg+"\n"), 0o644)
}

// Processes returns the qemu processes of the VM of stateDir, found by
// their command line (also when the pidfile was never written or is gone).
func Processes(stateDir string) []int {
	pidFile := filepath.Join(canonicalDir(stateDir), pidFileName)
	return namespace.ProcessesMatching(func(argv []string) bool {
		for i, a := range argv {
			if a == "-pidfile" && i+1 < len(argv) && argv[i+1] == pidFile {
				return true
			}
		}
		return false
	})
}
