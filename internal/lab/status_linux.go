package lab

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// NodeStatus is what runs on one node.
type NodeStatus struct {
	Node    string         `json:"node"`
	Netns   string         `json:"netns"`
	Present bool           `json:"present"`
	Daemons []DaemonStatus `json:"daemons,omitempty"`
}

// DaemonStatus is one daemon of a node.
type DaemonStatus struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
}

// Status inspects the lab's nodes and daemons.
func Status(p Paths, c *Config) []NodeStatus {
	var out []NodeStatus
	for _, n := range c.Nodes() {
		ns := NodeStatus{Node: n, Netns: p.Netns(n)}
		if _, err := os.Stat(filepath.Join(netnsDir, ns.Netns)); err == nil {
			ns.Present = true
		}
		pidfiles, _ := filepath.Glob(filepath.Join(p.FRRRunDir(n), "*.pid"))
		if pf := filepath.Join(p.NodeDir(n), "charon.pid"); fileExists(pf) {
			pidfiles = append(pidfiles, pf)
		}
		sort.Strings(pidfiles)
		for _, pf := range pidfiles {
			name := strings.TrimSuffix(filepath.Base(pf), ".pid")
			if name == "watchfrr" {
				continue
			}
			data, _ := os.ReadFile(pf)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			ds := DaemonStatus{Name: name, PID: pid}
			if pid > 0 && syscall.Kill(pid, 0) == nil && !isZombie(readStat(pid)) {
				ds.Running = true
			}
			ns.Daemons = append(ns.Daemons, ds)
		}
		out = append(out, ns)
	}
	return out
}

func readStat(pid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return string(data)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
