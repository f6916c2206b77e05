package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/lab/netconf"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
)

// Progress reports what the lab is doing.
type Progress func(format string, args ...any)

// UpOptions are the choices of `lab up`.
type UpOptions struct {
	Backend string
	// Source is the intent file (recorded, so commands find the lab).
	Source string
	// Timeout bounds the wait for the first CE-to-CE packets.
	Timeout time.Duration
	// VMMemoryMiB sizes the qemu VM of the kvm and tcg backends.
	VMMemoryMiB int
	// Start is when `lab up` started (times are measured from it).
	Start    time.Time
	Progress Progress
	// NoWait skips the wait for the first packets (the VM's side of lab
	// up: the host waits).
	NoWait bool
	// Bare boots the routers as fresh hosts for backbone deploy: systemd,
	// sshd and their network stack, nothing of the backbone configured
	// (uml backend only).
	Bare bool
}

// Up builds the lab whose rendered configuration is in p.ConfigDir() on
// the chosen backend and waits until every site reaches every other site
// of its VRF over IPv4 and IPv6. On failure the lab is left for
// inspection; `lab down` removes it.
func Up(ctx context.Context, p layout.Lab, o UpOptions) (*Session, error) {
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	cfg, err := LoadConfig(p.ConfigDir())
	if err != nil {
		return nil, err
	}
	st := &State{Name: p.Name, Backend: o.Backend, Source: o.Source, Bare: o.Bare, Created: time.Now().UTC(), Nodes: placement(cfg, o.Backend)}
	if o.Bare {
		if o.Backend != BackendUML {
			return nil, fmt.Errorf("lab up --bare needs a kernel per router: backend uml, not %s", o.Backend)
		}
		if err := checkBare(cfg.Plan); err != nil {
			return nil, err
		}
		if err := prepareBare(p, cfg.Plan); err != nil {
			return nil, err
		}
	}
	if err := WriteState(p, st); err != nil {
		return nil, err
	}
	s, err := newSession(p, st, cfg)
	if err != nil {
		return nil, err
	}
	var t *Timings
	switch o.Backend {
	case BackendKVM, BackendTCG:
		t, err = s.upVM(ctx, o)
	default:
		t, err = s.upHere(ctx, o)
	}
	if err != nil {
		return s, err
	}
	st.Ready, st.Timings = true, t
	return s, WriteState(p, st)
}

// UpInGuest builds the lab natively inside the qemu VM (the guest side of
// the kvm and tcg backends) and returns its timings; the host keeps the
// lab's state and waits for the first packets itself, through the same
// probe engine chaos uses in the VM.
func UpInGuest(ctx context.Context, name string, o UpOptions) (*Timings, error) {
	p := layout.ForLab(name)
	cfg, err := LoadConfig(p.ConfigDir())
	if err != nil {
		return nil, err
	}
	st := &State{Name: name, Backend: BackendNative, Nodes: placement(cfg, BackendNative)}
	s, err := newSession(p, st, cfg)
	if err != nil {
		return nil, err
	}
	o.NoWait = true
	return s.upHere(ctx, o)
}

