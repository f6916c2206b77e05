package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/sshnode"
)

// Inventory says how deploy reaches each router. Every field has a
// default, so a backbone whose routers answer SSH as root on their
// underlay address with the operator's usual key needs no inventory at
// all. Passwords have no place in it: keys only (a key file or the SSH
// agent).
//
//	defaults: {user: admin, key: ~/.ssh/backbone, port: 22}
//	routers:
//	  pe101: {address: 192.0.2.10}
//	  pe201: {address: pe201.example.net, user: root}
type Inventory struct {
	// Source is where it was read from ("" for none: defaults only).
	Source   string            `yaml:"-"`
	Defaults Access            `yaml:"defaults"`
	Routers  map[string]Access `yaml:"routers"`
}

// Access is how to reach one router.
type Access struct {
	// Address is an IP address or host name (default: the router's
	// underlay address).
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
	User    string `yaml:"user"`
	// Key is a private key file (default: the SSH agent, then ~/.ssh/id_*).
	Key string `yaml:"key"`
	// KnownHosts is the known_hosts file host keys are checked against
	// (default ~/.ssh/known_hosts).
	KnownHosts string `yaml:"known_hosts"`
	// Netns: connect from this network namespace of this machine (a
	// management VRF, or a lab's underlay).
	Netns string `yaml:"netns"`
}

// InventoryFile is the inventory next to an intent file: pe.yaml's is
// pe.inventory.yaml.
func InventoryFile(intentPath string) string {
	ext := filepath.Ext(intentPath)
	return strings.TrimSuffix(intentPath, ext) + ".inventory.yaml"
}

// LoadInventory reads an inventory file (strict: unknown fields are
// errors, as in the intent).
func LoadInventory(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	inv := &Inventory{Source: path}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(inv); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// yaml names Go types ("field x not found in type deploy.Access"):
		// say it in the file's terms.
		var msgs []string
		for _, e := range te.Errors {
			line, rest, ok := strings.Cut(strings.TrimPrefix(e, "line "), ": ")
			if field, found := strings.CutPrefix(rest, "field "); ok && found {
				field, _, _ = strings.Cut(field, " not found")
				rest = fmt.Sprintf("unknown field %q: an inventory has defaults and routers, each with address, port, user, key, known_hosts, netns (no passwords: keys only)", field)
			}
			msgs = append(msgs, fmt.Sprintf("%s:%s: %s", path, line, rest))
		}
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	return inv, nil
}

// Targets resolves the inventory against a plan: one SSH target per
// router that has a host, in plan order. Every problem is reported at
// once: routers of the inventory the plan does not have, routers without
// a host, missing key files, a port out of range.
func (inv *Inventory) Targets(p *plan.Plan, acceptNew bool) ([]sshnode.Target, error) {
	var errs []string
	where := "inventory"
	if inv.Source != "" {
		where = inv.Source
	}
	var names []string
	for name := range inv.Routers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if r := p.Router(name); r == nil {
			errs = append(errs, fmt.Sprintf("%s: routers.%s: router %q is not in the intent", where, name, name))
		} else if r.Role == intent.RoleCE {
			errs = append(errs, fmt.Sprintf("%s: routers.%s: %s is a CE: backbone does not deploy CEs", where, name, name))
		}
	}
	var out []sshnode.Target
	for i, r := range p.Routers {
		if r.Role == intent.RoleCE {
			continue
		}
		if r.Host == nil {
			errs = append(errs, fmt.Sprintf("routers[%d] (%s) has no host: add host: {os: debian12|ubuntu24|rocky9|rhel9, network: networkmanager|networkd} to deploy it", i, r.Name))
			continue
		}
		a := inv.Defaults.merge(inv.Routers[r.Name])
		if a.Address == "" && r.Underlay != nil {
			if r.Underlay.IPv6.IsValid() {
				a.Address = r.Underlay.IPv6.Addr().String()
			} else {
				a.Address = r.Underlay.IPv4.Addr().String()
			}
		}
		if a.Port < 0 || a.Port > 65535 {
			errs = append(errs, fmt.Sprintf("%s: routers.%s.port: %d is not a port", where, r.Name, a.Port))
		}
		for _, f := range []struct{ field, path string }{{"key", a.Key}, {"known_hosts", a.KnownHosts}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(expand(f.path)); err != nil && (f.field == "key" || !acceptNew) {
				errs = append(errs, fmt.Sprintf("%s: routers.%s.%s: %v", where, r.Name, f.field, err))
			}
		}
		out = append(out, sshnode.Target{
			Name: r.Name, Address: a.Address, Port: a.Port, User: a.User,
			KeyFile: expand(a.Key), KnownHosts: expand(a.KnownHosts), Netns: a.Netns, AcceptNewHostKey: acceptNew,
		})
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

// merge returns d with the fields o sets replaced.
func (d Access) merge(o Access) Access {
	if o.Address != "" {
		d.Address = o.Address
	}
	if o.Port != 0 {
		d.Port = o.Port
	}
	if o.User != "" {
		d.User = o.User
	}
	if o.Key != "" {
		d.Key = o.Key
	}
	if o.KnownHosts != "" {
		d.KnownHosts = o.KnownHosts
	}
	if o.Netns != "" {
		d.Netns = o.Netns
	}
	return d
}

// expand resolves a leading ~/ to the home directory.
func expand(path string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return path
}
