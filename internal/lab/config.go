package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// Config is a rendered backbone as the lab reads it back from ConfigDir,
// plus the lab's own underlay node.
type Config struct {
	Plan  *plan.Plan
	Hosts map[string]*linux.Host
}

// LoadConfig reads plan.json and every router's linux.json.
func LoadConfig(dir string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil {
		return nil, fmt.Errorf("rendered config: %w", err)
	}
	p := &plan.Plan{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("%s/plan.json: %w", dir, err)
	}
	hosts := map[string]*linux.Host{}
	for _, r := range p.Routers {
		data, err := os.ReadFile(filepath.Join(dir, r.Name, "linux.json"))
		if err != nil {
			return nil, fmt.Errorf("rendered config: %w", err)
		}
		h := &linux.Host{}
		if err := json.Unmarshal(data, h); err != nil {
			return nil, fmt.Errorf("%s/%s/linux.json: %w", dir, r.Name, err)
		}
		hosts[r.Name] = h
	}
	return newConfig(p, hosts), nil
}

// ConfigOf derives the lab's view of a plan without reading files.
func ConfigOf(p *plan.Plan) *Config {
	hosts := map[string]*linux.Host{}
	for _, r := range p.Routers {
		hosts[r.Name] = linux.Render(p, r)
	}
	return newConfig(p, hosts)
}

func newConfig(p *plan.Plan, hosts map[string]*linux.Host) *Config {
	c := &Config{Plan: p, Hosts: hosts}
	c.Hosts[Underlay] = underlayHost(p)
	return c
}

// labModules are what the lab itself needs beyond the routers' modules:
// veth for its wires, bridge for PEs that share an underlay network,
// nftables for chaos's underlay cut.
var labModules = []string{"veth", "bridge", "nf_tables"}

// Modules is the union of kernel modules the lab needs, sorted.
func (c *Config) Modules() []string {
	set := map[string]bool{}
	for _, m := range labModules {
		set[m] = true
	}
	for _, h := range c.Hosts {
		for _, m := range h.Modules {
			set[m] = true
		}
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Nodes lists the lab's nodes: the underlay router, then every router.
func (c *Config) Nodes() []string {
	out := []string{Underlay}
	for _, r := range c.Plan.Routers {
		out = append(out, r.Name)
	}
	return out
}

// Role is a node's role ("underlay" for the lab's own underlay node).
func (c *Config) Role(node string) string {
	if h := c.Hosts[node]; h != nil {
		return h.Role
	}
	return ""
}
