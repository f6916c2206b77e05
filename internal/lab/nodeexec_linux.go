package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// EnterNode switches the calling thread into a node: its network namespace
// and a private mount namespace where /run/frr and /etc/frr are the node's
// own directories, so that FRR daemons and a plain `vtysh` find each other
// exactly as on a dedicated router. The thread stays locked: callers exec.
func EnterNode(p Paths, node string) error {
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
	binds := [][2]string{{p.FRRRunDir(node), "/run/frr"}, {p.FRRConfDir(node), "/etc/frr"}}
	for _, b := range binds {
		if err := os.MkdirAll(b[0], 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(b[1], 0o755); err != nil {
			return err
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

// NodeEnv is the environment of commands run in a node.
func NodeEnv(p Paths, node string) []string {
	env := os.Environ()
	conf := p.ConfigDir() + "/" + node + "/strongswan.conf"
	if _, err := os.Stat(conf); err == nil {
		env = append(env, "STRONGSWAN_CONF="+conf)
	}
	return append(env, "BACKBONE_NODE="+node, "PATH="+os.Getenv("PATH")+":/usr/lib/frr:/usr/sbin:/sbin")
}

// ExecInNode replaces the current process with argv running in the node.
func ExecInNode(p Paths, node string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("no command given")
	}
	if err := EnterNode(p, node); err != nil {
		return err
	}
	env := NodeEnv(p, node)
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
			path = v // the last one wins, as in execve's environment
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
