package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, shared with
// iproute2 so that `ip netns` sees the lab's namespaces.
const netnsDir = "/run/netns"

// ensureNetnsDir makes /run/netns a shared mount point, as iproute2 does,
// so that namespaces created later are visible in other mount namespaces.
func ensureNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	}
	if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", netnsDir, err)
	}
	if err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", netnsDir, err)
	}
	return nil
}

// createNetns creates the named network namespace (replacing a stale one)
// without changing the calling goroutine's namespace.
func createNetns(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		return fmt.Errorf("network namespace %q already exists: run `backbone lab down` first", name)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread's namespace changes: never unlock it, so the runtime
		// discards the thread when this goroutine ends.
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("create network namespace %q: %w", name, err)
	}
	return nil
}

// deleteNetns removes a named namespace; a missing one is not an error.
func deleteNetns(name string) error {
	err := netns.DeleteNamed(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		_ = os.Remove(filepath.Join(netnsDir, name))
		return nil
	}
	return fmt.Errorf("delete network namespace %q: %w", name, err)
}

// listNetns returns the named namespaces whose names start with prefix.
func listNetns(prefix string) []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// inNetns runs fn on a thread inside the named namespace. The thread is
// returned to its original namespace, or discarded if that fails.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("network namespace %q: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter network namespace %q: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// netnsInode identifies a namespace by the inode of its bind mount.
func netnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
