package intent_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
)

// build loads and plans YAML, as the CLI does: validation problems and
// the plan's own (allocation, MTU) come back together.
func build(t *testing.T, y []byte) (*plan.Plan, intent.Problems, error) {
	t.Helper()
	doc, err := intent.Load(y, "test.yaml")
	if err != nil {
		return nil, nil, err
	}
	p, ps := plan.Build(doc)
	return p, ps, nil
}

func TestDefaultIsValid(t *testing.T) {
	p, ps, err := build(t, intent.DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || len(ps.Errors()) > 0 {
		t.Fatalf("default intent has errors:\n%v", ps.Err())
	}
}

func TestVariantsAreValid(t *testing.T) {
	for _, v := range intenttest.Variants(t) {
		t.Run(v.Name, func(t *testing.T) {
			p, ps, err := build(t, v.YAML)
			if err != nil {
				t.Fatal(err)
			}
			if p == nil {
				t.Fatalf("variant has errors:\n%v", ps.Err())
			}
		})
	}
}

// brokenCases are single mistakes in the default intent. Each names the
// problem's exact path and a distinctive piece of its message; errors is
// how many errors the mistake causes in all (1 unless it cascades).
var brokenCases = []struct {
	name   string
	edits  []string
	path   string
	msg    string
	errors int
}{
	{"unknown router in a link",
		[]string{"between: [pe201, pe202]", "between: [pe201, pe299]"},
		"links[1].between[1]", `router "pe299" is not defined`, 1},
	{"link to a CE",
		[]string{"between: [pe201, pe202]", "between: [pe201, ce2]"},
		"links[1].between[1]", `router "ce2" is a CE`, 1},
	{"unknown CE in a site",
		[]string{"  - ce: ce2\n", "  - ce: ce9\n"},
		"sites[1].ce", `router "ce9" is not defined`, 1},
	{"unknown PE in a site",
		[]string{"    pe: pe201\n", "    pe: pe209\n"},
		"sites[1].pe", `router "pe209" is not defined`, 1},
	{"duplicate router name",
		[]string{"  - name: ce2\n", "  - name: ce1\n"},
		"routers[5].name", `router "ce1" is already defined at routers[4]`, 2},
	{"duplicate loopback",
		[]string{"loopback: {ipv4: 10.10.0.1,", "loopback: {ipv4: 10.10.0.2,"},
		"routers[1].loopback.ipv4", "address 10.10.0.2 is already used by pe101 (routers[0].loopback.ipv4)", 1},
	{"overlapping pools",
		[]string{"link_v4: 10.20.0.0/24", "link_v4: 10.0.0.0/8"},
		"pools.link_v4", "overlaps pools.loopback_v4 (10.10.0.0/24)", 1},
	{"pool with host bits",
		[]string{"link_v4: 10.20.0.0/24", "link_v4: 10.20.0.1/24"},
		"pools.link_v4", "has host bits set", 1},
	{"underlay overlapping a pool",
		[]string{`underlay: {ipv6: "2001:db8:202::2/64"}`, `underlay: {ipv6: "fd53:ba85:6bf9:20::2/64"}`},
		"routers[2].underlay.ipv6", "overlaps pools.link_v6", 1},
	{"link pool exhausted",
		[]string{"link_v4: 10.20.0.0/24", "link_v4: 10.20.0.0/30"},
		"links[2]", "no IPv4 link network: pool 10.20.0.0/30 is exhausted: it holds 2 /31 networks", 2},
	{"self-link",
		[]string{"between: [pe201, pe202]", "between: [pe201, pe201]"},
		"links[1].between", `link from "pe201" to itself`, 1},
	{"duplicate link",
		[]string{"between: [pe102, pe101]", "between: [pe201, pe101]"},
		"links[3]", "duplicate link pe201-pe101 (also links[0])", 1},
	{"disconnected backbone",
		[]string{"  - name: ce1\n", "  - name: pe301\n    role: pe\n    underlay: {ipv6: \"2001:db8:301::2/64\"}\n  - name: ce1\n"},
		"links", "the backbone is not connected: pe301 cannot reach pe101", 1},
	{"undefined VRF",
		[]string{"    vrf: cust-a\n    ipv4: 172.31.2.0/30", "    vrf: cust-z\n    ipv4: 172.31.2.0/30"},
		"sites[1].vrf", `VRF "cust-z" is not defined`, 1},
	{"CE attached to a P router",
		[]string{"  - name: pe201\n    role: pe\n", "  - name: pe201\n    role: p\n"},
		"sites[1].pe", `CE "ce2" is attached to "pe201", which is a P, not a PE`, 1},
	{"PE used as a CE",
		[]string{"  - ce: ce2\n", "  - ce: pe202\n"},
		"sites[1].ce", `router "pe202" is a PE, not a CE`, 1},
	{"malformed RD",
		[]string{"    id: 100\n", "    id: 100\n    rd: 65000-100\n"},
		"vrfs[0].rd", `malformed RD "65000-100" is not in ASN:NN or IPv4:NN form`, 1},
	{"malformed RT",
		[]string{`import: ["65000:100"]`, `import: ["65000:1x"]`},
		"vrfs[0].import[0]", "malformed route target", 1},
	{"RT with a 4-byte ASN and a 32-bit number",
		[]string{`export: ["65000:100"]`, `export: ["4200000000:70000"]`},
		"vrfs[0].export[0]", "a 4-byte ASN leaves only 16 bits", 1},
	{"reserved ASN",
		[]string{"asn: 65000\n", "asn: 23456\n"},
		"asn", "23456 is not a usable AS number", 1},
	{"eBGP CE with the backbone's ASN",
		[]string{"    asn: 65001\n", "    asn: 65000\n"},
		"sites[0].routing", `CE "ce1" uses the backbone's own ASN 65000`, 1},
	{"eBGP site without a CE ASN",
		[]string{"    asn: 65001\n", ""},
		"sites[0].routing", "eBGP site needs the CE's ASN", 1},
	{"MTU below 1280 after the stack",
		[]string{"  mtu: 1500 ", "  mtu: 1300 "},
		"links[2]", "the largest customer packet is 1188 bytes, below IPv6's minimum of 1280", 4},
	{"underlay MTU out of range",
		[]string{"  mtu: 1500 ", "  mtu: 1000 "},
		"underlay.mtu", "MTU 1000 is out of range", 1},
	{"tunnel MTU pinned too high",
		[]string{"    encap: vxlan\n", "    encap: vxlan\n    mtu: 1400\n"},
		"links[2].mtu", "tunnel MTU 1400 exceeds the 1396 bytes the stack allows on a 1500-byte underlay", 1},
	{"unnumbered link",
		[]string{"    encap: vxlan\n", "    encap: vxlan\n    unnumbered: true\n"},
		"links[2].unnumbered", `unnumbered tunnels blackhole traffic: when one side is shut, zebra fails to install the nexthop on the other ("Nexthop device is not up")`, 1},
	{"unknown encapsulation",
		[]string{"    encap: vxlan\n", "    encap: geneve\n"},
		"links[2].encap", `unknown encapsulation "geneve"`, 1},
	{"pinned link network not a /31",
		[]string{"    encap: vxlan\n", "    encap: vxlan\n    ipv4: 10.20.0.8/30\n"},
		"links[2].ipv4", "10.20.0.8/30 is not a /31", 1},
	{"pinned link network outside its pool",
		[]string{"    encap: vxlan\n", "    encap: vxlan\n    ipv6: \"fd53:ba85:6bf9:99::/127\"\n"},
		"links[2].ipv6", "is outside pools.link_v6", 1},
	{"same network pinned on two links",
		[]string{"    encap: vxlan\n", "    encap: vxlan\n    ipv4: 10.20.0.8/31\n", "    encap: gre\n\nvrfs:", "    encap: gre\n    ipv4: 10.20.0.8/31\n\nvrfs:"},
		"links[3].ipv4", "10.20.0.8/31 is already pinned by link pe102-pe202", 1},
	{"underlay address is the gateway",
		[]string{`underlay: {ipv6: "2001:db8:102::2/64"}`, `underlay: {ipv6: "2001:db8:102::1/64"}`},
		"routers[3].underlay.ipv6", "2001:db8:102::1 is the underlay gateway's address", 1},
	{"router name too long for interface names",
		[]string{"  - name: ce2\n", "  - name: ce-with-a-long-name\n", "  - ce: ce2\n", "  - ce: ce-with-a-long-name\n"},
		"routers[5].name", `"ce-with-a-long-name" is not a valid router name`, 1},
	{"route reflector is not a PE",
		[]string{"bgp: {connect_retry: 2,", "bgp: {route_reflectors: [ce1], connect_retry: 2,"},
		"protocols.bgp.route_reflectors[0]", `router "ce1" is not a PE`, 1},
	{"BGP timers",
		[]string{"keepalive: 10, hold: 30", "keepalive: 20, hold: 30"},
		"protocols.bgp.hold", "keepalive 20 / hold 30 is not a valid timer pair", 1},
	{"OSPF dead interval not above hello",
		[]string{"dead_interval: 4", "dead_interval: 1"},
		"protocols.ospf.dead_interval", "dead interval 1 must be greater than the hello interval 1", 1},
	{"unknown host OS",
		[]string{`    underlay: {ipv6: "2001:db8:101::2/64"}`, `    underlay: {ipv6: "2001:db8:101::2/64"}
    host: {os: windows}`},
		"routers[0].host.os", `unknown operating system "windows"`, 1},
	{"unknown network stack",
		[]string{`    underlay: {ipv6: "2001:db8:101::2/64"}`, `    underlay: {ipv6: "2001:db8:101::2/64"}
    host: {os: debian12, network: ifupdown}`},
		"routers[0].host.network", `unknown network stack "ifupdown"`, 1},
	{"a CE to deploy",
		[]string{"    asn: 65001\n", "    asn: 65001\n    host: {os: debian12}\n"},
		"routers[4].host", `CE "ce1" cannot be deployed`, 1},
	{"LDP session hold time below FRR's minimum",
		[]string{"session_holdtime: 15", "session_holdtime: 10"},
		"protocols.ldp.session_holdtime", "LDP session hold time 10 is out of range", 1},
	{"LDP sync wait of zero seconds",
		[]string{"sync_wait: 1", "sync_wait: -1"},
		"protocols.ldp.sync_wait", "LDP sync wait -1 is out of range", 1},
	{"unknown ESP algorithm",
		[]string{"  esp: chacha20poly1305-x25519\n", "  esp: des-md5\n"},
		"encryption.esp", `unknown algorithm "des" in proposal "des-md5"`, 2},
	{"bad rekey time",
		[]string{"  auth: psk\n", "  auth: psk\n  rekey_time: 4w\n"},
		"encryption.rekey_time", `"4w" is not a duration`, 1},
	{"duplicate VRF id",
		[]string{"    export: [\"65000:100\"]\n", "    export: [\"65000:100\"]\n  - {name: cust-b, id: 100, import: [\"65000:2\"], export: [\"65000:2\"]}\n"},
		"vrfs[1].id", "id 100 is already used by vrfs[0]", 1},
	{"VRF without route targets",
		[]string{"    import: [\"65000:100\"]\n    export: [\"65000:100\"]\n", ""},
		"vrfs[0]", `VRF "cust-a" has no route targets`, 1},
	{"site networks overlap within a VRF",
		[]string{"prefixes: [192.168.2.0/24,", "prefixes: [192.168.1.128/25,"},
		"sites[1].prefixes[0]", "192.168.1.128/25 overlaps sites[0].prefixes[0] (192.168.1.0/24)", 1},
	{"site prefix of a family the site does not carry",
		[]string{"    ipv6: \"fd00:ce:2::/64\"\n", ""},
		"sites[1].prefixes[1]", "fd00:2::/64 is IPv6, but the site has no IPv6 PE-CE network", 1},
	{"unknown authentication",
		[]string{"  auth: psk\n", "  auth: certs\n"},
		"encryption.auth", `unknown authentication "certs"`, 1},
	{"VRF named like a device",
		[]string{"  - name: cust-a\n", "  - name: eth0\n", "    vrf: cust-a\n    ipv4: 172.31.1.0/30", "    vrf: eth0\n    ipv4: 172.31.1.0/30", "    vrf: cust-a\n    ipv4: 172.31.2.0/30", "    vrf: eth0\n    ipv4: 172.31.2.0/30"},
		"vrfs[0].name", `VRF "eth0" would clash with the underlay interface of pe101`, 1},
	{"link pool too large for 24-bit VNIs",
		[]string{"link_v4: 10.20.0.0/24", "link_v4: 10.0.0.0/7"},
		"pools.link_v4", "must fit in 24 bits", 1},
	{"loopback that is not unicast",
		[]string{"loopback: {ipv4: 10.10.0.1,", "loopback: {ipv4: 0.0.0.0,"},
		"routers[1].loopback.ipv4", "0.0.0.0 is not a unicast address", 1},
	{"pinned loopback inside the link pool",
		[]string{"loopback: {ipv4: 10.10.0.3,", "loopback: {ipv4: 10.20.0.3,"},
		"routers[2].loopback.ipv4", "10.20.0.3 lies in pools.link_v4 (10.20.0.0/24)", 1},
}

func TestBrokenIntents(t *testing.T) {
	for _, tc := range brokenCases {
		t.Run(tc.name, func(t *testing.T) {
			y := intenttest.EditDefault(t, tc.edits...)
			p, ps, err := build(t, y)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if p != nil {
				t.Errorf("plan built despite errors")
			}
			errs := ps.Errors()
			found := false
			for _, pr := range errs {
				if pr.Path == tc.path && strings.Contains(pr.Message, tc.msg) {
					found = true
					if pr.Line == 0 {
						t.Errorf("problem has no line: %s", pr)
					}
					if pr.Hint == "" {
						t.Errorf("problem has no hint: %s", pr)
					}
				}
			}
			if !found {
				t.Errorf("no error at %s containing %q; got:\n%v", tc.path, tc.msg, problemList(ps))
			}
			if len(errs) != tc.errors {
				t.Errorf("got %d errors, want %d:\n%v", len(errs), tc.errors, problemList(ps))
			}
		})
	}
}

func problemList(ps intent.Problems) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + string(p.Severity) + ": " + p.String() + "\n")
	}
	return b.String()
}

