package plan

import (
	"net/netip"
	"testing"
)

func TestCEAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.0/24":     "192.168.1.1",
		"192.168.1.77/24":    "192.168.1.1",
		"192.168.1.7/32":     "192.168.1.7",
		"10.0.0.0/31":        "10.0.0.1",
		"fd00:1::/64":        "fd00:1::1",
		"fd00:1::9/128":      "fd00:1::9",
		"255.255.255.255/32": "255.255.255.255",
	} {
		if got := CEAddress(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("CEAddress(%s) = %s, want %s", in, got, want)
		}
	}
}

// A loopback pinned on the pool's network address takes no allocatable
// slot: the pool still hands out all of its addresses.
func TestAllocatorPinOutsideUsableRange(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.0.0.0/30"), 32, true)
	if a.size() != 2 {
		t.Fatalf("a /30 of loopbacks holds %d, want 2 (.1 and .2)", a.size())
	}
	if _, ok := a.pin(netip.MustParsePrefix("10.0.0.0/32"), "pinned"); !ok {
		t.Fatal("pin failed")
	}
	got := map[netip.Prefix]bool{}
	for _, k := range []string{"a", "b"} {
		p, err := a.alloc(k)
		if err != nil {
			t.Fatalf("alloc %s: %v", k, err)
		}
		got[p] = true
	}
	if !got[netip.MustParsePrefix("10.0.0.1/32")] || !got[netip.MustParsePrefix("10.0.0.2/32")] {
		t.Errorf("allocated %v", got)
	}
	if _, err := a.alloc("c"); err == nil {
		t.Error("a full pool allocated a third address")
	}
}

// Allocation depends on the key and on the keys before it, not on later
// ones: a key keeps its slot when others are appended.
func TestAllocatorAppendStable(t *testing.T) {
	keys := []string{"pe1-pe2", "pe2-pe3", "pe3-pe4", "pe4-pe1", "pe1-pe3"}
	first := map[string]netip.Prefix{}
	a := newAllocator(netip.MustParsePrefix("10.20.0.0/28"), 31, false)
	for _, k := range keys[:3] {
		p, err := a.alloc(k)
		if err != nil {
			t.Fatal(err)
		}
		first[k] = p
	}
	b := newAllocator(netip.MustParsePrefix("10.20.0.0/28"), 31, false)
	for _, k := range keys {
		p, err := b.alloc(k)
		if err != nil {
			t.Fatal(err)
		}
		if want, ok := first[k]; ok && p != want {
			t.Errorf("%s moved from %s to %s", k, want, p)
		}
	}
}
