// Package intenttest builds intents for tests of the pure core: small edits
// of the embedded default backbone, named variants that exercise the
// renderers (route reflectors, P routers, IPv4 underlay, ...), generated
// large backbones for benchmarks, and a deterministic PSK source so that
// rendered test output holds no real secret.
package intenttest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// Edit applies replacements to base, given as old, new pairs. Each old text
// must occur exactly once in the text at the time it is applied, so that an
// edit never lands somewhere unintended when the default intent changes.
func Edit(base []byte, pairs ...string) ([]byte, error) {
	if len(pairs)%2 != 0 {
		return nil, fmt.Errorf("intenttest.Edit: odd number of arguments")
	}
	out := bytes.Clone(base)
	for i := 0; i < len(pairs); i += 2 {
		old, repl := pairs[i], pairs[i+1]
		if n := bytes.Count(out, []byte(old)); n != 1 {
			return nil, fmt.Errorf("intenttest.Edit: %q occurs %d times, want exactly 1", old, n)
		}
		out = bytes.Replace(out, []byte(old), []byte(repl), 1)
	}
	return out, nil
}

// MustEdit is Edit that fails the test on a bad edit.
func MustEdit(tb testing.TB, base []byte, pairs ...string) []byte {
	tb.Helper()
	out, err := Edit(base, pairs...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// EditDefault edits the embedded default intent.
func EditDefault(tb testing.TB, pairs ...string) []byte {
	tb.Helper()
	return MustEdit(tb, intent.DefaultYAML(), pairs...)
}

// WithHosts gives the default backbone's PEs (in a default-based intent)
// a host each, in pairs of router and host ("pe101", "{os: debian12}"):
// the host line goes under the router's underlay line.
func WithHosts(tb testing.TB, base []byte, pairs ...string) []byte {
	tb.Helper()
	underlay := map[string]string{
		"pe101": `    underlay: {ipv6: "2001:db8:101::2/64"}`, "pe201": `    underlay: {ipv6: "2001:db8:201::2/64"}`,
		"pe202": `    underlay: {ipv6: "2001:db8:202::2/64"}`, "pe102": `    underlay: {ipv6: "2001:db8:102::2/64"}`,
	}
	var edits []string
	for i := 0; i+1 < len(pairs); i += 2 {
		u, ok := underlay[pairs[i]]
		if !ok {
			tb.Fatalf("WithHosts: %q is not a PE of the default backbone", pairs[i])
		}
		edits = append(edits, u, u+"\n    host: "+pairs[i+1])
	}
	return MustEdit(tb, base, edits...)
}

// LineOf returns the 1-based line of the first occurrence of text in data,
// or 0 if it does not occur.
func LineOf(data []byte, text string) int {
	i := bytes.Index(data, []byte(text))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// PSKs is a deterministic pre-shared key source: each key is derived from
// its name, so rendered test output is stable and holds no real secret.
type PSKs struct{}

// PSK returns the base64 test key of a link.
func (PSKs) PSK(name string) string {
	sum := sha256.Sum256([]byte("backbone test psk, not a secret: " + name))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// CACert returns a fixed placeholder: rendered test output must be stable.
func (PSKs) CACert() []byte {
	return []byte("-----BEGIN CERTIFICATE-----\nTEST CA, not a certificate\n-----END CERTIFICATE-----\n")
}

// RouterCert returns fixed placeholders naming the router.
func (PSKs) RouterCert(name string) (cert, key []byte) {
	return []byte("-----BEGIN CERTIFICATE-----\nTEST " + name + "\n-----END CERTIFICATE-----\n"),
		[]byte("-----BEGIN EC PRIVATE KEY-----\nTEST " + name + "\n-----END EC PRIVATE KEY-----\n")
}

// Variant is a named intent.
type Variant struct {
	Name string
	YAML []byte
}

// Variants returns the default intent and edits of it that together cover
// every branch of the renderers. Every variant is valid.
func Variants(tb testing.TB) []Variant {
	tb.Helper()
	def := intent.DefaultYAML()
	edit := func(pairs ...string) []byte { return MustEdit(tb, def, pairs...) }
	return []Variant{
		{"default", def},
		{"route-reflectors", edit(
			"bgp: {connect_retry: 2, keepalive: 10, hold: 30}",
			"bgp: {connect_retry: 2, keepalive: 10, hold: 30, route_reflectors: [pe101, pe202]}")},
		// A second VRF with a fixed RD; a PE with two VRFs; eBGP and static
		// sites side by side, IPv4-only and IPv6-only attachments.
		{"ebgp-static-mix", edit(
			"  - name: ce2\n    role: ce\n",
			"  - name: ce2\n    role: ce\n  - name: ce3\n    role: ce\n    asn: 4200000003\n  - name: ce4\n    role: ce\n  - name: ce5\n    role: ce\n    asn: 65005\n",
			"    export: [\"65000:100\"]\n",
			"    export: [\"65000:100\"]\n  - name: cust-b\n    id: 200\n    rd: 65000:200\n    table: 2200\n    import: [\"65000:200\", \"65000:100\"]\n    export: [\"65000:200\"]\n",
			"    routing: static\n",
			"    routing: static\n"+
				"  - {ce: ce3, pe: pe202, vrf: cust-b, ipv4: 172.31.3.0/31, prefixes: [192.168.3.0/24, 192.168.33.7/32], routing: ebgp}\n"+
				"  - {ce: ce4, pe: pe202, vrf: cust-a, ipv6: \"fd00:ce:4::/127\", prefixes: [\"fd00:4::/48\"], routing: static}\n"+
				"  - {ce: ce5, pe: pe102, vrf: cust-b, ipv6: \"fd00:ce:5::/64\", prefixes: [\"fd00:5::/64\"], routing: ebgp}\n")},
		{"backup-link", BackupLink(tb)},
		{"triangle", Triangle(tb)},
		{"bfd-off", edit("bfd: {enabled: true,", "bfd: {enabled: false,")},
		{"encryption-none", edit("  type: ipsec\n", "  type: none\n")},
		{"pubkey", edit("  auth: psk\n", "  auth: pubkey\n")},
		// A P router in the middle, a link without LDP, a clear link, a
		// pinned network and MTU, the ip6gre encapsulation limit kept.
		{"p-router", edit(
			"  - name: ce1\n",
			"  - name: p1\n    role: p\n    underlay: {ipv6: \"2001:db8:900::2/64\"}\n  - name: ce1\n",
			"    encap: gre\n  - between: [pe201, pe202]\n",
			"    encap: gre\n    encap_limit: true\n    cost: 20\n  - between: [pe201, pe202]\n",
			"    encap: gre\n\nvrfs:",
			"    encap: gre\n"+
				"  - {between: [pe101, p1], encap: vxlan, ipv4: 10.20.0.100/31, ipv6: \"fd53:ba85:6bf9:20::100/127\", mtu: 1380}\n"+
				"  - {between: [p1, pe202], encap: gre, encryption: none, ldp: false, cost: 1000}\n"+
				"\nvrfs:",
			"ldp: {enabled: true, sync: true,", "ldp: {enabled: true, sync: true, prefer_ipv4: true,")},
		// IPv4 underlay (GRE, ESP over IPv4), ESP tunnel mode with UDP
		// encapsulation and a CBC proposal, default OSPF timers.
		{"ipv4-underlay-tunnel-cbc", edit(
			`underlay: {ipv6: "2001:db8:101::2/64"}`, `underlay: {ipv4: 198.51.100.2/24, interface: ens3}`,
			`underlay: {ipv6: "2001:db8:201::2/64"}`, `underlay: {ipv4: 198.51.100.3/24, interface: ens3}`,
			`underlay: {ipv6: "2001:db8:202::2/64"}`, `underlay: {ipv4: 203.0.113.2/24}`,
			`underlay: {ipv6: "2001:db8:102::2/64"}`, `underlay: {ipv4: 203.0.113.3/24, ipv6: "2001:db8:102::2/64"}`,
			"  mode: transport\n", "  mode: tunnel\n  udp_encap: true\n  rekey_time: 1d\n",
			"  ike: chacha20poly1305-prfsha256-x25519\n", "  ike: aes256-sha384-ecp384\n",
			"  esp: chacha20poly1305-x25519\n", "  esp: aes256-sha256-modp3072\n",
			"  ospf: {area: 0.0.0.0, hello_interval: 1, dead_interval: 4, retransmit_interval: 1, cost: 10}\n", "  ospf: {area: 7}\n",
			"  bgp: {connect_retry: 2, keepalive: 10, hold: 30}\n", "  bgp: {}\n",
			"  mtu: 1500 ", "  mtu: 9000 ")},
	}
}

// BackupLink is the default backbone, named "backup", with a high-cost
// backup link across the ring (pe101-pe202, cost 100): the IGP reaches
// pe202 from pe101 in two hops of cost 10, so the LDP session of the two
// directly connected routers runs through a third one.
func BackupLink(tb testing.TB) []byte {
	tb.Helper()
	return EditDefault(tb,
		"name: default", "name: backup",
		"  - between: [pe102, pe101]\n    encap: gre\n",
		"  - between: [pe102, pe101]\n    encap: gre\n  - between: [pe101, pe202]\n    encap: gre\n    cost: 100\n")
}

// Triangle is the smallest backbone with such a backup link: three PEs,
// pe101-pe201 at cost 100 while pe101-pe102-pe201 costs 20, and the two
// sites on pe101 and pe201, so their traffic and the LDP session of
// pe101 and pe201 both go through pe102. Named "triangle".
func Triangle(tb testing.TB) []byte {
	tb.Helper()
	return EditDefault(tb,
		"name: default", "name: triangle",
		"  - name: pe202\n    role: pe\n    underlay: {ipv6: \"2001:db8:202::2/64\"}\n    loopback: {ipv4: 10.10.0.3, ipv6: \"fd53:ba85:6bf9:10::3\"}\n", "",
		"  - between: [pe101, pe201]\n    encap: gre\n", "  - between: [pe101, pe201]\n    encap: gre\n    cost: 100\n",
		"  - between: [pe201, pe202]\n    encap: gre\n", "  - between: [pe102, pe201]\n    encap: gre\n",
		"  - between: [pe202, pe102]\n    encap: vxlan\n", "")
}

// Generate returns a valid intent of n PEs (n >= 4) in a ring with chords
// (every other PE of the first half to its opposite), every third link
// VXLAN, two customer sites per ten PEs spread over ten VRFs, and
// route reflectors when rrs > 0 (else a full iBGP mesh). Loopbacks and link
// networks are allocated, not pinned.
func Generate(n, rrs int) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("name: big")
	w("asn: 65000")
	w("pools:")
	w("  loopback_v4: 10.0.0.0/16")
	w("  loopback_v6: \"fd00:10::/64\"")
	w("  link_v4: 10.128.0.0/16")
	w("  link_v6: \"fd00:20::/64\"")
	w("protocols:")
	w("  ospf: {hello_interval: 1, dead_interval: 4}")
	var rr []string
	for i := 0; i < rrs && i < n; i++ {
		rr = append(rr, fmt.Sprintf("pe%d", 1+i*n/rrs))
	}
	w("  bgp: {connect_retry: 5, route_reflectors: [%s]}", strings.Join(rr, ", "))
	w("routers:")
	for i := 1; i <= n; i++ {
		w("  - {name: pe%d, role: pe, underlay: {ipv6: \"2001:db8:%x::2/64\"}}", i, i)
	}
	nsites := n / 5
	for k := 0; k < nsites; k++ {
		if k%2 == 0 {
			w("  - {name: ce%d, role: ce, asn: %d}", k+1, 64600+k)
		} else {
			w("  - {name: ce%d, role: ce}", k+1)
		}
	}
	w("links:")
	link := 0
	addLink := func(a, c int) {
		encap := "gre"
		if link%3 == 2 {
			encap = "vxlan"
		}
		link++
		w("  - {between: [pe%d, pe%d], encap: %s}", a, c, encap)
	}
	for i := 1; i <= n; i++ {
		addLink(i, i%n+1)
	}
	for i := 1; i <= n/2; i += 2 {
		if i+n/2 != i%n+1 && i+n/2 <= n {
			addLink(i, i+n/2)
		}
	}
	w("vrfs:")
	for v := 1; v <= 10; v++ {
		w("  - {name: vrf%d, id: %d, import: [\"65000:%d\"], export: [\"65000:%d\"]}", v, v, v, v)
	}
	if nsites > 0 {
		w("sites:")
	}
	for k := 0; k < nsites; k++ {
		// Two sites per ten PEs: on PE 10j+1 and 10j+6.
		pe := 10*(k/2) + 1 + 5*(k%2)
		routing := "static"
		if k%2 == 0 {
			routing = "ebgp"
		}
		w("  - {ce: ce%d, pe: pe%d, vrf: vrf%d, ipv4: 172.%d.%d.%d/30, ipv6: \"fd00:ce:%x::/64\", prefixes: [192.168.%d.0/24, \"fd01:%x::/64\"], routing: %s}",
			k+1, pe, k%10+1, 16+k/16384, (k/64)%256, (k%64)*4, k, k%256, k, routing)
	}
	return []byte(b.String())
}

// Plan loads y and plans it, failing the test on any load or plan error.
func Plan(tb testing.TB, y []byte, source string) *plan.Plan {
	tb.Helper()
	doc, err := intent.Load(y, source)
	if err != nil {
		tb.Fatal(err)
	}
	p, ps := plan.Build(doc)
	if p == nil {
		tb.Fatalf("%s does not plan: %v", source, ps.Err())
	}
	return p
}
