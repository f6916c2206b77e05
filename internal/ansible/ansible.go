// Package ansible writes an Ansible project that deploys a backbone: an
// inventory with a group per role, host variables from the plan, the
// configs backbone rendered for each router (the same files backbone
// deploy installs), a playbook and its roles (project/), and the dynamic
// inventory that carries the configs inline so that a changed intent
// needs no regenerated files.
//
// Rendering stays in backbone. The only files Ansible renders itself are
// the ones that hold keys (swanctl's secrets, a router's private key):
// their templates read backbone's secret store through a lookup on the
// controller, so no key is ever in the project, the inventory or a diff.
// The e2e tests check that those templates give byte for byte what
// backbone renders.
package ansible

import (
	"crypto/sha256"
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render"
	"github.com/backbone-net/backbone/internal/render/host"
	"github.com/backbone-net/backbone/internal/render/strongswan"
	"github.com/backbone-net/backbone/internal/sshnode"
)

//go:embed all:project
var static embed.FS

// Options say how Ansible reaches the routers and where the keys are.
type Options struct {
	// Targets are the routers as deploy reaches them (address, user, key,
	// known_hosts, network namespace), by router name.
	Targets []sshnode.Target
	// SecretsFile is backbone's secret store, read on the controller.
	SecretsFile string
	// Proxy is the command that dials a router from a network namespace
	// of the controller (backbone's ssh-proxy), for targets with Netns.
	Proxy string
	// NoAnsibleHost leaves ansible_host to another inventory source
	// (NetBox's nb_inventory, from the routers' primary IPs).
	NoAnsibleHost bool
	// InventoryCommand is the command line inventory.sh runs (the
	// dynamic inventory); empty: no inventory.sh.
	InventoryCommand string
	// NetBox, when set, is the backbone's name in NetBox: the project
	// gets a netbox.yml for netbox.netbox.nb_inventory.
	NetBox string
}

// hostFile is one rendered file as the roles install it.
type hostFile struct {
	Path    string `yaml:"path" json:"path"`
	Src     string `yaml:"src,omitempty" json:"src,omitempty"`
	Content string `yaml:"content,omitempty" json:"content,omitempty"`
	Mode    string `yaml:"mode" json:"mode"`
	Owner   string `yaml:"owner" json:"owner"`
	Group   string `yaml:"group" json:"group"`
	Apply   string `yaml:"apply" json:"apply"`
	Device  string `yaml:"device,omitempty" json:"device,omitempty"`
	// State is what the role compares with the router's file (backbone_state's
	// state.sh): "SHA256 MODE:OWNER:GROUP".
	State string `yaml:"state" json:"state"`
}

// router is what the project knows of one deployed router.
type router struct {
	name  string
	role  string
	vars  map[string]any
	files []host.File
}

// routers renders each deployed router's files and variables. Files with
// keys are left out: the roles' templates make them.
func routers(p *plan.Plan, keys strongswan.Credentials, o Options) ([]router, error) {
	targets := map[string]sshnode.Target{}
	for _, t := range o.Targets {
		targets[t.Name] = t
	}
	var out []router
	var errs []string
	for _, r := range p.Routers {
		t, ok := targets[r.Name]
		if !ok || r.Role == intent.RoleCE {
			continue
		}
		files, err := host.Render(p, r, keys)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var kept []host.File
		for _, f := range files {
			if !f.Secret {
				kept = append(kept, f)
			}
		}
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].Order < kept[j].Order })
		vars := hostVars(p, r, t, o)
		vars["bb_modules"] = modules(kept)
		out = append(out, router{name: r.Name, role: r.Role, vars: vars, files: kept})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ansible: %s", strings.Join(errs, "\n"))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ansible: intent %q has no router to deploy: give its PE and P routers a host: {os: ..., network: ...}", p.Name)
	}
	return out, nil
}

