// Package layout owns every path backbone uses on a machine: the state
// root of running labs, the cache of downloaded kernels, and the files of
// one lab. Nothing else spells these paths out.
package layout

import (
	"io"
	"os"
	"path/filepath"
	"strings"
)

// StateRoot holds the state of every running lab (on tmpfs: a reboot ends
// every lab, as it ends their namespaces and processes).
const StateRoot = "/run/backbone"

// CacheDir holds what backbone downloads once per machine: the kernels of
// the qemu and UML backends and the backend choice.
const CacheDir = "/var/cache/backbone"

// Lab locates one lab's files, all under StateDir (/run/backbone/<name>).
//
//	lab.json            the lab's state record (backend, nodes, timings)
//	config/             the rendered configuration (render's layout)
//	bin/backbone        the backbone binary the lab's guests run
//	start/<node>/       the scripts that start a node's daemons
//	machines/<node>/    one UML kernel per router: console log, pid, agent token;
//	                    image/ is a bare router's first-boot files
//	ssh/                a bare lab's SSH identity: deploy's key, known_hosts
//	inventory.yaml      a bare lab's inventory: how deploy reaches its routers
//	qemu.pid, vm.json   the qemu VM of the kvm and tcg backends (console.log, ...)
//	run/                runtime files of the routers (sockets, pids, logs);
//	                    local to the kernel that runs them: a tmpfs inside
//	                    a guest, since unix sockets cannot live on a share
type Lab struct {
	Name     string
	StateDir string
}

// ForLab returns the paths of lab name.
func ForLab(name string) Lab {
	return Lab{Name: name, StateDir: filepath.Join(StateRoot, name)}
}

// StateFile is the lab's state record.
func (l Lab) StateFile() string { return filepath.Join(l.StateDir, "lab.json") }

// ConfigDir holds the rendered configuration (render's output layout).
func (l Lab) ConfigDir() string { return filepath.Join(l.StateDir, "config") }

// RouterConfigDir holds one router's rendered files.
func (l Lab) RouterConfigDir(router string) string { return filepath.Join(l.ConfigDir(), router) }

// Binary is the copy of the backbone executable that guests run.
func (l Lab) Binary() string { return filepath.Join(l.StateDir, "bin", "backbone") }

// MachineDir holds the host-side files of one node's UML kernel.
func (l Lab) MachineDir(node string) string { return filepath.Join(l.StateDir, "machines", node) }

// MachineImage holds the files a bare router's guest lays over its root.
func (l Lab) MachineImage(node string) string { return filepath.Join(l.MachineDir(node), "image") }

// SSHDir holds a bare lab's SSH identity.
func (l Lab) SSHDir() string { return filepath.Join(l.StateDir, "ssh") }

// SSHKey is the private key deploy uses on a bare lab's routers.
func (l Lab) SSHKey() string { return filepath.Join(l.SSHDir(), "id_ed25519") }

// KnownHosts lists a bare lab's routers' host keys.
func (l Lab) KnownHosts() string { return filepath.Join(l.SSHDir(), "known_hosts") }

// Inventory is a bare lab's inventory file.
func (l Lab) Inventory() string { return filepath.Join(l.StateDir, "inventory.yaml") }

// StartScript is the script that starts one phase of a node's daemons.
func (l Lab) StartScript(node, phase string) string {
	return filepath.Join(l.StateDir, "start", node, phase+".sh")
}

// RunDir holds the routers' runtime files.
func (l Lab) RunDir() string { return filepath.Join(l.StateDir, "run") }

// NodesDir is the runtime directory of all nodes; it is also the runtime
// directory baked into rendered configs (charon's sockets and log).
func (l Lab) NodesDir() string { return filepath.Join(l.RunDir(), "nodes") }

// NodeDir is one node's runtime directory.
func (l Lab) NodeDir(node string) string { return filepath.Join(l.NodesDir(), node) }

// FRRRunDir is what the node sees as /run/frr.
func (l Lab) FRRRunDir(node string) string { return filepath.Join(l.NodeDir(node), "frr") }

// FRRConfDir is what the node sees as /etc/frr.
func (l Lab) FRRConfDir(node string) string { return filepath.Join(l.NodeDir(node), "etc") }

// Netns is the name of a node's network namespace on the host (for a node
// in a UML kernel: the namespace holding its kernel and its wires).
func (l Lab) Netns(node string) string { return NetnsPrefix(l.Name) + node }

// NetnsPrefix is shared by all namespace names of lab name. Names hold no
// dots, so lab "isp"'s prefix is never a prefix of lab "isp-6"'s.
func NetnsPrefix(name string) string { return "bb-" + name + "." }

// NodeOfNetns returns the node name of one of the lab's namespaces.
func (l Lab) NodeOfNetns(ns string) (string, bool) {
	return strings.CutPrefix(ns, NetnsPrefix(l.Name))
}

// RuntimeDir is the runtime directory rendered configs use for backbone
// name when no lab chooses one: the lab's nodes directory.
func RuntimeDir(name string) string { return ForLab(name).NodesDir() }

// InstallBinary copies the backbone executable at src to Binary(), unless
// the copy there is already the same file (size and modification time).
// The copy gets a new inode: guests running the old one keep it until it
// exits.
func (l Lab) InstallBinary(src string) error { return copyIfChanged(src, l.Binary()) }

func copyIfChanged(src, dst string) error {
	si, err := os.Stat(src)
	if err != nil {
		return err
	}
	if di, err := os.Stat(dst); err == nil && di.Size() == si.Size() && di.ModTime().Equal(si.ModTime()) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, si.ModTime(), si.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
