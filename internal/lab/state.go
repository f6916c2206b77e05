// Package lab runs a rendered backbone on a real Linux kernel, behind one
// Session whatever the backend: natively in network namespaces of this
// machine, each router in its own User-mode Linux kernel, or the whole lab
// inside a qemu VM. A Session hands out a node.Runner per node; verify,
// chaos and `lab exec` reach nodes only through it.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/backbone-net/backbone/internal/layout"
)

// State is what lab.json records about a lab.
type State struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
	// Source is the intent file the lab was built from ("" for the
	// embedded default).
	Source  string    `json:"source,omitempty"`
	Created time.Time `json:"created"`
	// Nodes are the lab's nodes and where each runs.
	Nodes []NodeState `json:"nodes"`
	// Bare: the routers are fresh hosts for backbone deploy (lab up
	// --bare), reached over SSH.
	Bare bool `json:"bare,omitempty"`
	// Ready is set once the first CE-to-CE packets crossed (for a bare
	// lab: once every router booted and answers SSH).
	Ready   bool     `json:"ready"`
	Timings *Timings `json:"timings,omitempty"`
}

// Where a node runs.
const (
	PlaceNetns = "netns" // a network namespace of this machine's kernel
	PlaceUML   = "uml"   // its own UML kernel
	PlaceVM    = "vm"    // a network namespace inside the lab's qemu VM
)

// NodeState is one node of a lab.
type NodeState struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Place string `json:"place"`
}

// Node returns the state of a node (nil if the lab has none of that name).
func (s *State) Node(name string) *NodeState {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// NodeNames lists the lab's nodes.
func (s *State) NodeNames() []string {
	var out []string
	for _, n := range s.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// Timings split the time from `lab up` to the first CE-to-CE packets.
// Every time is measured from the start of `lab up`, boot included.
type Timings struct {
	Backend string `json:"backend"`
	// Boot is the time to a running guest: the VM's, or the slowest UML
	// kernel's (zero natively). UML kernels boot while the topology of the
	// other nodes is built.
	Boot time.Duration `json:"boot_ns,omitempty"`
	// Topology ends when every node's devices are configured.
	Topology time.Duration `json:"topology_ns"`
	// Daemons ends when every router's strongSwan and FRR started.
	Daemons   time.Duration `json:"daemons_ns"`
	FirstIPv4 time.Duration `json:"first_ipv4_ns"`
	FirstIPv6 time.Duration `json:"first_ipv6_ns"`
	Total     time.Duration `json:"total_ns"`
}

// ErrNotUp matches the errors of commands on a lab that is not up.
var ErrNotUp = errors.New("lab is not up")

// notUpError says which lab is not up and what to do.
type notUpError struct{ msg string }

func (e *notUpError) Error() string        { return e.msg }
func (e *notUpError) Is(target error) bool { return target == ErrNotUp }

// ReadState reads lab.json.
func ReadState(p layout.Lab) (*State, error) {
	data, err := os.ReadFile(p.StateFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &notUpError{fmt.Sprintf("lab %q is not up (no %s): run `backbone lab up`", p.Name, p.StateFile())}
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", p.StateFile(), err)
	}
	return &s, nil
}

// WriteState writes lab.json atomically.
func WriteState(p layout.Lab, s *State) error {
	if err := os.MkdirAll(p.StateDir, 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(s, "", "  ")
	tmp := p.StateFile() + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.StateFile())
}

// Running lists the labs that have state on this machine.
func Running() []string {
	ents, _ := os.ReadDir(layout.StateRoot)
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(layout.StateRoot, e.Name(), "lab.json")); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
