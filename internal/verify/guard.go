package verify

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/linux"
)

// xfrmPolicy is one policy of `ip xfrm policy list`.
type xfrmPolicy struct {
	sel      string // "src A dst B [proto P [sport 0] [dport N]]"
	dir      string
	action   string // "allow" unless the kernel says otherwise
	priority int
}

// parseXfrmPolicies reads `ip xfrm policy list`: a policy is a "src"
// line followed by indented lines ("dir out [action block] priority N").
func parseXfrmPolicies(out string) []xfrmPolicy {
	var ps []xfrmPolicy
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "src" && !strings.HasPrefix(line, "\t"):
			var sel []string
			for i := 0; i < len(f); i++ {
				// sport 0 is "any source port": not part of the selector.
				if f[i] == "sport" && i+1 < len(f) && f[i+1] == "0" {
					i++
					continue
				}
				sel = append(sel, f[i])
			}
			ps = append(ps, xfrmPolicy{sel: strings.Join(sel, " "), action: "allow"})
		case f[0] == "dir" && len(ps) > 0:
			cur := &ps[len(ps)-1]
			for i := 0; i+1 < len(f); i++ {
				switch f[i] {
				case "dir":
					cur.dir = f[i+1]
				case "action":
					cur.action = f[i+1]
				case "priority":
					cur.priority, _ = strconv.Atoi(f[i+1])
				}
			}
		}
	}
	return ps
}

// checkGuard checks, on each router with encrypted links, that every
// tunnel has its fail-closed guard (an XFRM block policy in each
// direction, see linux.Guard) and that charon's own policy for the tunnel
// outranks it: protected traffic flows through charon's policy, and only
// what no IPsec policy covers meets the guard and is dropped.
func checkGuard(sc scope, r *recorder) {
	sc.routers(func(rt *plan.Router, st *routerState) {
		guards := linux.Render(sc.p, rt).Guards
		if len(guards) == 0 {
			return
		}
		name := "ipsec guard on " + rt.Name + ": tunnels fail closed without charon"
		if st.err != nil {
			r.fail(GroupEncryption, name, "the router did not answer", "%v", st.err)
			return
		}
		pols := parseXfrmPolicies(st.shell["xfrm_policy"])
		var missing, outranked []string
		for _, g := range guards {
			found := false
			for _, p := range pols {
				if p.sel == g.Selector() && p.dir == g.Dir && p.action == "block" && p.priority == linux.GuardPriority {
					found = true
				}
			}
			if !found {
				missing = append(missing, g.Selector()+" dir "+g.Dir)
				continue
			}
			// charon's policy for the same tunnel: our end to the peer
			// (out) or back (in), same protocol.
			for _, p := range pols {
				if p.dir == g.Dir && p.action == "allow" && p.priority >= linux.GuardPriority && sameTunnel(p.sel, g, rt) {
					outranked = append(outranked, fmt.Sprintf("%s dir %s priority %d", p.sel, p.dir, p.priority))
				}
			}
		}
		switch {
		case len(missing) > 0:
			r.fail(GroupEncryption, name, "the guard policies are not installed (lab: rebuild it; host: systemctl restart backbone-ipsec-guard.service, or deploy again)",
				"missing %d of %d: %s", len(missing), len(guards), strings.Join(missing, "; "))
		case len(outranked) > 0:
			r.fail(GroupEncryption, name, fmt.Sprintf("an IPsec policy has a priority number of %d or more, so the guard would block its protected traffic: lower it", linux.GuardPriority),
				"%s", strings.Join(outranked, "; "))
		default:
			r.pass(GroupEncryption, name, "%d block policies at priority %d, under charon's", len(guards), linux.GuardPriority)
		}
	})
}

// sameTunnel reports whether a selector is the IPsec policy of the
// tunnel a guard protects.
func sameTunnel(sel string, g linux.Guard, rt *plan.Router) bool {
	for _, i := range rt.Interfaces {
		if i.Remote != g.Peer || i.Name != g.Tunnel {
			continue
		}
		a, b := i.Local, i.Remote
		if g.Dir == "in" {
			a, b = b, a
		}
		prefix := fmt.Sprintf("src %s/%d dst %s/%d proto %s", a, a.BitLen(), b, b.BitLen(), g.Proto)
		return strings.HasPrefix(sel, prefix)
	}
	return false
}