// hostVars are a router's variables: how to reach it, and what the roles
// need besides its files.
func hostVars(p *plan.Plan, r *plan.Router, t sshnode.Target, o Options) map[string]any {
	v := map[string]any{}
	if !o.NoAnsibleHost {
		v["ansible_host"] = t.Address
	}
	if t.Port != 0 && t.Port != 22 {
		v["ansible_port"] = t.Port
	}
	user := t.User
	if user == "" {
		user = "root"
	}
	v["ansible_user"] = user
	if user != "root" {
		v["ansible_become"] = true
	}
	if t.KeyFile != "" {
		v["ansible_ssh_private_key_file"] = t.KeyFile
	}
	// The SSH options, also as two shorter variables for the static
	// inventory (Project), where lines stay within ansible-lint's 160.
	var ssh []string
	opt := func(name, value string) {
		v[name] = value
		ssh = append(ssh, value)
	}
	if t.KnownHosts != "" {
		opt("bb_ssh_known_hosts", "-o UserKnownHostsFile="+t.KnownHosts)
	}
	if t.Netns != "" && o.Proxy != "" {
		opt("bb_ssh_proxy", fmt.Sprintf("-o ProxyCommand='%s --netns %s %%h %%p'", o.Proxy, t.Netns))
	}
	if len(ssh) > 0 {
		v["ansible_ssh_common_args"] = strings.Join(ssh, " ")
	}
	ipsec := strongswan.Needed(r)
	v["bb_router"] = r.Name
	v["bb_os"] = r.Host.OS
	v["bb_network"] = r.Host.Network
	v["bb_packages"] = packages(r, ipsec)
	v["bb_ipsec"] = ipsec
	v["bb_ipsec_auth"] = p.Encryption.Auth
	v["bb_swanctl_dir"] = host.PathsOf(r.Host).Swanctl
	var peers []map[string]string
	ospf, sas := 0, 0
	for _, i := range r.Interfaces {
		ospf++
		if i.Encrypted {
			sas++
			if p.Encryption.Auth == "psk" {
				peers = append(peers, map[string]string{"name": i.Peer, "key": plan.LinkKey(r.Name, i.Peer)})
			}
		}
	}
	if peers == nil {
		peers = []map[string]string{}
	}
	v["bb_ipsec_psk_peers"] = peers
	v["bb_verify"] = map[string]int{"ospf_neighbors": ospf, "vpn_peers": len(r.Peers), "ike_sas": sas}
	return v
}

// packages a router needs, by its OS family and network stack.
func packages(r *plan.Router, ipsec bool) []string {
	redhat := r.Host.RedHat()
	out := []string{"frr"}
	if !redhat {
		out = append(out, "frr-pythontools")
	}
	if ipsec {
		if redhat {
			out = append(out, "strongswan")
		} else {
			out = append(out, "strongswan-swanctl", "charon-systemd")
		}
	}
	if r.Host.Network == intent.NetworkManager {
		out = append(out, map[bool]string{true: "NetworkManager", false: "network-manager"}[redhat])
	}
	return out
}

