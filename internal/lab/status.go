package lab

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/lab/qemu"
	"github.com/backbone-net/backbone/internal/lab/uml"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
)

// NodeStatus is what runs on one node.
type NodeStatus struct {
	Node  string `json:"node"`
	Role  string `json:"role"`
	Place string `json:"place"`
	// Up: the node's namespace or kernel exists and answers.
	Up      bool           `json:"up"`
	Error   string         `json:"error,omitempty"`
	Daemons []DaemonStatus `json:"daemons,omitempty"`
}

// DaemonStatus is one daemon of a node.
type DaemonStatus struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
}

// statusScript lists a node's daemons from their pid files: "name pid
// up|down" per line. It runs inside the node, whatever the backend.
func statusScript(frrRunDir, nodeDir string) string {
	// Shell builtins only: under software emulation every process costs.
	return `for f in ` + frrRunDir + `/*.pid ` + nodeDir + `/charon.pid; do
  [ -f "$f" ] || continue
  n=${f##*/}; n=${n%.pid}; [ "$n" = watchfrr ] && continue
  read -r p < "$f"; s=down
  if [ -r /proc/$p/stat ] && read -r st < /proc/$p/stat; then st=${st##*) }; [ "${st%% *}" != Z ] && s=up; fi
  echo "$n $p $s"
done`
}

func parseStatus(out string) []DaemonStatus {
	var ds []DaemonStatus
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		ds = append(ds, DaemonStatus{Name: f[0], PID: pid, Running: f[2] == "up"})
	}
	return ds
}

// Daemons returns a node's daemons with their pids.
func (s *Session) Daemons(ctx context.Context, nodeName string) ([]DaemonStatus, error) {
	r, err := s.Node(nodeName)
	if err != nil {
		return nil, err
	}
	out, err := node.Output(ctx, r, "sh", "-c", statusScript("/run/frr", s.Paths.NodeDir(nodeName)))
	if err != nil {
		return nil, err
	}
	return parseStatus(string(out)), nil
}

// Status inspects every node and its daemons, in parallel.
func (s *Session) Status(ctx context.Context) []NodeStatus {
	nodes := s.State.Nodes
	out := make([]NodeStatus, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns := NodeStatus{Node: n.Name, Role: n.Role, Place: n.Place}
			if n.Place == PlaceNetns && !namespace.Exists(s.Paths.Netns(n.Name)) {
				ns.Error = "no network namespace " + s.Paths.Netns(n.Name)
				out[i] = ns
				return
			}
			ds, err := s.Daemons(ctx, n.Name)
			if err != nil {
				ns.Error = err.Error()
			} else {
				ns.Up, ns.Daemons = true, ds
			}
			out[i] = ns
		}()
	}
	wg.Wait()
	return out
}

// Healthy counts what is wrong in a status: nodes down and daemons down.
func Healthy(st []NodeStatus) (down int) {
	for _, n := range st {
		if !n.Up {
			down++
		}
		for _, d := range n.Daemons {
			if !d.Running {
				down++
			}
		}
	}
	return down
}

// DownReport says what Down removed.
type DownReport struct {
	Lab        string   `json:"lab"`
	Namespaces []string `json:"namespaces"`
	Processes  int      `json:"processes"`
	Removed    []string `json:"removed"`
}

// Down stops every process of a lab (its routers' daemons, their UML
// kernels, its qemu VM), deletes its namespaces and removes its state
// directory. It works from what exists (namespaces, processes found by
// namespace and command line), not from recorded state, so it also cleans
// up after a crash or a kill -9 of anything, and it returns only once
// every process it stopped is gone.
func Down(name string, progress Progress) (DownReport, error) {
	p := layout.ForLab(name)
	rep := DownReport{Lab: name, Namespaces: namespace.List(layout.NetnsPrefix(name))}
	pids := namespace.Processes(rep.Namespaces)
	for _, pid := range append(uml.Processes(p.StateDir), qemu.Processes(p.StateDir)...) {
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	if len(pids) > 0 {
		progress("down: stopping %d processes", len(pids))
	}
	rep.Processes = len(pids)
	if left := namespace.Kill(pids, 3*time.Second); len(left) > 0 {
		return rep, fmt.Errorf("lab %q: processes %v do not die even with SIGKILL; nothing was removed", name, left)
	}
	var errs []error
	for _, ns := range rep.Namespaces {
		if err := namespace.Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(rep.Namespaces) > 0 {
		progress("down: deleted %d namespaces", len(rep.Namespaces))
	}
	if _, err := os.Stat(p.StateDir); err == nil {
		rep.Removed = append(rep.Removed, p.StateDir)
		if err := os.RemoveAll(p.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return rep, fmt.Errorf("lab %q: %v", name, errs)
	}
	return rep, nil
}
