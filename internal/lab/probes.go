package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/probe"
)

// Opener opens probe sockets inside the lab's namespaces of this machine.
func Opener(ns string, fn func() error) error { return namespace.Do(ns, fn) }

// SiteStreams returns probe streams in both directions between every pair
// of sites of a VRF, for both families.
func SiteStreams(p layout.Lab, pl *plan.Plan, interval time.Duration) []probe.Stream {
	var out []probe.Stream
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
				out = append(out, probe.Stream{
					Name:     fmt.Sprintf("%s>%s ipv%d", a.CE, b.CE, fam),
					From:     probe.Endpoint{NS: p.Netns(a.CE), Addr: src},
					To:       probe.Endpoint{NS: p.Netns(b.CE), Addr: dst},
					Interval: interval,
				})
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
	streams := SiteStreams(s.Paths, s.Config.Plan, 20*time.Millisecond)
	if len(streams) == 0 {
		return out, nil
	}
	sess, err := probe.Start(ctx, Opener, streams)
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
