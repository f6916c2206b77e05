// Package lab runs a rendered backbone on a real Linux kernel: one network
// namespace per router and CE, an underlay router that plays the provider
// network, devices configured through netlink, and real FRR and strongSwan
// daemons per router. It is the only package (with its vm subpackage) that
// changes the system.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// Modes of a lab.
const (
	ModeNative = "native"
	ModeVM     = "vm"
)

// State is what lab.json records about a running lab.
type State struct {
	Name    string    `json:"name"`
	Mode    string    `json:"mode"`
	Source  string    `json:"source"`
	Created time.Time `json:"created"`
	Nodes   []string  `json:"nodes"`
	// Ready is set once the lab converged.
	Ready   bool     `json:"ready"`
	Timings *Timings `json:"timings,omitempty"`
}

// Timings split the time from start to the first CE-to-CE packet.
type Timings struct {
	VMBoot      time.Duration `json:"vm_boot_ns,omitempty"`
	Topology    time.Duration `json:"topology_ns"`
	Daemons     time.Duration `json:"daemons_ns"`
	FirstIPv4   time.Duration `json:"first_ipv4_ns"`
	FirstIPv6   time.Duration `json:"first_ipv6_ns"`
	Convergence time.Duration `json:"convergence_ns"`
	Total       time.Duration `json:"total_ns"`
}

// ReadState reads lab.json.
func ReadState(p Paths) (*State, error) {
	data, err := os.ReadFile(p.StateFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %q is not up (no %s): run `backbone lab up`", p.Name, p.StateFile())
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", p.StateFile(), err)
	}
	return &s, nil
}

// WriteState writes lab.json atomically.
func WriteState(p Paths, s *State) error {
	if err := os.MkdirAll(p.StateDir, 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(s, "", "  ")
	tmp := p.StateFile() + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.StateFile())
}

// Config is a rendered backbone as the lab reads it back from ConfigDir.
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
	c := &Config{Plan: &plan.Plan{}, Hosts: map[string]*linux.Host{}}
	if err := json.Unmarshal(data, c.Plan); err != nil {
		return nil, fmt.Errorf("%s/plan.json: %w", dir, err)
	}
	for _, r := range c.Plan.Routers {
		data, err := os.ReadFile(filepath.Join(dir, r.Name, "linux.json"))
		if err != nil {
			return nil, fmt.Errorf("rendered config: %w", err)
		}
		h := &linux.Host{}
		if err := json.Unmarshal(data, h); err != nil {
			return nil, fmt.Errorf("%s/%s/linux.json: %w", dir, r.Name, err)
		}
		c.Hosts[r.Name] = h
	}
	return c, nil
}

