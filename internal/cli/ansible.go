package cli

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/ansible"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render"
	"github.com/backbone-net/backbone/internal/secrets"
	"github.com/backbone-net/backbone/internal/sshnode"
)

type ansibleFlags struct {
	deployFlags
	noAnsibleHost bool
}

func (f *ansibleFlags) register(cmd *cobra.Command) {
	intentFlag(cmd, &f.file)
	cmd.Flags().StringVar(&f.inventory, "inventory", "", "how to reach the routers, as for deploy (default: FILE.inventory.yaml, else a bare lab's, else each router's underlay address as root)")
	cmd.Flags().StringVar(&f.secrets, "secrets", "", "secrets store the playbook's lookup reads (default ~/.local/state/backbone/<name>.secrets.json)")
	cmd.Flags().BoolVar(&f.noAnsibleHost, "no-ansible-host", false, "leave ansible_host to another inventory source (NetBox's nb_inventory)")
}

// options resolves the plan, the routers' access and the secret store
// (keys the configs need are generated and saved first).
func (f *ansibleFlags) options(e *env) (*plan.Plan, ansible.Options, *secrets.Store, error) {
	_, p, err := loadPlan(f.file, e.stderr)
	if err != nil {
		return nil, ansible.Options{}, nil, err
	}
	ts, _, err := f.targetsFor(p)
	if err != nil {
		return nil, ansible.Options{}, nil, err
	}
	store, err := openSecrets(p, f.secrets)
	if err != nil {
		return nil, ansible.Options{}, nil, err
	}
	secretsPath, err := filepath.Abs(store.Path())
	if err != nil {
		return nil, ansible.Options{}, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, ansible.Options{}, nil, err
	}
	o := ansible.Options{Targets: ts, SecretsFile: secretsPath, Proxy: self + " ssh-proxy", NoAnsibleHost: f.noAnsibleHost}
	if o.InventoryCommand, err = f.inventoryCommand(self, secretsPath); err != nil {
		return nil, ansible.Options{}, nil, err
	}
	if name, ok := strings.CutPrefix(f.file, NetBoxScheme); ok {
		o.NetBox = name
	}
	return p, o, store, nil
}

// inventoryCommand is the command line of the dynamic inventory for the
// same intent, inventory and secrets, with absolute paths.
func (f *ansibleFlags) inventoryCommand(self, secretsPath string) (string, error) {
	argv := []string{self, "ansible", "inventory"}
	for _, fl := range []struct{ name, val string }{{"-f", f.file}, {"--inventory", f.inventory}, {"--secrets", secretsPath}} {
		if fl.val == "" {
			continue
		}
		v := fl.val
		if !strings.HasPrefix(v, NetBoxScheme) && v != "-" {
			abs, err := filepath.Abs(v)
			if err != nil {
				return "", err
			}
			v = abs
		}
		argv = append(argv, fl.name, v)
	}
	if f.noAnsibleHost {
		argv = append(argv, "--no-ansible-host")
	}
	return node.Quote(argv), nil
}

func newAnsibleCmd(e *env) *cobra.Command {
	var f ansibleFlags
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ansible",
		Short: "Write an Ansible project that deploys the backbone: inventory, playbook, roles, the rendered configs",
		Long: `ansible -o DIR writes a ready Ansible project for the backbone:

  DIR/site.yml          the playbook (roles backbone_packages, _network, _frr,
                        _ipsec, then _verify; tags packages, network, frr,
                        ipsec, verify)
  DIR/inventory.yml     the routers, a group per role (pe, p) under backbone
  DIR/host_vars/R.yml   each router's variables from the plan and its files
  DIR/files/R/...       the configs backbone rendered (the ones deploy installs)
  DIR/inventory.sh      the dynamic inventory (backbone ansible inventory)
  DIR/netbox.yml        NetBox's nb_inventory, for -f netbox://NAME

Keys are not in the project: the templates of swanctl's secrets read
backbone's secret store through a lookup on the controller. Files backbone
wrote before and no longer needs are removed; other files in DIR stay.

  backbone ansible -o site && cd site && ansible-playbook site.yml --check --diff`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("ansible: -o DIR: where to write the project")}
			}
			p, o, ks, err := f.options(e)
			if err != nil {
				return err
			}
			files, err := ansible.Project(p, ks, o)
			if err != nil {
				return err
			}
			if err := ks.Save(); err != nil {
				return err
			}
			written, removed, err := writeProject(dir, files)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.stdout, map[string]any{"dir": dir, "files": len(files), "written": written, "removed": removed, "secrets": o.SecretsFile})
			}
			fmt.Fprintf(e.stdout, "ansible %s: %d files in %s (%d written, %d removed); keys stay in %s\n  cd %s && ansible-playbook site.yml --check --diff\n",
				p.Name, len(files), dir, len(written), len(removed), o.SecretsFile, dir)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&dir, "output", "o", "", "the project's directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(newAnsibleInventoryCmd(e))
	return cmd
}