// Strict decoding: a misspelt field is an error with its line, not a
// silently ignored setting.
func TestUnknownFieldIsRejected(t *testing.T) {
	y := intenttest.EditDefault(t, "    encap: vxlan\n", "    encap: vxlan\n    mtuu: 1400\n")
	_, err := intent.Load(y, "test.yaml")
	if err == nil {
		t.Fatal("unknown field accepted")
	}
	line := intenttest.LineOf(y, "mtuu:")
	for _, want := range []string{"test.yaml", "line " + strconv.Itoa(line), "mtuu", "not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestLoadRejectsNonMappings(t *testing.T) {
	for _, y := range []string{"", "# nothing\n", "- a\n- b\n", "just text\n", "name: [unclosed\n"} {
		if _, err := intent.Load([]byte(y), "x"); err == nil {
			t.Errorf("Load(%q) succeeded", y)
		}
	}
}

// Several mistakes in one file are all reported in one run.
func TestAllErrorsAtOnce(t *testing.T) {
	y := intenttest.EditDefault(t,
		"asn: 65000\n", "asn: 0\n",
		"between: [pe201, pe202]", "between: [pe201, pe299]",
		"    encap: vxlan\n", "    encap: vxlan\n    unnumbered: true\n",
		`import: ["65000:100"]`, `import: ["65000:1x"]`,
		"  - ce: ce2\n", "  - ce: ce9\n",
		"    asn: 65001\n", "",
	)
	_, ps, err := build(t, y)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"asn", "links[1].between[1]", "links[2].unnumbered", "vrfs[0].import[0]", "sites[0].routing", "sites[1].ce"}
	errs := ps.Errors()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(errs), len(want), problemList(ps))
	}
	// Sorted by line: the report reads top to bottom like the file.
	for i, p := range errs {
		if p.Path != want[i] {
			t.Errorf("error %d is at %s, want %s", i, p.Path, want[i])
		}
		if i > 0 && p.Line < errs[i-1].Line {
			t.Errorf("errors not sorted by line: %s before %s", errs[i-1], p)
		}
	}
	var ie *intent.InvalidError
	if e := ps.Err(); e == nil {
		t.Fatal("Err() is nil")
	} else if !errors.As(e, &ie) || len(ie.Problems) != len(want) || !strings.Contains(e.Error(), "6 error(s)") {
		t.Errorf("Err() = %v", e)
	}
}

