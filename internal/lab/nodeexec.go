package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/render/strongswan"
)

// NodeCommand is the hidden backbone subcommand that runs a command inside
// a namespace node: `backbone lab-node LAB NODE -- CMD...`.
const NodeCommand = "lab-node"

// EnterNode switches the calling thread into a namespace node: its network
// namespace and a private mount namespace where /run/frr and /etc/frr are
// the node's own directories, so that FRR daemons and a plain `vtysh` find
// each other exactly as on a dedicated router. The thread stays locked:
// callers exec.
func EnterNode(p layout.Lab, node string) error {
	runtime.LockOSThread()
	target, err := netns.GetFromName(p.Netns(node))
	if err != nil {
		return fmt.Errorf("node %q is not running in lab %q (no network namespace %s): run `backbone lab up`", node, p.Name, p.Netns(node))
	}
	defer target.Close()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for _, b := range nodeBinds(p, node) {
		for _, d := range []string{b[0], b[1]} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := unix.Mount(b[0], b[1], "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b[0], b[1], err)
		}
	}
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", p.Netns(node), err)
	}
	return nil
}

// nodeBinds are the node's own directories over the system's (source,
// target): in a namespace node a private mount namespace makes them, in a
// guest its init.
func nodeBinds(p layout.Lab, node string) [][2]string {
	return [][2]string{{p.FRRRunDir(node), "/run/frr"}, {p.FRRConfDir(node), "/etc/frr"}}
}

// nodeEnv is what commands run in a node get added to their environment:
// swanctl finds the node's charon, and FRR's tools are on the PATH.
func nodeEnv(p layout.Lab, node string) []string {
	env := []string{"BACKBONE_NODE=" + node, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/frr"}
	conf := filepath.Join(p.RouterConfigDir(node), strongswan.ConfFile)
	if _, err := os.Stat(conf); err == nil {
		env = append(env, "STRONGSWAN_CONF="+conf)
	}
	return env
}

// ExecInNode replaces the current process with argv running in a
// namespace node.
func ExecInNode(p layout.Lab, name string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("no command given")
	}
	if err := EnterNode(p, name); err != nil {
		return err
	}
	env := node.MergeEnv(os.Environ(), nodeEnv(p, name))
	path, err := lookPathIn(argv[0], env)
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, env)
}

func lookPathIn(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		cand := filepath.Join(dir, name)
		if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

// nsRunner runs commands in a namespace node of this machine, through
// `backbone lab-node` (network and mount namespace of the node).
type nsRunner struct {
	self string
	p    layout.Lab
	node string
}

func (r *nsRunner) Run(ctx context.Context, c node.Cmd) error {
	cmd := exec.CommandContext(ctx, r.self, append([]string{NodeCommand, r.p.Name, r.node, "--"}, c.Argv...)...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return &node.ExitError{Node: r.node, Argv: c.Argv, Code: code}
	}
	if err != nil {
		return fmt.Errorf("%s on %s: %w", node.Quote(c.Argv), r.node, err)
	}
	return nil
}
