package verify

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/backbone-net/backbone/internal/plan"
)

var receivedRE = regexp.MustCompile(`(\d+) received`)

func received(out string) int {
	m := receivedRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// refusedLoudly reports whether ping says the packet was too big, locally
// or by an ICMP error, rather than losing it silently.
func refusedLoudly(out string) bool {
	o := strings.ToLower(out)
	return strings.Contains(o, "message too long") || strings.Contains(o, "frag needed") || strings.Contains(o, "packet too big")
}

// checkDataPlane pings between every ordered pair of sites of a VRF, over
// both families: reachability, the planned largest packet with DF set, and
// one byte more, which must be refused rather than silently dropped.
func checkDataPlane(ctx context.Context, p *plan.Plan, c collector, fromPE bool, r *recorder) {
	type job struct {
		a, b *plan.Site
		fam  int
	}
	var jobs []job
	seen := map[string]bool{}
	for _, a := range p.Sites {
		for _, b := range p.Sites {
			if a != b && a.VRF == b.VRF {
				for _, fam := range []int{4, 6} {
					// From the PE, two sites of one PE and VRF are one source.
					key := fmt.Sprint(a.PE, a.VRF, b.CE, fam)
					if a.Address(fam).IsValid() && b.Address(fam).IsValid() && (!fromPE || !seen[key]) {
						seen[key] = true
						jobs = append(jobs, job{a, b, fam})
					}
				}
			}
		}
	}
	results := make([][]Result, len(jobs))
	var wg sync.WaitGroup
	for k, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := &recorder{}
			pingPair(ctx, c, j.a, j.b, j.fam, fromPE, rr)
			results[k] = rr.results
		}()
	}
	wg.Wait()
	for _, res := range results {
		r.results = append(r.results, res...)
	}
}

// pingPair probes from site a's CE (in a lab) or, where the CEs are the
// customer's (deployed routers), from a's PE inside the VRF: the same
// VPN path, labels and MTU budget from the PE on.
func pingPair(ctx context.Context, c collector, a, b *plan.Site, fam int, fromPE bool, r *recorder) {
	src, dst := a.Address(fam), b.Address(fam)
	famFlag := "-4"
	hdr := 28 // IPv4 + ICMP
	if fam == 6 {
		famFlag, hdr = "-6", 48
	}
	from, bind, srcName := a.CE, src.String(), src.String()
	name := fmt.Sprintf("%s -> %s ipv%d", a.CE, b.CE, fam)
	if fromPE {
		srcName = a.PE + " vrf " + a.VRF
		// ping -I VRF binds to the VRF device: the source is the PE's
		// address on its CE link, which the VPN carries (redistribute
		// connected), so the remote CE's reply comes back.
		from, bind = a.PE, a.VRF
		name = fmt.Sprintf("%s vrf %s -> %s ipv%d", a.PE, a.VRF, b.CE, fam)
	}
	// Probes 50 ms apart (root may go below ping's 200 ms); a reply may
	// take up to 2 s.
	base := []string{"ping", famFlag, "-n", "-I", bind, "-W", "2"}
	out := run(ctx, c, from, append(base, "-c", "3", "-i", "0.05", dst.String())...)
	n := received(out)
	r.check(n > 0, GroupDataPlane, "reach "+name,
		fmt.Sprintf("the VPN route or its label is missing on %s or %s, or an LSP between them is broken", a.PE, b.PE),
		fmt.Sprintf("%s -> %s: %d/3 replies", srcName, dst, n))
	if n == 0 {
		return
	}
	mtu := a.MTU
	if b.MTU < mtu {
		mtu = b.MTU
	}
	out = run(ctx, c, from, append(base, "-M", "do", "-c", "2", "-i", "0.05", "-s", strconv.Itoa(mtu-hdr), dst.String())...)
	n = received(out)
	r.check(n > 0, GroupDataPlane, fmt.Sprintf("mtu %d crosses %s", mtu, name),
		"a link on the path carries less than the planned customer MTU: check tunnel MTUs against the plan",
		fmt.Sprintf("%d-byte packet with DF: %d/2 replies", mtu, n))
	// One byte more must be refused with an error: by the CE itself (its
	// interface has the planned MTU) or by a router on the path. A reply
	// or a refusal from afar comes within 500 ms; a local refusal at once.
	over := []string{"ping", famFlag, "-n", "-I", bind, "-W", "0.5", "-M", "do", "-c", "1", "-s", strconv.Itoa(mtu - hdr + 1), dst.String()}
	out = run(ctx, c, from, over...)
	loud := refusedLoudly(out)
	ev := fmt.Sprintf("%d-byte packet with DF: %s", mtu+1, firstLine(out, "too long", "frag", "too big", "received"))
	r.check(loud && received(out) == 0, GroupDataPlane, fmt.Sprintf("mtu %d+1 refused %s", mtu, name),
		"a packet larger than the plan was lost silently (or crossed): some interface MTU is larger than the plan, so MPLS drops without ICMP", ev)
}

// firstLine returns the first line holding the earliest key that occurs.
func firstLine(out string, keys ...string) string {
	for _, k := range keys {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(strings.ToLower(line), k) {
				return strings.TrimSpace(line)
			}
		}
	}
	return strings.TrimSpace(out)
}

// run returns a command's standard output followed by its error (which
// carries standard error): ping reports local refusals there.
func run(ctx context.Context, c collector, node string, argv ...string) string {
	out, err := c.Run(ctx, node, argv...)
	if err != nil {
		return string(out) + "\n" + err.Error()
	}
	return string(out)
}
