package chaos

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/backbone-net/backbone/internal/probe"
)

// Probe is one probe stream of a chaos run, with the nodes at its ends.
type Probe struct {
	probe.Stream
	FromNode, ToNode string
	// Site is set for customer (CE to CE) streams.
	Site bool
}

// Streams are every probe stream of a chaos run: site to site in both
// directions for both families (customer traffic through the VRFs), then
// PE loopback to PE loopback, sent from the PEs: these cross the backbone
// as plain IP routed by the IGP (LDP labels them where a label exists).
func Streams(l Lab, interval, coreInterval time.Duration) []Probe {
	var out []Probe
	pl := l.Plan
	add := func(site bool, a, b string, src, dst netip.Addr, fam int) {
		if !src.IsValid() || !dst.IsValid() {
			return
		}
		iv := interval
		if !site {
			iv = coreInterval
		}
		out = append(out, Probe{Stream: probe.Stream{
			Name:     fmt.Sprintf("%s>%s ipv%d", a, b, fam),
			From:     l.Endpoint(a, src),
			To:       l.Endpoint(b, dst),
			Interval: iv,
		}, FromNode: a, ToNode: b, Site: site})
	}
	for i, a := range pl.Sites {
		for j, b := range pl.Sites {
			if i != j && a.VRF == b.VRF {
				for _, fam := range []int{4, 6} {
					add(true, a.CE, b.CE, a.Address(fam), b.Address(fam), fam)
				}
			}
		}
	}
	pes := pl.PEs()
	for _, a := range pes {
		for _, b := range pes {
			if a != b {
				add(false, a.Name, b.Name, a.LoopbackV4, b.LoopbackV4, 4)
				add(false, a.Name, b.Name, a.LoopbackV6, b.LoopbackV6, 6)
			}
		}
	}
	return out
}