// Warnings are choices with a known cost: the plan is still built.
func TestWarningsDoNotBlock(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		path  string
		msg   string
	}{
		{"tunnel mode", []string{"  mode: transport\n", "  mode: tunnel\n"}, "encryption.mode", "40 bytes more per packet"},
		{"GRE has no ECMP entropy", nil, "links[0].encap", "GRE has no ports"},
		{"UDP encapsulation", []string{"  auth: psk\n", "  auth: psk\n  udp_encap: true\n"}, "encryption.udp_encap", "no ECMP entropy"},
		{"BFD off", []string{"bfd: {enabled: true,", "bfd: {enabled: false,"}, "protocols.bfd.enabled", "without BFD a dead far end is noticed only after the OSPF dead interval (4 s)"},
		{"LDP sync off", []string{"sync: true,", "sync: false,"}, "protocols.ldp.sync", "without LDP-IGP synchronization"},
		{"clear link", []string{"    encap: vxlan\n", "    encap: vxlan\n    encryption: none\n"}, "links[2].encryption", "crosses the underlay in clear"},
		{"link without LDP", []string{"    encap: vxlan\n", "    encap: vxlan\n    ldp: false\n"}, "links[2].ldp", "has no labels"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := intenttest.EditDefault(t, tc.edits...)
			p, ps, err := build(t, y)
			if err != nil {
				t.Fatal(err)
			}
			if p == nil || len(ps.Errors()) > 0 {
				t.Fatalf("warning blocked the plan:\n%s", problemList(ps))
			}
			for _, pr := range ps.Warnings() {
				if pr.Path == tc.path && strings.Contains(pr.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no warning at %s containing %q; got:\n%s", tc.path, tc.msg, problemList(ps))
		})
	}
}

