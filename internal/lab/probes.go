package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/lab/qemu"
	"github.com/backbone-net/backbone/internal/probe"
)

// ProbeCommand is the hidden subcommand that runs a probe engine inside a
// guest: `backbone lab-probe` (spec on standard input).
const ProbeCommand = "lab-probe"

// Opener opens probe sockets inside the namespaces of this machine.
func Opener(ns string, fn func() error) error { return namespace.Do(ns, fn) }

// vmPlace is the probe place of every node inside the qemu VM.
const vmPlace = "vm"

// ProbeEndpoint is where a probe socket for addr on a node lives: a
// namespace here, the node's UML kernel, or a namespace in the VM.
func (s *Session) ProbeEndpoint(nodeName string, addr netip.Addr) probe.Endpoint {
	n := s.State.Node(nodeName)
	switch {
	case n != nil && n.Place == PlaceUML:
		return probe.Endpoint{Place: nodeName, Addr: addr}
	case n != nil && n.Place == PlaceVM:
		return probe.Endpoint{Place: vmPlace, NS: s.Paths.Netns(nodeName), Addr: addr}
	}
	return probe.Endpoint{NS: s.Paths.Netns(nodeName), Addr: addr}
}

// ProbeOptions are the probe session options of the lab: sockets here in
// namespaces, remote engines in UML kernels and the VM.
func (s *Session) ProbeOptions() probe.Options {
	return probe.Options{
		Opener: Opener,
		Remote: func(place string) (probe.Remote, error) {
			if place == vmPlace {
				if !qemu.Running(s.Paths.StateDir) {
					return probe.Remote{}, fmt.Errorf("lab %q: its qemu VM is not running", s.Paths.Name)
				}
				m, err := qemu.Attach(s.Paths.StateDir)
				if err != nil {
					return probe.Remote{}, err
				}
				return probe.Remote{Runner: &vmRootRunner{m}, Argv: []string{qemu.GuestBinaryPath, ProbeCommand}}, nil
			}
			r, err := s.Node(place)
			if err != nil {
				return probe.Remote{}, err
			}
			if err := s.syncBinary(); err != nil {
				return probe.Remote{}, err
			}
			return probe.Remote{Runner: r, Argv: []string{s.Paths.Binary(), ProbeCommand}}, nil
		},
	}
}

// SiteStream is a probe stream between two sites' CEs.
type SiteStream struct {
	probe.Stream
	FromNode, ToNode string
}

// SiteStreams are probe streams in both directions between every pair of
// sites of a VRF, for both families.
func (s *Session) SiteStreams(interval time.Duration) []SiteStream {
	var out []SiteStream
	pl := s.Config.Plan
	for i, a := range pl.Sites {
		for j, b := range pl.Sites {
			if i == j || a.VRF != b.VRF {
				continue
			}
			for _, fam := range []int{4, 6} {
				src, dst := a.Address(fam), b.Address(fam)
				if !src.IsValid() || !dst.IsValid() {
					continue
				}
				out = append(out, SiteStream{Stream: probe.Stream{
					Name:     fmt.Sprintf("%s>%s ipv%d", a.CE, b.CE, fam),
					From:     s.ProbeEndpoint(a.CE, src),
					To:       s.ProbeEndpoint(b.CE, dst),
					Interval: interval,
				}, FromNode: a.CE, ToNode: b.CE})
			}
		}
	}
	return out
}

// waitFirstPackets probes every site pair and returns, per family, the
// time since start at which the last stream of that family saw its first
// packet.
func (s *Session) waitFirstPackets(ctx context.Context, start time.Time, timeout time.Duration, progress Progress) (map[int]time.Duration, error) {
	out := map[int]time.Duration{}
	var streams []probe.Stream
	for _, st := range s.SiteStreams(20 * time.Millisecond) {
		streams = append(streams, st.Stream)
	}
	if len(streams) == 0 {
		return out, nil
	}
	sess, err := probe.Start(ctx, streams, s.ProbeOptions())
	if err != nil {
		return nil, err
	}
	defer sess.Stop()
	offset := time.Since(start) - sess.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	first, err := sess.WaitFirst(wctx)
	if err != nil {
		return nil, fmt.Errorf("not converged after %s: %w", timeout, err)
	}
	for i, st := range streams {
		fam := 6
		if st.From.Addr.Is4() {
			fam = 4
		}
		at := first[i] + offset
		out[fam] = max(out[fam], at)
		progress("convergence: first packet %s at %s", st.Name, at.Round(time.Millisecond))
	}
	return out, nil
}