// Modules is the union of kernel modules the routers need.
func (c *Config) Modules() []string {
	set := map[string]bool{"veth": true}
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

// Required keeps the features whose module the config needs.
func Required(fs []Feature, modules []string) []Feature {
	need := map[string]bool{}
	for _, m := range modules {
		need[m] = true
	}
	var out []Feature
	for _, f := range fs {
		if need[f.Module] || f.Module == "" {
			out = append(out, f)
		}
	}
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

// Progress reports what the lab is doing.
type Progress func(format string, args ...any)

// underlayHost configures the underlay router: a gateway address in each
// PE's underlay network, and forwarding. PEs whose underlay addresses share
// a network are on one LAN: their veths join a bridge that holds the
// gateway (the case where bypass-lan would leave traffic in clear).
func underlayHost(p *plan.Plan) (*linux.Host, []wire) {
	h := &linux.Host{Router: Underlay, Role: "underlay"}
	h.Sysctls = []linux.Sysctl{
		{Key: "net.ipv4.ip_forward", Value: "1"},
		{Key: "net.ipv6.conf.all.forwarding", Value: "1"},
	}
	// Count the PEs of each underlay network.
	members := map[netip.Prefix]int{}
	for _, r := range p.Routers {
		if r.Underlay == nil {
			continue
		}
		for _, a := range []netip.Prefix{r.Underlay.IPv6, r.Underlay.IPv4} {
			if a.IsValid() {
				members[a.Masked()]++
			}
		}
	}
	bridges := map[netip.Prefix]string{}
	var wires []wire
	for _, r := range p.Routers {
		if r.Underlay == nil {
			continue
		}
		dev := "u-" + r.Name
		mtu := 0
		for _, i := range r.Interfaces {
			if m := p.Links[i.Link].MTU.UnderlayMTU; m > mtu {
				mtu = m
			}
		}
		wires = append(wires, wire{aNode: Underlay, aDev: dev, bNode: r.Name, bDev: r.Underlay.Interface, mtu: mtu})
		d := linux.Device{Name: dev, Kind: linux.KindPhysical, MTU: mtu, Peer: r.Name}
		for _, gw := range []struct {
			addr netip.Addr
			net  netip.Prefix
		}{{r.Underlay.GatewayV6, r.Underlay.IPv6}, {r.Underlay.GatewayV4, r.Underlay.IPv4}} {
			if !gw.addr.IsValid() {
				continue
			}
			net := gw.net.Masked()
			if members[net] < 2 {
				h.Addresses = append(h.Addresses, linux.Address{Device: dev, Prefix: netip.PrefixFrom(gw.addr, net.Bits())})
				continue
			}
			br, ok := bridges[net]
			if !ok {
				br = fmt.Sprintf("ulan%d", len(bridges))
				bridges[net] = br
				h.Devices = append([]linux.Device{{Name: br, Kind: linux.KindBridge, MTU: mtu}}, h.Devices...)
				h.Addresses = append(h.Addresses, linux.Address{Device: br, Prefix: netip.PrefixFrom(gw.addr, net.Bits())})
			}
			d.Master = br
		}
		h.Devices = append(h.Devices, d)
	}
	return h, wires
}

// wire is a veth pair between two nodes.
type wire struct {
	aNode, aDev, bNode, bDev string
	mtu                      int
}

// siteWires are the PE-CE attachments.
func siteWires(p *plan.Plan) []wire {
	var out []wire
	for _, s := range p.Sites {
		out = append(out, wire{aNode: s.PE, aDev: s.PEInterface, bNode: s.CE, bDev: s.CEInterface, mtu: s.MTU})
	}
	return out
}

// Up builds the lab from the rendered config in p.ConfigDir() and waits
// until every site reaches every other site of its VRF over IPv4 and IPv6.
func Up(ctx context.Context, p Paths, c *Config, progress Progress, timeout time.Duration) (*Timings, error) {
	t := &Timings{}
	start := time.Now()
	if err := ensureNetnsDir(); err != nil {
		return nil, err
	}
	nodes := c.Nodes()
	progress("topology: %d namespaces, veth wires, devices through netlink", len(nodes))
	for _, n := range nodes {
		if err := createNetns(p.Netns(n)); err != nil {
			return nil, err
		}
		if err := inNetns(p.Netns(n), prepareNode); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
	}
	uh, uw := underlayHost(c.Plan)
	for _, w := range append(uw, siteWires(c.Plan)...) {
		w := w
		if err := inNetns(p.Netns(w.aNode), func() error { return addVeth(w.aDev, p.Netns(w.bNode), w.bDev, w.mtu) }); err != nil {
			return nil, fmt.Errorf("wire %s/%s - %s/%s: %w", w.aNode, w.aDev, w.bNode, w.bDev, err)
		}
	}
	if err := inNetns(p.Netns(Underlay), func() error { return applyHost(uh, false) }); err != nil {
		return nil, err
	}
	for _, r := range c.Plan.Routers {
		h := c.Hosts[r.Name]
		if err := inNetns(p.Netns(r.Name), func() error { return applyHost(h, true) }); err != nil {
			return nil, err
		}
	}
	t.Topology = time.Since(start)
	progress("topology: done in %s", t.Topology.Round(time.Millisecond))

	dstart := time.Now()
	progress("daemons: strongSwan and FRR on %d routers", len(c.Plan.Routers))
	if err := writeStartFiles(p, c); err != nil {
		return nil, err
	}
	if err := runPhase(ctx, p, c, phaseIPsec); err != nil {
		return nil, err
	}
	// Tunnels come up only now that IPsec policies are in place; IKE
	// negotiates while FRR starts.
	for _, r := range c.Plan.Routers {
		var tun []string
		for _, d := range c.Hosts[r.Name].Devices {
			if isTunnel(d.Kind) {
				tun = append(tun, d.Name)
			}
		}
		if err := inNetns(p.Netns(r.Name), func() error { return setUp(tun) }); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Name, err)
		}
	}
	if err := runPhase(ctx, p, c, phaseFRR); err != nil {
		return nil, err
	}
	t.Daemons = time.Since(dstart)
	progress("daemons: started in %s", t.Daemons.Round(time.Millisecond))

	cstart := time.Now()
	progress("convergence: waiting for the first CE-to-CE packets (IPv4 and IPv6)")
	first, err := waitFirstPackets(ctx, p, c.Plan, timeout, progress)
	if err != nil {
		return t, err
	}
	t.FirstIPv4 = first[4] + cstart.Sub(start)
	t.FirstIPv6 = first[6] + cstart.Sub(start)
	t.Convergence = time.Since(cstart)
	t.Total = time.Since(start)
	return t, nil
}
