package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/lab/qemu"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
)

// InVMEnv marks a backbone process that runs inside the lab's qemu VM.
const InVMEnv = "BACKBONE_IN_VM"

// UpInGuestArgs is how the host asks the VM to build the lab inside it;
// the guest prints its Timings as JSON.
func UpInGuestArgs(name string, timeout time.Duration) []string {
	return []string{"lab", "up", "--from-config", "--name", name, "--timeout", timeout.String()}
}

// upVM boots the lab's qemu VM (KVM or software emulation) and builds the
// lab natively inside it.
func (s *Session) upVM(ctx context.Context, o UpOptions) (*Timings, error) {
	accel := "tcg"
	if s.State.Backend == BackendKVM {
		accel = "kvm"
	}
	o.Progress("vm: booting a Debian kernel under qemu (%s)", accel)
	m, err := qemu.Start(ctx, qemu.Config{
		StateDir: s.Paths.StateDir, BinaryPath: s.self, MemoryMiB: o.VMMemoryMiB, Accel: accel,
		Modules:  append(append([]string(nil), qemu.DeviceModules...), s.Config.Modules()...),
		Progress: func(line string) { o.Progress("vm: %s", line) },
	})
	if err != nil {
		return nil, err
	}
	boot := time.Since(o.Start)
	o.Progress("vm: up at %s (%s)", boot.Round(time.Millisecond), m.Accel)
	var out bytes.Buffer
	argv := append([]string{qemu.GuestBinaryPath}, UpInGuestArgs(s.Paths.Name, o.Timeout)...)
	code, err := m.Exec(ctx, agent.ExecRequest{Argv: argv, Env: []string{InVMEnv + "=1"}}, &out, progressWriter{o.Progress})
	if err != nil {
		return nil, fmt.Errorf("lab up in the VM: %w", err)
	}
	if code != 0 {
		return nil, fmt.Errorf("lab up failed inside the VM (exit %d); the VM keeps running for inspection (`backbone lab exec`)", code)
	}
	var t Timings
	if err := json.Unmarshal(out.Bytes(), &t); err != nil {
		return nil, fmt.Errorf("lab up in the VM printed no timings: %v: %q", err, firstLine(out.String()))
	}
	// The guest measured from its own start.
	t.Topology += boot
	t.Daemons += boot
	t.Backend, t.Boot = s.State.Backend, boot
	if err := s.awaitFirstPackets(ctx, o, &t); err != nil {
		return &t, err
	}
	t.Total = time.Since(o.Start)
	return &t, nil
}

// progressWriter turns the guest's progress lines into ours.
type progressWriter struct{ p Progress }

func (w progressWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		// The guest prefixes its own elapsed time: keep the message.
		if i := strings.Index(line, "] "); strings.HasPrefix(line, "[") && i > 0 {
			line = line[i+2:]
		}
		if line != "" {
			w.p("vm: %s", line)
		}
	}
	return len(b), nil
}

// vmRunner runs commands in a namespace node inside the qemu VM.
type vmRunner struct {
	m    *qemu.Machine
	lab  string
	node string
}

// vmNode returns the runner of a node inside the lab's VM, after making
// sure the VM runs this very binary.
func vmNode(p layout.Lab, name string) (*vmRunner, error) {
	if !qemu.Running(p.StateDir) {
		return nil, fmt.Errorf("lab %q runs in a qemu VM that is not running: run `backbone lab down --name %s`, then `lab up`", p.Name, p.Name)
	}
	m, err := qemu.Attach(p.StateDir)
	if err != nil {
		return nil, err
	}
	if self, err := os.Executable(); err == nil {
		if err := m.SyncBinary(context.Background(), self); err != nil {
			return nil, err
		}
	}
	return &vmRunner{m: m, lab: p.Name, node: name}, nil
}

func (r *vmRunner) Run(ctx context.Context, c node.Cmd) error {
	req := agent.ExecRequest{
		Argv: append([]string{qemu.GuestBinaryPath, NodeCommand, r.lab, r.node, "--"}, c.Argv...),
		Env:  append([]string{InVMEnv + "=1"}, c.Env...),
	}
	code, err := r.m.ExecStream(ctx, req, c.Stdin, c.Stdout, c.Stderr)
	if err != nil {
		var ae *agent.Error
		if errors.As(err, &ae) {
			return &node.ExitError{Node: r.node, Argv: c.Argv, Code: code, Stderr: ae.Msg}
		}
		return fmt.Errorf("%s in the VM: %w", r.node, err)
	}
	if code != 0 {
		return &node.ExitError{Node: r.node, Argv: c.Argv, Code: code}
	}
	return nil
}

// vmRootRunner runs commands in the VM's own root namespace (the probe
// engine, which opens sockets in every node's namespace there).
type vmRootRunner struct{ m *qemu.Machine }

func (r *vmRootRunner) Run(ctx context.Context, c node.Cmd) error {
	code, err := r.m.ExecStream(ctx, agent.ExecRequest{Argv: c.Argv, Env: append([]string{InVMEnv + "=1"}, c.Env...)}, c.Stdin, c.Stdout, c.Stderr)
	if err != nil {
		return fmt.Errorf("the VM: %w", err)
	}
	if code != 0 {
		return &node.ExitError{Node: "the VM", Argv: c.Argv, Code: code}
	}
	return nil
}
