package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/plan"
)

// rawNode is a parsed `swanctl --raw` section: key=value pairs and
// nested {…} sections (lists in [...] are kept as text).
type rawNode struct {
	vals map[string]string
	subs map[string]*rawNode
	// order keeps section names in the order they appeared.
	order []string
}

// parseRaw parses swanctl's --raw output (one "event {…}" per line).
func parseRaw(s string) []*rawNode {
	var out []*rawNode
	for _, line := range strings.Split(s, "\n") {
		i := strings.Index(line, "{")
		if i < 0 {
			continue
		}
		toks := tokenizeRaw(line[i:])
		n, _ := parseRawSection(toks, 1)
		out = append(out, n)
	}
	return out
}

func tokenizeRaw(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ':
			i++
		case c == '{' || c == '}':
			toks = append(toks, string(c))
			i++
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				j = len(s) - i - 1
			}
			// a list may hold nested brackets: take up to the matching one
			depth, k := 0, i
			for ; k < len(s); k++ {
				if s[k] == '[' {
					depth++
				} else if s[k] == ']' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			toks = append(toks, s[i:min(k+1, len(s))])
			i = k + 1
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '{' && s[j] != '}' {
				if s[j] == '=' && j+1 < len(s) && s[j+1] == '[' {
					j++
					break
				}
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

func parseRawSection(toks []string, i int) (*rawNode, int) {
	n := &rawNode{vals: map[string]string{}, subs: map[string]*rawNode{}}
	for i < len(toks) {
		t := toks[i]
		switch {
		case t == "}":
			return n, i + 1
		case i+1 < len(toks) && toks[i+1] == "{":
			sub, next := parseRawSection(toks, i+2)
			n.subs[t] = sub
			n.order = append(n.order, t)
			i = next
		case strings.HasSuffix(t, "=") && i+1 < len(toks):
			n.vals[strings.TrimSuffix(t, "=")] = toks[i+1]
			i += 2
		default:
			if k, v, ok := strings.Cut(t, "="); ok {
				n.vals[k] = v
			}
			i++
		}
	}
	return n, i
}

// Names strongSwan reports for the proposal keywords backbone uses.
var algNames = map[string]string{
	"chacha20poly1305": "CHACHA20_POLY1305", "aes128gcm16": "AES_GCM_16", "aes256gcm16": "AES_GCM_16",
	"aes128gcm": "AES_GCM_16", "aes256gcm": "AES_GCM_16", "aes128": "AES_CBC", "aes256": "AES_CBC",
	"prfsha256": "PRF_HMAC_SHA2_256", "prfsha384": "PRF_HMAC_SHA2_384", "prfsha512": "PRF_HMAC_SHA2_512",
	"x25519": "CURVE_25519", "curve25519": "CURVE_25519", "x448": "CURVE_448", "ecp256": "ECP_256", "ecp384": "ECP_384",
	"ecp521": "ECP_521", "modp2048": "MODP_2048", "modp3072": "MODP_3072", "modp4096": "MODP_4096",
	// An IKE proposal without a PRF takes it from its integrity
	// algorithm (aes256-sha384-ecp384: PRF_HMAC_SHA2_384).
	"sha256": "PRF_HMAC_SHA2_256", "sha384": "PRF_HMAC_SHA2_384", "sha512": "PRF_HMAC_SHA2_512",
}

// expectedAlgs returns the strongSwan names of a proposal's words.
func expectedAlgs(proposal string) map[string]bool {
	out := map[string]bool{}
	for _, w := range strings.Split(proposal, "-") {
		if n, ok := algNames[w]; ok {
			out[n] = true
		}
	}
	return out
}

func checkSAs(sc scope, r *recorder) {
	p := sc.p
	wantIKE := expectedAlgs(p.Encryption.IKE)
	wantESP := expectedAlgs(p.Encryption.ESP)
	mode := strings.ToUpper(p.Encryption.Mode)
	sc.linkEnds(func(rt, peer *plan.Router, i *plan.Interface, st *routerState) {
		if !i.Encrypted {
			return
		}
		name := fmt.Sprintf("ipsec %s -> %s", rt.Name, peer.Name)
		var best string
		ok := false
		for _, ev := range parseRaw(st.shell["sas"]) {
			for _, conn := range ev.order {
				ike := ev.subs[conn]
				if ike.vals["remote-host"] != i.Remote.String() || ike.vals["state"] != "ESTABLISHED" {
					continue
				}
				ikeAlgs := []string{ike.vals["encr-alg"], ike.vals["prf-alg"], ike.vals["dh-group"]}
				ikeOK := true
				for _, a := range ikeAlgs {
					if a != "" && !wantIKE[a] {
						ikeOK = false
					}
				}
				best = fmt.Sprintf("IKE %s ESTABLISHED %s", conn, strings.Join(ikeAlgs, "/"))
				children := ike.subs["child-sas"]
				if children == nil {
					best += ", no CHILD SA"
					continue
				}
				for _, cn := range children.order {
					ch := children.subs[cn]
					if ch.vals["state"] != "INSTALLED" {
						continue
					}
					best += fmt.Sprintf(", CHILD %s %s %s %s", ch.vals["name"], ch.vals["state"], ch.vals["mode"], ch.vals["encr-alg"])
					if ikeOK && ch.vals["mode"] == mode && wantESP[ch.vals["encr-alg"]] {
						ok = true
					}
				}
			}
		}
		if best == "" {
			best = "no ESTABLISHED IKE SA with " + i.Remote.String()
		}
		r.check(ok, GroupEncryption, name,
			fmt.Sprintf("charon is down on %s or %s, the PSKs differ, or the proposals do not match (want IKE %s, ESP %s, %s mode)", rt.Name, peer.Name, p.Encryption.IKE, p.Encryption.ESP, p.Encryption.Mode), best)
	})
}

// captureSpec is what a capture of the underlay between PEs selects,
// and the tunnels whose cleartext counts.
type captureSpec struct {
	filter    string
	encrypted map[[2]netip.Addr]bool
	// customer are the sites' networks (PE-CE links and prefixes): no
	// packet to them may cross the underlay, encrypted links or not.
	customer []netip.Prefix
}

// newCaptureSpec returns the capture of plan p; ok is false when there is
// nothing to capture (no encryption, no underlay).
func newCaptureSpec(p *plan.Plan) (captureSpec, bool) {
	if !p.Encryption.Enabled {
		return captureSpec{}, false
	}
	var src, dst []string
	cs := captureSpec{encrypted: map[[2]netip.Addr]bool{}}
	for _, rt := range p.Routers {
		for _, i := range rt.Interfaces {
			if i.Encrypted {
				cs.encrypted[[2]netip.Addr{i.Local, i.Remote}] = true
			}
		}
		if rt.Underlay != nil {
			for _, a := range []netip.Prefix{rt.Underlay.IPv6, rt.Underlay.IPv4} {
				if a.IsValid() {
					src = append(src, "src host "+a.Addr().String())
					dst = append(dst, "dst host "+a.Addr().String())
				}
			}
		}
	}
	if len(src) == 0 {
		return captureSpec{}, false
	}
	cs.filter = "((" + strings.Join(src, " or ") + ") and (" + strings.Join(dst, " or ") + "))"
	// Anything to a customer network, from any source (a PE's error
	// for a VPN packet takes its VRF address as source).
	for _, s := range p.Sites {
		for _, n := range append([]netip.Prefix{s.PEIPv4, s.PEIPv6}, s.Prefixes...) {
			if n.IsValid() {
				cs.customer = append(cs.customer, n.Masked())
				cs.filter += " or dst net " + n.Masked().String()
			}
		}
	}
	return cs, true
}

func (cs captureSpec) isCustomer(a netip.Addr) bool {
	for _, n := range cs.customer {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// CaptureCount is what a capture of the underlay between PEs saw.
type CaptureCount struct {
	ESP int `json:"esp"`
	IKE int `json:"ike"`
	// Cleartext counts the packets of encrypted tunnels that crossed
	// without ESP, by kind (GRE, VXLAN, OSPF, LDP, BGP, ICMPv6, other).
	Cleartext int            `json:"cleartext"`
	Kinds     map[string]int `json:"kinds,omitempty"`
	// Examples are the first cleartext lines, as tcpdump printed them.
	Examples []string `json:"examples,omitempty"`
}

// add counts one tcpdump line.
func (n *CaptureCount) add(cs captureSpec, line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	src, dst, ok := captureEnds(line)
	switch {
	case strings.Contains(line, "ESP(") || strings.Contains(line, ": ESP"):
		n.ESP++
	case strings.Contains(line, ".500 ") || strings.Contains(line, ".4500 ") || strings.Contains(line, "isakmp"),
		// An ICMP error about an IKE packet (a PE whose charon is down
		// answers its peers' IKE with port unreachable): it quotes IKE.
		strings.Contains(line, "udp port 500") || strings.Contains(line, "udp port 4500"):
		n.IKE++
	default:
		kind := classify(line)
		switch {
		case ok && cs.isCustomer(dst):
			// A PE's packet to a customer address on the underlay (an
			// ICMPv6 error for a VPN packet routed in the default table).
			kind = "customer-addressed " + kind
		case ok && !cs.encrypted[[2]netip.Addr{src, dst}] && !cs.encrypted[[2]netip.Addr{dst, src}]:
			// Cleartext between two PEs counts only on encrypted links.
			return
		}
		if n.Kinds == nil {
			n.Kinds = map[string]int{}
		}
		n.Kinds[kind]++
		n.Cleartext++
		if len(n.Examples) < 3 {
			n.Examples = append(n.Examples, strings.TrimSpace(line))
		}
	}
}

// kinds lists the cleartext kinds with their counts, sorted.
func (n *CaptureCount) kinds() string {
	var ks []string
	for k, c := range n.Kinds {
		ks = append(ks, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// checkCapture captures the underlay between PEs for d and counts what is
// not ESP or IKE: any cleartext GRE, VXLAN, OSPF, LDP or BGP fails.
func checkCapture(ctx context.Context, p *plan.Plan, c collector, d time.Duration, onPEs bool, r *recorder) {
	cs, ok := newCaptureSpec(p)
	if !ok {
		return
	}
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	out, err := captureUnderlay(ctx, p, c, secs, cs.filter, onPEs)
	if err != nil {
		r.fail(GroupEncryption, "underlay capture", "tcpdump could not run (install tcpdump on the routers)", "%v", err)
		return
	}
	var n CaptureCount
	for _, line := range strings.Split(string(out), "\n") {
		n.add(cs, line)
	}
	switch {
	case n.Cleartext > 0:
		r.fail(GroupEncryption, "underlay capture: only ESP and IKE between PEs",
			"IPsec policies are missing (charon down without trap policies or guard, bypass-lan loaded, or selectors that do not match the encapsulation), or a PE sends customer-addressed packets on the underlay (an ICMPv6 Packet Too Big without the guard)",
			"%d cleartext packets in %s (%s), %d ESP; e.g. %s", n.Cleartext, d, n.kinds(), n.ESP, strings.Join(n.Examples, " | "))
	case n.ESP == 0:
		r.fail(GroupEncryption, "underlay capture: only ESP and IKE between PEs", "no traffic crossed the underlay during the capture: the backbone is idle or down",
			"0 packets between PEs in %s", d)
	default:
		r.pass(GroupEncryption, "underlay capture: only ESP and IKE between PEs", "%d ESP, %d IKE, 0 cleartext packets in %s", n.ESP, n.IKE, d)
	}
}

// Capture is a capture of a lab's underlay between PEs that runs until
// stopped (chaos runs one for the whole of a scenario).
type Capture struct {
	cs     captureSpec
	cancel context.CancelFunc
	done   chan error
	stop   sync.Once
	mu     sync.Mutex
	n      CaptureCount
}

// StartCapture starts capturing the lab's underlay between PEs, from its
// underlay node, which sees every link. It returns once tcpdump listens.
func StartCapture(ctx context.Context, p *plan.Plan, nodes node.Nodes) (*Capture, error) {
	cs, ok := newCaptureSpec(p)
	if !ok {
		return nil, fmt.Errorf("plan %q encrypts nothing: there is nothing to capture", p.Name)
	}
	r, err := nodes.Node("underlay")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Capture{cs: cs, cancel: cancel, done: make(chan error, 1)}
	listening := make(chan struct{})
	var once sync.Once
	stderr := &lineWriter{fn: func(line string) {
		if strings.Contains(line, "listening on") {
			once.Do(func() { close(listening) })
		}
	}}
	go func() {
		// tcpdump's lines, counted as they come.
		stdout := &lineWriter{fn: func(line string) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.n.add(c.cs, line)
		}}
		c.done <- r.Run(ctx, node.Cmd{Argv: []string{"tcpdump", "-nn", "-l", "-i", "any", cs.filter}, Stdout: stdout, Stderr: stderr})
	}()
	select {
	case <-listening:
		return c, nil
	case err := <-c.done:
		cancel()
		return nil, fmt.Errorf("underlay capture: tcpdump ended before it listened (install tcpdump): %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		<-c.done
		return nil, fmt.Errorf("underlay capture: tcpdump did not start listening in 10s")
	}
}

// Count is what the capture saw so far.
func (c *Capture) Count() CaptureCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	n.Kinds = maps.Clone(c.n.Kinds)
	n.Examples = slices.Clone(c.n.Examples)
	return n
}

// Stop ends the capture and returns what it saw. It may be called again.
func (c *Capture) Stop() CaptureCount {
	c.stop.Do(func() {
		c.cancel()
		<-c.done
	})
	return c.Count()
}

// lineWriter calls fn for each line written.
type lineWriter struct {
	buf []byte
	fn  func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// captureEnds extracts the source and destination address of a tcpdump line.
func captureEnds(line string) (netip.Addr, netip.Addr, bool) {
	f := strings.Fields(line)
	for i := 0; i+2 < len(f); i++ {
		if f[i+1] == ">" {
			s, err1 := netip.ParseAddr(trimPort(f[i]))
			d, err2 := netip.ParseAddr(trimPort(strings.TrimSuffix(f[i+2], ":")))
			return s, d, err1 == nil && err2 == nil
		}
	}
	return netip.Addr{}, netip.Addr{}, false
}

// trimPort drops tcpdump's ".port" suffix from an address.
func trimPort(s string) string {
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
}

func classify(line string) string {
	switch {
	case strings.Contains(line, "GRE"):
		return "GRE"
	case strings.Contains(line, ".4789"):
		return "VXLAN"
	case strings.Contains(line, "OSPF"):
		return "OSPF"
	case strings.Contains(line, ".646") || strings.Contains(line, "LDP"):
		return "LDP"
	case strings.Contains(line, ".179"):
		return "BGP"
	case strings.Contains(line, "ICMP6"):
		return "ICMPv6"
	}
	return "other"
}

// captureUnderlay captures the traffic between PEs: in a lab from its
// underlay node, which sees every link; on deployed routers on each
// PE's underlay interface at once (the provider's network is not ours).
func captureUnderlay(ctx context.Context, p *plan.Plan, c collector, secs, filter string, onPEs bool) ([]byte, error) {
	capture := func(node, dev string) ([]byte, error) {
		out, err := c.Run(ctx, node, "timeout", secs, "tcpdump", "-nn", "-l", "-i", dev, filter)
		// timeout ends tcpdump with status 124: that is the normal end.
		if err != nil && !strings.Contains(err.Error(), "exit status 124") {
			return nil, fmt.Errorf("%s: %w", node, err)
		}
		return out, nil
	}
	if !onPEs {
		return capture("underlay", "any")
	}
	var mu sync.Mutex
	var all []byte
	var errs []error
	var wg sync.WaitGroup
	for _, rt := range p.Routers {
		if rt.Underlay == nil || rt.Role == intent.RoleCE {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := capture(rt.Name, rt.Underlay.Interface)
			mu.Lock()
			defer mu.Unlock()
			all = append(all, out...)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return all, errors.Join(errs...)
}
