package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Down stops every process running in the lab's namespaces, deletes the
// namespaces and removes the runtime directory. It works from the
// namespaces themselves, not from recorded state, so it also cleans up
// after a crash. It returns what it removed.
func Down(p Paths, progress Progress) (DownReport, error) {
	var rep DownReport
	inodes := map[uint64]string{}
	for _, ns := range listNetns(p.NetnsPrefix()) {
		if ino, err := netnsInode(filepath.Join(netnsDir, ns)); err == nil {
			inodes[ino] = ns
		}
		rep.Namespaces = append(rep.Namespaces, ns)
	}
	pids := processesIn(inodes)
	if len(pids) > 0 {
		progress("down: stopping %d processes", len(pids))
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(alive(pids)) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range alive(pids) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	rep.Processes = len(pids)
	var firstErr error
	for _, ns := range rep.Namespaces {
		if err := deleteNetns(ns); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(rep.Namespaces) > 0 {
		progress("down: deleted %d namespaces", len(rep.Namespaces))
	}
	if _, err := os.Stat(p.RunDir); err == nil {
		rep.Removed = append(rep.Removed, p.RunDir)
	}
	if err := os.RemoveAll(p.RunDir); err != nil && firstErr == nil {
		firstErr = err
	}
	return rep, firstErr
}

// DownReport says what Down removed.
type DownReport struct {
	Namespaces []string `json:"namespaces"`
	Processes  int      `json:"processes"`
	Removed    []string `json:"removed"`
}

// processesIn returns the pids whose network namespace is one of inodes.
func processesIn(inodes map[uint64]string) []int {
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
		ino, err := netnsInode(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			continue
		}
		if _, ok := inodes[ino]; ok {
			out = append(out, pid)
		}
	}
	return out
}

func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			// A zombie still answers kill(0); check its state.
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if s := string(data); len(s) > 0 && !isZombie(s) {
				out = append(out, pid)
			}
		}
	}
	return out
}

func isZombie(stat string) bool {
	// The state follows the command name in parentheses.
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}