// upHere builds the lab on this machine: namespaces and wires here, and
// each router either in a namespace (native) or in its own UML kernel.
func (s *Session) upHere(ctx context.Context, o UpOptions) (*Timings, error) {
	t := &Timings{Backend: s.State.Backend}
	p, pl := s.Paths, s.Config.Plan
	progress := o.Progress
	if err := namespace.EnsureDir(); err != nil {
		return nil, err
	}
	nodes := s.State.Nodes
	progress("topology: %d nodes (%s); veth wires, devices through netlink", len(nodes), placeSummary(nodes))
	for _, n := range nodes {
		if err := namespace.Create(p.Netns(n.Name)); err != nil {
			return nil, fmt.Errorf("%w: run `backbone lab down --name %s` first", err, p.Name)
		}
	}
	place := func(node string) string {
		if n := s.State.Node(node); n != nil {
			return n.Place
		}
		return PlaceNetns // the underlay
	}
	for _, w := range wires(pl) {
		if err := namespace.Do(p.Netns(w.aNode), func() error { return netconf.AddVeth(w.aDev, p.Netns(w.bNode), w.bDev, w.mtu) }); err != nil {
			return nil, fmt.Errorf("wire %s/%s - %s/%s: %w", w.aNode, w.aDev, w.bNode, w.bDev, err)
		}
		// A UML kernel's raw NIC takes frames up to its MTU: the end in a
		// namespace of this kernel must not hand it GSO super-frames (a
		// 64 KiB TCP burst is dropped whole, and TCP then crawls through
		// retransmit timeouts: SSH sessions to bare lab routers stalled).
		for _, e := range [][3]string{{w.aNode, w.aDev, w.bNode}, {w.bNode, w.bDev, w.aNode}} {
			if place(e[0]) != PlaceNetns || place(e[2]) != PlaceUML {
				continue
			}
			if err := namespace.Do(p.Netns(e[0]), func() error { return netconf.NoGSO(e[1]) }); err != nil {
				return nil, fmt.Errorf("wire %s/%s: %w", e[0], e[1], err)
			}
		}
	}
	if err := writeStartScripts(p, pl); err != nil {
		return nil, err
	}
	if s.hasPlace(PlaceUML) {
		if err := s.syncBinary(); err != nil {
			return nil, err
		}
	}
	// Each node comes up on its own: a UML kernel boots, then configures
	// itself (a namespace node is configured at once), then starts its
	// daemons, strongSwan and FRR side by side. Tunnels come up once every
	// router's IPsec policies are in place, so that nothing ever leaves in
	// clear, whether FRR is ready yet or not: IKE negotiates while FRR
	// starts.
	progress("daemons: strongSwan and FRR on %d routers as soon as each is configured", len(pl.Routers))
	var mu sync.Mutex
	var wg, ipsecReady sync.WaitGroup
	var ipsecFailed atomic.Bool
	ipsecReady.Add(len(nodes))
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready := sync.OnceFunc(ipsecReady.Done)
			defer ready()
			if err := s.configureNode(ctx, n, o, t, &mu); err != nil {
				errs[i] = err
				ipsecFailed.Store(true)
				return
			}
			mu.Lock()
			t.Topology = max(t.Topology, time.Since(o.Start))
			mu.Unlock()
			if s.bare(n.Name) {
				// Nothing to start: deploy configures it. Its IPsec
				// takes no part in the barrier.
				ready()
				errs[i] = s.waitBare(ctx, n.Name, o.Progress)
				return
			}
			frr := make(chan error, 1)
			go func() { frr <- s.runPhaseOn(ctx, n.Name, PhaseFRR) }()
			err := s.runPhaseOn(ctx, n.Name, PhaseIPsec)
			if err != nil {
				ipsecFailed.Store(true)
			}
			ready()
			ipsecReady.Wait()
			if tun := tunnels(s.Config.Hosts[n.Name]); err == nil && !ipsecFailed.Load() && len(tun) > 0 {
				err = s.linksUp(ctx, n.Name, tun)
			}
			if ferr := <-frr; err == nil {
				err = ferr
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t.Daemons = time.Since(o.Start)
	progress("topology: done at %s; daemons: started at %s", t.Topology.Round(time.Millisecond), t.Daemons.Round(time.Millisecond))

	if !o.NoWait && !s.State.Bare {
		if err := s.awaitFirstPackets(ctx, o, t); err != nil {
			return t, err
		}
	}
	t.Total = time.Since(o.Start)
	return t, nil
}

func placeSummary(nodes []NodeState) string {
	count := map[string]int{}
	for _, n := range nodes {
		count[n.Place]++
	}
	var out []string
	for _, pl := range []string{PlaceNetns, PlaceUML, PlaceVM} {
		if count[pl] > 0 {
			out = append(out, fmt.Sprintf("%d in %s", count[pl], map[string]string{PlaceNetns: "namespaces", PlaceUML: "UML kernels", PlaceVM: "the VM"}[pl]))
		}
	}
	return strings.Join(out, ", ")
}

func (s *Session) hasPlace(place string) bool {
	for _, n := range s.State.Nodes {
		if n.Place == place {
			return true
		}
	}
	return false
}

// configureNode brings a node to the point where its daemons can start:
// a namespace node is configured here; a UML router boots, then
// configures itself.
func (s *Session) configureNode(ctx context.Context, n NodeState, o UpOptions, t *Timings, mu *sync.Mutex) error {
	if n.Place != PlaceUML {
		return namespace.Do(s.Paths.Netns(n.Name), func() error { return SetupNode(s.Paths, n.Name, s.Config.Hosts[n.Name]) })
	}
	m, err := s.bootMachine(ctx, n.Name)
	if err != nil {
		return err
	}
	mu.Lock()
	t.Boot = max(t.Boot, time.Since(o.Start))
	s.guests[n.Name] = m
	mu.Unlock()
	o.Progress("uml: %s booted in %s", n.Name, m.Boot.Round(time.Millisecond))
	if s.bare(n.Name) {
		return nil
	}
	return s.setupInGuest(ctx, n.Name)
}

// linksUp sets a node's devices up: in process for a namespace node, with
// ip(8) in a guest.
func (s *Session) linksUp(ctx context.Context, nodeName string, devs []string) error {
	if n := s.State.Node(nodeName); n != nil && n.Place == PlaceNetns {
		return namespace.Do(s.Paths.Netns(nodeName), func() error { return netconf.SetUp(devs) })
	}
	r, err := s.Node(nodeName)
	if err != nil {
		return err
	}
	script := ""
	for _, d := range devs {
		script += "ip link set dev " + d + " up && "
	}
	_, err = node.Output(ctx, r, "sh", "-c", script+"true")
	return err
}

// SetupInGuestCommand is the hidden subcommand a guest runs to configure
// itself: `backbone lab-node-setup LAB NODE`.
const SetupInGuestCommand = "lab-node-setup"

// setupInGuest configures a guest node from the inside.
func (s *Session) setupInGuest(ctx context.Context, nodeName string) error {
	r, err := s.Node(nodeName)
	if err != nil {
		return err
	}
	_, err = node.Output(ctx, r, s.Paths.Binary(), SetupInGuestCommand, s.Paths.Name, nodeName)
	return err
}

// SetupHere is the guest side of setupInGuest: it configures the node
// this process runs in from the lab's rendered configuration.
func SetupHere(name, nodeName string) error {
	p := layout.ForLab(name)
	cfg, err := LoadConfig(p.ConfigDir())
	if err != nil {
		return err
	}
	h := cfg.Hosts[nodeName]
	if h == nil {
		return fmt.Errorf("lab %q has no node %q", name, nodeName)
	}
	return SetupNode(p, nodeName, h)
}

// awaitFirstPackets waits for the first CE-to-CE packets and records when
// each family's arrived.
func (s *Session) awaitFirstPackets(ctx context.Context, o UpOptions, t *Timings) error {
	o.Progress("convergence: waiting for the first CE-to-CE packets (IPv4 and IPv6)")
	first, err := s.waitFirstPackets(ctx, o.Start, o.Timeout, o.Progress)
	if err != nil {
		return err
	}
	t.FirstIPv4, t.FirstIPv6 = first[4], first[6]
	return nil
}
