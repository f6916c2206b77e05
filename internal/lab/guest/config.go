// Package guest is the inside of a lab guest kernel (a UML kernel that
// runs one router): its PID 1 mounts what the router needs, loads kernel
// modules, names the network interfaces, and starts the agent that the
// host reaches over a private control network. The host writes a Config;
// the guest reads it at boot.
package guest

import (
	"encoding/json"
	"fmt"
	"os"
)

// Config is what a guest's init needs. The host writes it as JSON; the
// kernel command line names the file.
type Config struct {
	// Hostname of the guest (the router's name).
	Hostname string `json:"hostname"`
	// Shares are host directories mounted read-write at the same path in
	// the guest (hostfs). The rest of the host's / is visible read-only.
	Shares []string `json:"shares"`
	// Tmpfs are guest-local directories, mounted after the shares (e.g.
	// the lab's runtime directory, which holds unix sockets).
	Tmpfs []string `json:"tmpfs"`
	// Binds are bind mounts made last (e.g. the router's /etc/frr), each
	// source created first and owned by Owner when set.
	Binds []Bind `json:"binds,omitempty"`
	// ModulesRoot holds lib/modules/<kernel release>; Modules are loaded
	// at boot, others on demand through a modprobe pointed at it.
	ModulesRoot string   `json:"modules_root"`
	Modules     []string `json:"modules"`
	// NICs are renamed from the kernel's vecN to their planned names.
	NICs []NIC `json:"nics"`
	// Control is the host's way in: a NIC moved into its own network
	// namespace (so that the router's namespace shows nothing of it), and
	// the agent listening there.
	Control Control `json:"control"`
	// Env is added to the environment of every command the agent runs.
	Env []string `json:"env,omitempty"`
	// TokenFile holds the token the agent requires; ReadyFile and
	// ReportFile are written (on a share) once the agent listens.
	TokenFile  string `json:"token_file"`
	ReadyFile  string `json:"ready_file"`
	ReportFile string `json:"report_file"`
	// System, when set, makes the guest a whole host instead of a lab
	// router: see System.
	System *System `json:"system,omitempty"`
}

// System is a guest that boots like a fresh cloud VM: the host's / under a
// writable overlay (a guest-local tmpfs on top, so nothing reaches the
// host), the files of Image laid over it, and systemd as PID 1 booting
// Target, with the packages the host has installed but nothing of the
// backbone configured. The agent runs beside systemd.
type System struct {
	// Image is a host directory (on a share) whose tree is copied onto
	// the guest's root: hostname, SSH host keys and authorized keys, the
	// network configuration of the underlay interface, units.
	Image string `json:"image"`
	// Remove are files of the host the guest must not have (the host's
	// own SSH host keys): deleted from the guest's view.
	Remove []string `json:"remove,omitempty"`
	// Empty are directories of the host the guest sees empty (root's
	// home: a fresh VM has none of the host's shell setup).
	Empty []string `json:"empty,omitempty"`
	// Target is the systemd unit booted.
	Target string `json:"target"`
}

// Bind is a bind mount.
type Bind struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Owner string `json:"owner,omitempty"`
}

// NIC is a network interface of the guest, found by MAC address.
type NIC struct {
	MAC  string `json:"mac"`
	Name string `json:"name"`
}

// Control is the guest end of the control network.
type Control struct {
	MAC string `json:"mac"`
	// Netns is the guest namespace the control NIC is moved to.
	Netns string `json:"netns"`
	// Address is the guest's address with its prefix (CIDR).
	Address string `json:"address"`
	// Listen is the agent's address:port.
	Listen string `json:"listen"`
}

// ReadConfig reads a guest config file.
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("guest config: %w", err)
	}
	c := &Config{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("guest config %s: %w", path, err)
	}
	return c, nil
}

// WriteConfig writes c to path.
func WriteConfig(path string, c *Config) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