func newAnsibleInventoryCmd(e *env) *cobra.Command {
	var f ansibleFlags
	var list bool
	var hostName string
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "The dynamic inventory: the routers and their configs as the plan has them now (--list, --host R)",
		Long: `inventory prints Ansible's dynamic inventory JSON: --list the groups
(backbone, pe, p) and every router's variables in _meta.hostvars, with its
configs inline in bb_files; --host R one router's variables (the same,
for tools that ask per host).

  ansible-playbook -i inventory.sh site.yml     (inventory.sh runs this)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !list && hostName == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("ansible inventory: --list or --host ROUTER")}
			}
			p, o, ks, err := f.options(e)
			if err != nil {
				return err
			}
			inv, err := ansible.Inventory(p, ks, o)
			if err != nil {
				return err
			}
			if err := ks.Save(); err != nil {
				return err
			}
			if list {
				return writeJSON(e.stdout, inv)
			}
			hv := inv["_meta"].(map[string]any)["hostvars"].(map[string]any)
			v, ok := hv[hostName]
			if !ok {
				return fmt.Errorf("ansible inventory: --host %s: not a deployed router of %s (routers: %s)", hostName, p.Name, strings.Join(slices.Sorted(maps.Keys(hv)), ", "))
			}
			return writeJSON(e.stdout, v)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&list, "list", false, "print every group and host")
	cmd.Flags().StringVar(&hostName, "host", "", "print one router's variables")
	return cmd
}

// newSSHProxyCmd is OpenSSH's ProxyCommand for routers reached from a
// network namespace of this machine (a lab's underlay): it connects from
// there and relays stdin and stdout.
func newSSHProxyCmd(e *env) *cobra.Command {
	var netns string
	cmd := &cobra.Command{
		Use:    "ssh-proxy --netns NS HOST PORT",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("ssh-proxy: port %q: %w", args[1], err)
			}
			conn, err := sshnode.DialTCP(cmd.Context(), sshnode.Target{Name: args[0], Address: args[0], Port: port, Netns: netns})
			if err != nil {
				return fmt.Errorf("ssh-proxy: %w", err)
			}
			defer conn.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(conn, e.stdin)
				if cw, ok := conn.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
			}()
			go func() {
				io.Copy(e.stdout, conn)
				close(done)
			}()
			<-done
			return nil
		},
	}
	cmd.Flags().StringVar(&netns, "netns", "", "the network namespace to connect from")
	return cmd
}

// writeProject writes the project's files into dir, each atomically, and
// removes the files an earlier run wrote that are no longer part of it
// (listed in dir/.backbone-files). Other files in dir stay.
func writeProject(dir string, files []render.File) (written, removed []string, err error) {
	manifest := filepath.Join(dir, ".backbone-files")
	var before []string
	if data, err := os.ReadFile(manifest); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				before = append(before, l)
			}
		}
	}
	now := map[string]bool{}
	var list strings.Builder
	list.WriteString("# Files backbone ansible wrote here (it removes them when they are no longer needed).\n")
	var changed []render.File
	for _, f := range files {
		now[f.Path] = true
		list.WriteString(f.Path + "\n")
		target := filepath.Join(dir, filepath.FromSlash(f.Path))
		if old, err := os.ReadFile(target); err == nil && string(old) == string(f.Data) {
			if fi, err := os.Stat(target); err == nil && fi.Mode().Perm() == f.Mode {
				continue
			}
		}
		changed = append(changed, f)
		written = append(written, f.Path)
	}
	if err := render.Write(dir, changed); err != nil {
		return nil, nil, err
	}
	for _, old := range before {
		if now[old] || strings.Contains(old, "..") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(old))); err == nil {
			removed = append(removed, old)
		}
	}
	return written, removed, render.Write(dir, []render.File{{Path: ".backbone-files", Data: []byte(list.String()), Mode: 0o644}})
}
