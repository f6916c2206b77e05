package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// bgpNeighbor is what `show bgp vrf V neighbors json` says of a session's
// address families that the limit check reads.
type bgpNeighbor struct {
	State string `json:"bgpState"`
	AFs   map[string]struct {
		Accepted int   `json:"acceptedPrefixCounter"`
		Max      int64 `json:"prefixAllowedMax"`
	} `json:"addressFamilyInfo"`
}

// checkCELimits checks that every PE's eBGP session with a CE caps the
// routes it takes at the site's max_prefixes, per address family.
func checkCELimits(sc scope, r *recorder) {
	sc.routers(func(rt *plan.Router, st *routerState) {
		for _, a := range rt.Attachments {
			s := sc.p.Sites[a.Site]
			if s.Routing != intent.RoutingEBGP || s.PE != rt.Name {
				continue
			}
			var nbs map[string]bgpNeighbor
			raw := st.shell["bgp_neighbors "+a.VRF]
			err := json.Unmarshal([]byte(raw), &nbs)
			for _, fam := range []struct {
				addr netip.Prefix
				af   string
			}{{s.CEIPv4, "ipv4Unicast"}, {s.CEIPv6, "ipv6Unicast"}} {
				if !fam.addr.IsValid() {
					continue
				}
				name := fmt.Sprintf("maximum-prefix %s -> %s %s", rt.Name, s.CE, fam.addr.Addr())
				if st.err != nil || err != nil {
					r.fail(GroupBGP, name, "the router did not answer `show bgp vrf "+a.VRF+" neighbors json`", "%v", errors.Join(st.err, err))
					continue
				}
				info, ok := nbs[fam.addr.Addr().String()].AFs[fam.af]
				r.check(ok && info.Max == s.MaxPrefixes, GroupBGP, name,
					fmt.Sprintf("the session does not cap the CE's routes at %d: deploy the rendered config", s.MaxPrefixes),
					fmt.Sprintf("%d accepted, limit %d (want %d)", info.Accepted, info.Max, s.MaxPrefixes))
			}
		}
	})
}
