package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// NodeStartScripts returns the start scripts lab up wrote for a node, in
// the order they run (strongSwan, then FRR); a node without IPsec has no
// strongSwan script.
func NodeStartScripts(p Paths, node string) []string {
	var out []string
	for _, ph := range []string{phaseIPsec, phaseFRR} {
		if s := filepath.Join(p.NodeDir(node), ph+".sh"); fileExists(s) {
			out = append(out, s)
		}
	}
	return out
}

// FRRDaemonArgv is the command line that starts one FRR daemon inside a
// node, exactly as the node's FRR start script does it (daemonized, pid
// file and log under the node's /run/frr).
func FRRDaemonArgv(daemon string) []string {
	return []string{
		filepath.Join(FRRDir, daemon), "-d", "-F", "traditional", "-P", "0",
		"-i", "/run/frr/" + daemon + ".pid", "--log", "file:/run/frr/" + daemon + ".log",
	}
}

// NodeDaemons returns the daemons of one node with their pids (from the
// pid files, as Status reads them).
func NodeDaemons(p Paths, c *Config, node string) []DaemonStatus {
	for _, n := range Status(p, c) {
		if n.Node == node {
			return n.Daemons
		}
	}
	return nil
}

// RestartNode starts a node's daemons again after they died: its start
// scripts (strongSwan, then FRR) run inside the node as at lab up. The
// caller makes sure the old processes are gone.
func RestartNode(ctx context.Context, p Paths, node string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	scripts := NodeStartScripts(p, node)
	if len(scripts) == 0 {
		return fmt.Errorf("node %q of lab %q has no start scripts in %s: is the lab up?", node, p.Name, p.NodeDir(node))
	}
	for _, s := range scripts {
		out, err := exec.CommandContext(ctx, self, "lab-node", p.Name, node, "--", "/bin/sh", s).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %s failed: %v\n%s%s", node, filepath.Base(s), err, indent(string(out)), logTails(p, node))
		}
	}
	return nil
}
