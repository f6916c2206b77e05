package chaos

import (
	"fmt"
	"time"

	"github.com/backbone-net/backbone/internal/lab"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/probe"
)

// LoopbackStreams returns probe streams in both directions between every
// pair of PEs' loopbacks, IPv4 and IPv6, sent from the PE namespaces: they
// cross the backbone as plain IP routed by the IGP (LDP labels them where
// a label exists).
func LoopbackStreams(p layout.Lab, pl *plan.Plan, interval time.Duration) []probe.Stream {
	var out []probe.Stream
	pes := pl.PEs()
	for _, a := range pes {
		for _, b := range pes {
			if a == b {
				continue
			}
			for _, fam := range []int{4, 6} {
				src, dst := a.LoopbackV4, b.LoopbackV4
				if fam == 6 {
					src, dst = a.LoopbackV6, b.LoopbackV6
				}
				if !src.IsValid() || !dst.IsValid() {
					continue
				}
				out = append(out, probe.Stream{
					Name:     fmt.Sprintf("%s>%s ipv%d", a.Name, b.Name, fam),
					From:     probe.Endpoint{NS: p.Netns(a.Name), Addr: src},
					To:       probe.Endpoint{NS: p.Netns(b.Name), Addr: dst},
					Interval: interval,
				})
			}
		}
	}
	return out
}

// Streams are every probe stream of a chaos run: site to site (customer
// traffic through the VRFs), then PE loopback to PE loopback.
func Streams(p layout.Lab, pl *plan.Plan, interval time.Duration) []probe.Stream {
	return append(lab.SiteStreams(p, pl, interval), LoopbackStreams(p, pl, interval)...)
}
