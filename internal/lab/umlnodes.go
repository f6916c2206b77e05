package lab

import (
	"context"
	"fmt"

	"github.com/backbone-net/backbone/internal/lab/guest"
	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/lab/netconf"
	"github.com/backbone-net/backbone/internal/lab/uml"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// umlMemoryMiB is each router kernel's memory (allocated as used).
const umlMemoryMiB = 512

// bootMachine starts a router's UML kernel, plugged into the host ends
// of its wires in its namespace here.
func (s *Session) bootMachine(ctx context.Context, name string) (*uml.Machine, error) {
	k, err := uml.Load(layout.CacheDir)
	if err != nil {
		return nil, err
	}
	p := s.Paths
	// Each NIC is created with its planned MTU: UML's vector NIC keeps
	// a maximum MTU of 1500 whatever it starts with, so a jumbo MTU can
	// only be the one it boots with, never set later.
	mtus := map[string]int{}
	if r := s.Config.Plan.Router(name); r != nil {
		for _, d := range linux.Render(s.Config.Plan, r).Devices {
			mtus[d.Name] = d.MTU
		}
	}
	var nics []uml.NIC
	var hostEnds []string
	for _, w := range wires(s.Config.Plan) {
		for _, end := range [][2]string{{w.aNode, w.aDev}, {w.bNode, w.bDev}} {
			if end[0] == name {
				nics = append(nics, uml.NIC{HostIf: end[1], MAC: uml.NICMAC(name, end[1]), Name: end[1], MTU: mtus[end[1]]})
				hostEnds = append(hostEnds, end[1])
			}
		}
	}
	// The host ends carry frames only: no addresses, no IPv6 chatter.
	if err := namespace.Do(p.Netns(name), func() error {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := netconf.Sysctl(k, "1"); err != nil {
				return err
			}
		}
		return netconf.SetUp(append([]string{"lo"}, hostEnds...))
	}); err != nil {
		return nil, fmt.Errorf("%s: host side: %w", name, err)
	}
	g := guest.Config{Shares: []string{p.StateDir}}
	if s.bare(name) {
		// A fresh host: it loads its modules and configures itself
		// (backbone deploy tells it how), at the paths of a real host.
		g.System = &guest.System{Image: p.MachineImage(name), Remove: bareHostKeyFiles, Empty: []string{"/root"}, Target: BareUnit}
	} else {
		for _, b := range nodeBinds(p, name) {
			g.Binds = append(g.Binds, guest.Bind{From: b[0], To: b[1], Owner: "frr"})
		}
		g.Tmpfs = []string{p.RunDir()}
		g.Modules = s.Config.Hosts[name].Modules
		g.Env = nodeEnv(p, name)
	}
	return uml.Start(ctx, uml.Spec{
		Name: name, Dir: p.MachineDir(name), Netns: p.Netns(name),
		Kernel: k, MemoryMiB: umlMemoryMiB, Binary: p.Binary(), NICs: nics, Guest: g,
	})
}

// attachMachine returns the running UML kernel of a node.
func attachMachine(p layout.Lab, name string) (*uml.Machine, error) {
	return uml.Attach(name, p.MachineDir(name), p.Netns(name))
}

// syncBinary puts this executable where the lab's guests run it.
func (s *Session) syncBinary() error { return s.Paths.InstallBinary(s.self) }

// OwnKernel reports whether a node runs its own kernel (a UML router).
func (s *Session) OwnKernel(name string) bool {
	n := s.State.Node(name)
	return n != nil && n.Place == PlaceUML
}

// CrashNode kills a router's own kernel outright, as a power cut would:
// its daemons, its state, everything in it is gone.
func (s *Session) CrashNode(name string) error {
	if !s.OwnKernel(name) {
		return fmt.Errorf("%s does not run a kernel of its own (backend %s): nothing to crash", name, s.State.Backend)
	}
	m, err := attachMachine(s.Paths, name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.guests, name)
	s.mu.Unlock()
	return m.Kill()
}

// ReviveNode boots a crashed router's kernel again and starts it as lab up
// did: devices, then strongSwan, tunnels and FRR.
func (s *Session) ReviveNode(ctx context.Context, name string) error {
	if !s.OwnKernel(name) {
		return fmt.Errorf("%s does not run a kernel of its own (backend %s)", name, s.State.Backend)
	}
	m, err := s.bootMachine(ctx, name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.guests[name] = m
	s.mu.Unlock()
	if err := s.setupInGuest(ctx, name); err != nil {
		return err
	}
	if sc := s.Paths.StartScript(name, PhaseIPsec); fileExists(sc) {
		if err := s.runScript(ctx, name, sc); err != nil {
			return err
		}
	}
	if tun := tunnels(s.Config.Hosts[name]); len(tun) > 0 {
		if err := s.linksUp(ctx, name, tun); err != nil {
			return err
		}
	}
	if sc := s.Paths.StartScript(name, PhaseFRR); fileExists(sc) {
		return s.runScript(ctx, name, sc)
	}
	return nil
}
