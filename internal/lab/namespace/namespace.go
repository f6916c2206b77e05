// Package namespace creates, enters and deletes named network namespaces
// (shared with iproute2 through /run/netns) and finds the processes that
// live in them.
package namespace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bind-mounted, shared with
// iproute2 so that `ip netns` sees them.
const Dir = "/run/netns"

// Path is the bind mount of namespace name.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether namespace name exists.
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// EnsureDir makes Dir a shared mount point, as iproute2 does, so that
// namespaces created later are visible in other mount namespaces.
func EnsureDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	}
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	return nil
}

// Create creates namespace name without changing the calling goroutine's
// namespace. An existing one is an error: it belongs to someone.
func Create(name string) error {
	if Exists(name) {
		return fmt.Errorf("network namespace %q already exists", name)
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

// Delete removes namespace name; a missing one is not an error.
func Delete(name string) error {
	err := netns.DeleteNamed(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		_ = os.Remove(Path(name))
		return nil
	}
	return fmt.Errorf("delete network namespace %q: %w", name, err)
}

// List returns the namespaces whose names start with prefix.
func List(prefix string) []string {
	ents, _ := os.ReadDir(Dir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Do runs fn on a thread inside namespace name ("" = the current one).
// Sockets fn opens stay in that namespace, and a process fn starts (with
// os/exec) is born there. The thread returns to its original namespace
// afterwards, or is discarded if that fails.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
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

// inode identifies a namespace by the inode of its file.
func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Processes returns the pids of the processes (other than this one) whose
// network namespace is one of the named ones.
func Processes(names []string) []int {
	inodes := map[uint64]bool{}
	for _, n := range names {
		if ino, err := inode(Path(n)); err == nil {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if ino, err := inode(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && inodes[ino] {
			out = append(out, pid)
		}
	}
	return out
}

// Alive reports whether pid is a running process (not gone, not a zombie).
func Alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// Kill stops pids: SIGTERM, then SIGKILL for those still alive after
// grace. It returns the pids still alive after a further wait (processes
// in uninterruptible sleep), which callers must report.
func Kill(pids []int, grace time.Duration) []int {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if rest := waitGone(pids, grace); len(rest) > 0 {
		for _, pid := range rest {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return waitGone(rest, 5*time.Second)
	}
	return nil
}

// waitGone waits up to d for pids to exit and returns those still alive.
func waitGone(pids []int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var alive []int
		for _, p := range pids {
			if Alive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProcessesMatching returns the pids (other than this one) whose command
// line satisfies match.
func ProcessesMatching(match func(argv []string) bool) []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) && Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}
