package lab

import (
	"net/netip"
	"path/filepath"
	"strings"
)

// Paths locates a lab's files, all under StateDir (/run/backbone/<name>):
// lab.json and the rendered configs, shared with the guest in VM mode, and
// RunDir (StateDir/run) for runtime files local to the kernel that runs the
// routers (sockets, pids, daemon logs): in VM mode the guest mounts a tmpfs
// there, since unix sockets cannot live on the shared folder.
type Paths struct {
	Name     string
	StateDir string
	RunDir   string
}

// Underlay is the name of the node that plays the provider network.
const Underlay = "underlay"

// PathsFor returns the standard paths of lab name.
func PathsFor(name string) Paths {
	return Paths{
		Name:     name,
		StateDir: filepath.Join("/run/backbone", name),
		RunDir:   filepath.Join("/run/backbone", name, "run"),
	}
}

// StateFile is the lab's state record.
func (p Paths) StateFile() string { return filepath.Join(p.StateDir, "lab.json") }

// ConfigDir holds the rendered configuration (render's output layout).
func (p Paths) ConfigDir() string { return filepath.Join(p.StateDir, "config") }

// NodesDir is the runtime directory of all nodes; it is also the
// RuntimeDir baked into rendered configs (charon's sockets and log).
func (p Paths) NodesDir() string { return filepath.Join(p.RunDir, "nodes") }

// NodeDir is one node's runtime directory.
func (p Paths) NodeDir(node string) string { return filepath.Join(p.NodesDir(), node) }

// FRRRunDir is bind-mounted on /run/frr in the node's mount namespace.
func (p Paths) FRRRunDir(node string) string { return filepath.Join(p.NodeDir(node), "frr") }

// FRRConfDir is bind-mounted on /etc/frr in the node's mount namespace.
func (p Paths) FRRConfDir(node string) string { return filepath.Join(p.NodeDir(node), "etc") }

// Netns is the network namespace name of a node.
func (p Paths) Netns(node string) string { return "bb-" + p.Name + "-" + node }

// NetnsPrefix is shared by all the lab's namespace names.
func (p Paths) NetnsPrefix() string { return "bb-" + p.Name + "-" }

// NodeOfNetns returns the node name of one of the lab's namespaces.
func (p Paths) NodeOfNetns(ns string) (string, bool) {
	if !strings.HasPrefix(ns, p.NetnsPrefix()) {
		return "", false
	}
	return strings.TrimPrefix(ns, p.NetnsPrefix()), true
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
