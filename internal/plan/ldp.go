package plan

import (
	"container/heap"
	"fmt"

	"github.com/backbone-net/backbone/internal/intent"
)

// ldpMultihop flags the LDP adjacencies whose session would not cross
// their own link. An LDP session runs between the routers' loopbacks
// (transport addresses), so it follows the IGP's best path; when that path
// goes through a third router (the link is a high-cost backup, or ties
// with a longer one), the session's packets arrive with a hop limit below
// 255 and FRR, which applies GTSM to LDPv6 (RFC 7552), drops them: the
// IPv6 session never comes up. Such neighbors get GTSM disabled, on both
// ends, and the plan says why.
func (b *builder) ldpMultihop(p *Plan) {
	for _, l := range p.Links {
		if !l.LDP {
			continue
		}
		ra, rb := p.Router(l.Ends[0]), p.Router(l.Ends[1])
		ia, ib := ra.iface(rb.Name), rb.iface(ra.Name)
		if ia == nil || ib == nil {
			continue
		}
		altA, viaA := shortestAvoiding(p, ra.Name, rb.Name, l.Index)
		altB, viaB := shortestAvoiding(p, rb.Name, ra.Name, l.Index)
		if altA > ia.Cost && altB > ib.Cost {
			continue
		}
		ia.LDPMultihop, ib.LDPMultihop = true, true
		from, to, alt, via, cost := ra.Name, rb.Name, altA, viaA, ia.Cost
		if altA > ia.Cost {
			from, to, alt, via, cost = rb.Name, ra.Name, altB, viaB, ib.Cost
		}
		path := fmt.Sprintf("links[%d]", l.Index)
		b.ps = append(b.ps, intent.Problem{Severity: intent.Warning, Path: path, Line: b.doc.LineOf(path),
			Message: fmt.Sprintf("the IGP reaches %s's loopback from %s through %s (cost %d), not over this link (cost %d): the LDP session between them does not cross the link, so backbone disables GTSM for it (without that, FRR drops the IPv6 session: RFC 7552)", to, from, via, alt, cost),
			Hint:    "if the link should carry the session, give it the lowest cost between the two"})
	}
}

// iface returns the router's interface to peer.
func (r *Router) iface(peer string) *Interface {
	for _, i := range r.Interfaces {
		if i.Peer == peer {
			return i
		}
	}
	return nil
}

// shortestAvoiding is the IGP cost from router a to router b without link
// skip, and the first router on that path ("" when there is none: the cost
// is then larger than any real one).
func shortestAvoiding(p *Plan, a, b string, skip int) (int, string) {
	const inf = int(^uint(0) >> 2)
	dist := map[string]int{a: 0}
	first := map[string]string{}
	q := &costHeap{{a, 0}}
	for q.Len() > 0 {
		cur := heap.Pop(q).(costItem)
		if cur.cost > dist[cur.node] {
			continue
		}
		if cur.node == b {
			return cur.cost, first[b]
		}
		r := p.Router(cur.node)
		if r == nil {
			continue
		}
		for _, i := range r.Interfaces {
			if i.Link == skip {
				continue
			}
			nd := cur.cost + i.Cost
			if d, ok := dist[i.Peer]; !ok || nd < d {
				dist[i.Peer] = nd
				first[i.Peer] = first[cur.node]
				if cur.node == a {
					first[i.Peer] = i.Peer
				}
				heap.Push(q, costItem{i.Peer, nd})
			}
		}
	}
	return inf, ""
}

type costItem struct {
	node string
	cost int
}

type costHeap []costItem

func (h costHeap) Len() int           { return len(h) }
func (h costHeap) Less(i, j int) bool { return h[i].cost < h[j].cost }
func (h costHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *costHeap) Push(x any)        { *h = append(*h, x.(costItem)) }
func (h *costHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
