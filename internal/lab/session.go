package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/sshnode"
)

// Session is a lab on this machine: its state, its configuration, and the
// way to each of its nodes whatever the backend.
type Session struct {
	Paths  layout.Lab
	State  *State
	Config *Config
	// self is this executable (it enters namespace nodes).
	self string

	mu     sync.Mutex
	guests map[string]node.Runner
	ssh    map[string]*sshnode.Client
}

// Open returns the session of a running lab.
func Open(name string) (*Session, error) {
	p := layout.ForLab(name)
	st, err := ReadState(p)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(p.ConfigDir())
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w (rebuild it: `backbone lab down --name %s`, then `lab up`)", name, err, name)
	}
	return newSession(p, st, cfg)
}

func newSession(p layout.Lab, st *State, cfg *Config) (*Session, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the backbone executable: %w", err)
	}
	return &Session{Paths: p, State: st, Config: cfg, self: self, guests: map[string]node.Runner{}, ssh: map[string]*sshnode.Client{}}, nil
}

// Resolve finds the lab a command means: the one named (--name), else the
// one an intent file describes (-f), else the only lab running.
func Resolve(name, intentPath string) (string, error) {
	if name != "" {
		// The name becomes a directory under the state root that down
		// removes: never a path.
		if err := intent.CheckName(name); err != nil {
			return "", fmt.Errorf("--name: %w", err)
		}
		return name, nil
	}
	if n, ok := strings.CutPrefix(intentPath, "netbox://"); ok {
		// A backbone in NetBox (-f netbox://NAME) is its lab's name.
		return Resolve(n, "")
	}
	if intentPath != "" {
		doc, err := intent.LoadFile(intentPath)
		if err != nil {
			return "", err
		}
		in := doc.Intent
		if in.Name == "" {
			return "", fmt.Errorf("%s: the intent has no name: add `name:`", intentPath)
		}
		return in.Name, nil
	}
	labs := Running()
	switch len(labs) {
	case 0:
		return "", &notUpError{"no lab is up: run `backbone lab up`"}
	case 1:
		return labs[0], nil
	}
	return "", fmt.Errorf("%d labs are up (%s): say which with --name", len(labs), strings.Join(labs, ", "))
}

// Backend is the lab's backend.
func (s *Session) Backend() string { return s.State.Backend }

// Node returns the Runner of a node.
func (s *Session) Node(name string) (node.Runner, error) {
	n := s.State.Node(name)
	if n == nil {
		return nil, fmt.Errorf("lab %q has no node %q: use one of %s", s.Paths.Name, name, strings.Join(s.State.NodeNames(), ", "))
	}
	if n.Place == PlaceNetns {
		return &nsRunner{self: s.self, p: s.Paths, node: name}, nil
	}
	if s.bare(name) && s.State.Ready {
		// A bare router is reached as deploy reaches it: over SSH.
		return s.sshNode(name)
	}
	return s.guest(n)
}

// bare reports whether a node is a bare lab's router.
func (s *Session) bare(name string) bool {
	n := s.State.Node(name)
	return s.State.Bare && n != nil && n.Place == PlaceUML
}

// guest returns the runner of a node in a guest kernel: its agent.
func (s *Session) guest(n *NodeState) (node.Runner, error) {
	name := n.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.guests[name]; ok {
		return r, nil
	}
	var r node.Runner
	var err error
	switch n.Place {
	case PlaceUML:
		r, err = attachMachine(s.Paths, name)
	case PlaceVM:
		r, err = vmNode(s.Paths, name)
	default:
		err = fmt.Errorf("lab %q: node %q runs in an unknown place %q", s.Paths.Name, name, n.Place)
	}
	if err != nil {
		return nil, err
	}
	s.guests[name] = r
	return r, nil
}

// Exec runs a command in a node with the caller's standard streams and
// returns its exit code (for `lab exec`). In a namespace node it replaces
// this process, so that terminals and signals behave as on a router.
func (s *Session) Exec(ctx context.Context, name string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	n := s.State.Node(name)
	if n == nil {
		return 0, fmt.Errorf("lab %q has no node %q: use one of %s", s.Paths.Name, name, strings.Join(s.State.NodeNames(), ", "))
	}
	if n.Place == PlaceNetns {
		return 0, ExecInNode(s.Paths, name, argv)
	}
	r, err := s.Node(name)
	if err != nil {
		return 0, err
	}
	err = r.Run(ctx, node.Cmd{Argv: argv, Stdin: stdin, Stdout: stdout, Stderr: stderr})
	var ee *node.ExitError
	if errors.As(err, &ee) {
		return ee.Code, nil
	}
	return 0, err
}