// modules are the kernel modules of the router's modules-load.d file.
func modules(files []host.File) []string {
	out := []string{}
	for _, f := range files {
		if f.Path != host.ModulesFile {
			continue
		}
		for _, l := range strings.Split(string(f.Data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
	}
	return out
}

func fileOf(f host.File) hostFile {
	owner, group, _ := strings.Cut(f.Owner, ":")
	return hostFile{Path: f.Path, Mode: fmt.Sprintf("0%o", f.Mode.Perm()), Owner: owner, Group: group, Apply: f.Apply, Device: f.Device,
		State: fmt.Sprintf("%x %o:%s:%s", sha256.Sum256(f.Data), f.Mode.Perm(), owner, group)}
}

// groups are the inventory's groups: backbone, with a child group per
// role (pe, p).
func groups(rs []router) map[string][]string {
	g := map[string][]string{}
	for _, r := range rs {
		g[r.role] = append(g[r.role], r.name)
	}
	return g
}

// Project returns the files of the Ansible project (paths relative to its
// directory), sorted by path.
func Project(p *plan.Plan, keys strongswan.Credentials, o Options) ([]render.File, error) {
	rs, err := routers(p, keys, o)
	if err != nil {
		return nil, err
	}
	var out []render.File
	err = fs.WalkDir(static, "project", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(name)
		out = append(out, render.File{Path: strings.TrimPrefix(name, "project/"), Data: data, Mode: 0o644})
		return err
	})
	if err != nil {
		return nil, err
	}
	add := func(name string, v any, comment string) error {
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		out = append(out, render.File{Path: name, Data: append([]byte("---\n# "+comment+"\n"), data...), Mode: 0o644})
		return nil
	}
	// The static inventory: groups by role, each router's variables with
	// it (not in host_vars/, which would also override the dynamic
	// inventory's), its files under files/.
	hostVars := map[string]any{}
	for _, r := range rs {
		var files []hostFile
		for _, f := range r.files {
			hf := fileOf(f)
			hf.Src = "{{ playbook_dir }}/files/" + r.name + f.Path
			files = append(files, hf)
			out = append(out, render.File{Path: path.Join("files", r.name, f.Path), Data: f.Data, Mode: 0o644})
		}
		vars := map[string]any{"bb_files": files}
		for k, v := range r.vars {
			vars[k] = v
		}
		if _, ok := vars["ansible_ssh_common_args"]; ok {
			vars["ansible_ssh_common_args"] = `{{ bb_ssh_known_hosts | default("") }} {{ bb_ssh_proxy | default("") }}`
		}
		hostVars[r.name] = vars
	}
	children := map[string]any{}
	g := groups(rs)
	for _, role := range slices.Sorted(maps.Keys(g)) {
		hosts := map[string]any{}
		for _, name := range g[role] {
			hosts[name] = hostVars[name]
		}
		children[role] = map[string]any{"hosts": hosts}
	}
	inv := map[string]any{"all": map[string]any{"children": map[string]any{
		"backbone": map[string]any{"vars": groupVars(p, o), "children": children}}}}
	if err := add("inventory.yml", inv, "The routers of backbone "+p.Name+", a group per role, with their variables from the plan.\n"+
		"# Written by backbone ansible: change the intent and run it again, not this file."); err != nil {
		return nil, err
	}
	// OpenSSH's connection sharing is per backbone: a lab and another
	// with the same addresses (or a lab brought up again) never share a
	// stale connection.
	for i, f := range out {
		if f.Path == "ansible.cfg" {
			out[i].Data = append(slices.Clone(f.Data), []byte("control_path_dir = ~/.ansible/cp/backbone-"+p.Name+"\n")...)
		}
	}
	if o.InventoryCommand != "" {
		out = append(out, render.File{Path: "inventory.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n# The dynamic inventory: the plan as it is now, configs inline.\n#   ansible-playbook -i inventory.sh site.yml\nexec " + o.InventoryCommand + " \"$@\"\n")})
	}
	if o.NetBox != "" {
		out = append(out, render.File{Path: "netbox.yml", Mode: 0o644, Data: netboxInventory(o.NetBox)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func groupVars(p *plan.Plan, o Options) map[string]any {
	return map[string]any{"bb_backbone": p.Name, "bb_secrets_file": o.SecretsFile}
}

// Inventory is the dynamic inventory (ansible-inventory's script format,
// `--list`): the same groups and variables as the project's, each
// router's files inline in bb_files.
func Inventory(p *plan.Plan, keys strongswan.Credentials, o Options) (map[string]any, error) {
	rs, err := routers(p, keys, o)
	if err != nil {
		return nil, err
	}
	hostvars := map[string]any{}
	var all []string
	for _, r := range rs {
		var files []hostFile
		for _, f := range r.files {
			hf := fileOf(f)
			hf.Content = string(f.Data)
			files = append(files, hf)
		}
		vars := map[string]any{"bb_files": files}
		for k, v := range r.vars {
			vars[k] = v
		}
		hostvars[r.name] = vars
		all = append(all, r.name)
	}
	g := groups(rs)
	out := map[string]any{
		"_meta":    map[string]any{"hostvars": hostvars},
		"all":      map[string]any{"children": []string{"backbone", "ungrouped"}},
		"backbone": map[string]any{"children": slices.Sorted(maps.Keys(g)), "vars": groupVars(p, o)},
	}
	for role, hosts := range g {
		out[role] = map[string]any{"hosts": hosts}
	}
	return out, nil
}

// netboxInventory is the configuration of NetBox's inventory plugin for
// the backbone's routers: virtual machines (and devices) tagged bb-NAME,
// grouped by role, ansible_host from their primary IP.
func netboxInventory(name string) []byte {
	return []byte(`---
# The routers from NetBox (backbone netbox push), with the netbox.netbox
# collection's inventory plugin; URL and token from NETBOX_API and
# NETBOX_TOKEN. backbone supplies each router's configuration: run
#   ansible-playbook -i inventory.sh -i netbox.yml site.yml
# (later sources win: ansible_host is NetBox's primary IP).
plugin: netbox.netbox.nb_inventory
validate_certs: false
config_context: false
interfaces: false
services: false
fetch_all: false
plurals: false
device_query_filters:
  - tag: bb-` + name + `
vm_query_filters:
  - tag: bb-` + name + `
groups:
  backbone: role in ['bb-pe', 'bb-p']
  pe: role == 'bb-pe'
  p: role == 'bb-p'
`)
}