// Problems point at the line of the offending key in the file.
func TestProblemLines(t *testing.T) {
	cases := []struct {
		name   string
		edits  []string
		path   string
		marker string // text on the line the problem must point at
	}{
		{"unknown router in a link", []string{"between: [pe201, pe202]", "between: [pe201, pe299]"}, "links[1].between[1]", "between: [pe201, pe299]"},
		{"unnumbered", []string{"    encap: vxlan\n", "    encap: vxlan\n    unnumbered: true\n"}, "links[2].unnumbered", "unnumbered: true"},
		{"undefined VRF", []string{"    vrf: cust-a\n    ipv4: 172.31.2.0/30", "    vrf: cust-z\n    ipv4: 172.31.2.0/30"}, "sites[1].vrf", "vrf: cust-z"},
		// A plan-stage problem is located too.
		{"MTU pinned too high", []string{"    encap: vxlan\n", "    encap: vxlan\n    mtu: 1400\n"}, "links[2].mtu", "mtu: 1400"},
		// A missing key points at its closest ancestor.
		{"eBGP without CE ASN", []string{"    asn: 65001\n", ""}, "sites[0].routing", "routing: ebgp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := intenttest.EditDefault(t, tc.edits...)
			_, ps, err := build(t, y)
			if err != nil {
				t.Fatal(err)
			}
			want := intenttest.LineOf(y, tc.marker)
			for _, p := range ps {
				if p.Path == tc.path {
					if p.Line != want {
						t.Errorf("%s is at line %d, want %d", p.Path, p.Line, want)
					}
					return
				}
			}
			t.Errorf("no problem at %s:\n%s", tc.path, problemList(ps))
		})
	}
}
