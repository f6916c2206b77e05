package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/sshnode"
)

// A bare lab's routers are what a fresh cloud VM is: systemd, sshd, the
// network stack of their flavour holding only the underlay interface,
// FRR and strongSwan installed but not configured. backbone deploy
// configures them over SSH, as on real hosts.

// BareUnit is the systemd unit a bare router boots.
const BareUnit = "backbone-bare.target"

// bareHostKeyFiles are the host's own SSH host keys, hidden from the
// guests (each has its own).
var bareHostKeyFiles = []string{
	"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub",
	"/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ecdsa_key.pub",
	"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
}

// checkBare says why a plan cannot run as a bare lab: every backbone
// router needs a host flavour this machine's userland can play (Debian's:
// the guests run it).
func checkBare(p *plan.Plan) error {
	var errs []string
	for i, r := range p.Routers {
		if r.Role == intent.RoleCE {
			continue
		}
		switch {
		case r.Host == nil:
			errs = append(errs, fmt.Sprintf("routers[%d] (%s) has no host: add host: {os: debian12, network: networkmanager} (or networkd)", i, r.Name))
		case r.Host.RedHat():
			errs = append(errs, fmt.Sprintf("routers[%d].host.os: %s cannot be played here: the bare lab's routers run this machine's Debian userland (strongSwan's paths differ on %s); use os: debian12 with network: networkmanager for a Rocky-like router", i, r.Host.OS, r.Host.OS))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab up --bare:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// prepareBare makes the lab's SSH identity (a key pair for deploy, a host
// key per router, the known_hosts file), each router's image, and the
// inventory deploy reads.
func prepareBare(p layout.Lab, pl *plan.Plan) error {
	if err := os.MkdirAll(p.SSHDir(), 0o700); err != nil {
		return err
	}
	clientPub, err := writeKeyPair(p.SSHKey(), "backbone-lab-"+p.Name)
	if err != nil {
		return err
	}
	var known, routers []string
	var t sshnode.Target
	for _, r := range pl.Routers {
		if r.Role == intent.RoleCE {
			continue
		}
		img := p.MachineImage(r.Name)
		if err := os.RemoveAll(img); err != nil {
			return err
		}
		hostPub, err := writeImage(img, r, clientPub)
		if err != nil {
			return fmt.Errorf("%s: image: %w", r.Name, err)
		}
		t = bareTarget(p, r)
		known = append(known, knownhosts.Line([]string{knownhosts.Normalize(t.Address)}, hostPub))
		routers = append(routers, fmt.Sprintf("  %s: {address: %q}\n", r.Name, t.Address))
	}
	// The inventory says what bareTarget says, for deploy to read.
	var inv strings.Builder
	fmt.Fprintf(&inv, "# Written by backbone lab up --bare: how deploy reaches lab %q's routers.\n", p.Name)
	fmt.Fprintf(&inv, "# Connections start in the lab's underlay namespace, as from the internet.\n")
	fmt.Fprintf(&inv, "defaults:\n  user: %s\n  key: %s\n  known_hosts: %s\n  netns: %s\n", t.User, t.KeyFile, t.KnownHosts, t.Netns)
	fmt.Fprintf(&inv, "routers:\n%s", strings.Join(routers, ""))
	if err := os.WriteFile(p.KnownHosts(), []byte(strings.Join(known, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(p.Inventory(), []byte(inv.String()), 0o644)
}

// bareAddress is how deploy reaches a router: its underlay address.
func bareAddress(r *plan.Router) netip.Addr {
	if r.Underlay.IPv6.IsValid() {
		return r.Underlay.IPv6.Addr()
	}
	return r.Underlay.IPv4.Addr()
}

// writeKeyPair writes an ed25519 private key (OpenSSH format, 0600) and
// its .pub, unless the key exists, and returns the public key.
func writeKeyPair(path, comment string) (ssh.PublicKey, error) {
	if data, err := os.ReadFile(path); err == nil {
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return signer.PublicKey(), nil
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	return sshPub, os.WriteFile(path+".pub", []byte(line), 0o644)
}

// writeImage lays out what makes a router's guest a fresh cloud VM of its
// flavour, and returns its SSH host key.
func writeImage(dir string, r *plan.Router, client ssh.PublicKey) (ssh.PublicKey, error) {
	hostPub, err := writeKeyPair(filepath.Join(dir, "etc/ssh/ssh_host_ed25519_key"), "root@"+r.Name)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	network := "NetworkManager.service"
	if r.Host.Network == intent.NetworkD {
		network = "systemd-networkd.service"
	}
	files := map[string]string{
		"etc/hostname":   r.Name + "\n",
		"etc/machine-id": hex.EncodeToString(id) + "\n",
		"etc/ssh/sshd_config.d/backbone-lab.conf": "# backbone lab: keys only, no DNS lookups of clients\n" +
			"PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n",
		"root/.ssh/authorized_keys": string(ssh.MarshalAuthorizedKey(client)),
		"etc/systemd/system/" + BareUnit: fmt.Sprintf(`[Unit]
Description=backbone lab: a bare router (sshd and %s; FRR and strongSwan installed, nothing of the backbone configured)
Requires=basic.target
After=basic.target
Wants=dbus.service systemd-user-sessions.service ssh.service %s frr.service strongswan.service
AllowIsolate=yes
`, network, network),
	}
	u := r.Underlay
	switch r.Host.Network {
	case intent.NetworkManager:
		files["etc/NetworkManager/conf.d/00-backbone-lab.conf"] = "# like a cloud image: keyfiles only, no automatic DHCP profiles\n" +
			"[main]\nplugins=keyfile\nno-auto-default=*\n"
		var b strings.Builder
		fmt.Fprintf(&b, "[connection]\nid=cloud-%s\ntype=ethernet\ninterface-name=%s\nautoconnect=true\n\n", u.Interface, u.Interface)
		if u.IPv4.IsValid() {
			fmt.Fprintf(&b, "[ipv4]\nmethod=manual\naddress1=%s,%s\n\n", u.IPv4, u.GatewayV4)
		} else {
			b.WriteString("[ipv4]\nmethod=disabled\n\n")
		}
		if u.IPv6.IsValid() {
			fmt.Fprintf(&b, "[ipv6]\nmethod=manual\naddr-gen-mode=eui64\naddress1=%s,%s\n", u.IPv6, u.GatewayV6)
		} else {
			b.WriteString("[ipv6]\nmethod=disabled\n")
		}
		files["etc/NetworkManager/system-connections/cloud-"+u.Interface+".nmconnection"] = b.String()
	case intent.NetworkD:
		var b strings.Builder
		fmt.Fprintf(&b, "[Match]\nName=%s\n\n[Network]\nIPv6AcceptRA=no\nLinkLocalAddressing=ipv6\n", u.Interface)
		for _, a := range []struct {
			p  netip.Prefix
			gw netip.Addr
		}{{u.IPv6, u.GatewayV6}, {u.IPv4, u.GatewayV4}} {
			if a.p.IsValid() {
				fmt.Fprintf(&b, "Address=%s\nGateway=%s\n", a.p, a.gw)
			}
		}
		files["etc/systemd/network/10-cloud-"+u.Interface+".network"] = b.String()
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "root/") || strings.HasSuffix(name, ".nmconnection") {
			mode = 0o600
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			return nil, err
		}
	}
	return hostPub, os.Chmod(filepath.Join(dir, "root/.ssh"), 0o700)
}

// waitSystem waits until a bare router's systemd finished booting, and
// reports units that failed.
func (s *Session) waitSystem(ctx context.Context, name string, r node.Runner) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var state string
	var err error
	for {
		// The agent answers before systemd runs as PID 1 and listens:
		// until then systemctl cannot connect (no output) or says
		// "offline".
		var out []byte
		out, err = node.Output(ctx, r, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(string(out))
		if state == "running" {
			return nil
		}
		if (state != "" && state != "offline" && state != "unknown") || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	failed, _ := node.Output(ctx, r, "systemctl", "--failed", "--no-legend", "--plain")
	return fmt.Errorf("%s: systemd did not boot cleanly (state %q, %v); failed units:\n%s", name, state, err, strings.TrimSpace(string(failed)))
}

// waitBare waits until a bare router finished booting.
func (s *Session) waitBare(ctx context.Context, name string, progress Progress) error {
	r, err := s.guest(s.State.Node(name))
	if err != nil {
		return err
	}
	start := time.Now()
	if err := s.waitSystem(ctx, name, r); err != nil {
		return err
	}
	progress("bare: %s: systemd reached %s in %s", name, BareUnit, time.Since(start).Round(time.Millisecond))
	return nil
}

// bareTarget is how a bare router is reached over SSH (the lab's
// inventory is written from it).
func bareTarget(p layout.Lab, r *plan.Router) sshnode.Target {
	return sshnode.Target{Name: r.Name, Address: bareAddress(r).String(), User: "root",
		KeyFile: p.SSHKey(), KnownHosts: p.KnownHosts(), Netns: p.Netns(Underlay)}
}

// sshNode returns the SSH runner of a bare router, connecting once.
func (s *Session) sshNode(name string) (node.Runner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.ssh[name]; ok {
		return c, nil
	}
	c, err := sshnode.Dial(context.Background(), bareTarget(s.Paths, s.Config.Plan.Router(name)))
	if err != nil {
		return nil, err
	}
	s.ssh[name] = c
	return c, nil
}

// Close ends the session's SSH connections.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, c := range s.ssh {
		c.Close()
		delete(s.ssh, n)
	}
}
