package uml

import (
	"net"
	"slices"
	"strings"
	"testing"
)

// The command line boots from the host's / read-only, keeps the console
// quiet, plugs the control tap first and each wire after it on its own
// vector device with the wire's MAC, and ends with init and its
// arguments after "--": UML appends console=tty0 to the command line, so
// everything the init needs comes before that.
func TestCmdline(t *testing.T) {
	s := Spec{
		Name: "pe101", Dir: "/run/backbone/x/machines/pe101", MemoryMiB: 384,
		Binary: "/run/backbone/x/bin/backbone",
		NICs: []NIC{
			{HostIf: "u-eth0", MAC: "02:bb:00:00:00:10", Name: "eth0"},
			{HostIf: "u-ce1", MAC: "02:bb:00:00:00:11", Name: "ce1"},
		},
	}
	got := cmdline(s, "/cfg.json")
	for _, want := range []string{
		"mem=384M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
		"umid=pe101", "uml_dir=/run/backbone/x/machines/pe101",
		"vec0:transport=tap,ifname=bbctl,mac=" + controlMAC,
		"vec1:transport=raw,ifname=u-eth0,mac=02:bb:00:00:00:10",
		"vec2:transport=raw,ifname=u-ce1,mac=02:bb:00:00:00:11",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("cmdline lacks %q: %v", want, got)
		}
	}
	tailWant := []string{"init=/run/backbone/x/bin/backbone", "--", InitCommand, "/cfg.json"}
	if tail := got[len(got)-4:]; !slices.Equal(tail, tailWant) {
		t.Errorf("cmdline ends %v, want %v", tail, tailWant)
	}
	for _, a := range got {
		if strings.ContainsAny(a, " \t\n") {
			t.Errorf("argument %q holds white space: the kernel would split it", a)
		}
	}
}

// NIC MACs are stable, unicast, locally administered, distinct per wire
// and never the control NIC's.
func TestNICMAC(t *testing.T) {
	seen := map[string]string{controlMAC: "control"}
	for _, n := range []string{"pe101", "pe102", "pe201", "pe202", "a-b", "a"} {
		for _, i := range []string{"eth0", "eth1", "ce1", "gre-x", "b-eth0"} {
			m := NICMAC(n, i)
			if m != NICMAC(n, i) {
				t.Fatalf("NICMAC(%s, %s) is not stable", n, i)
			}
			hw, err := net.ParseMAC(m)
			if err != nil {
				t.Fatalf("NICMAC(%s, %s) = %q: %v", n, i, m, err)
			}
			if hw[0]&1 != 0 || hw[0]&2 == 0 {
				t.Errorf("NICMAC(%s, %s) = %s: not a locally administered unicast address", n, i, m)
			}
			if prev, dup := seen[m]; dup {
				t.Errorf("NICMAC(%s, %s) = %s, same as %s", n, i, m, prev)
			}
			seen[m] = n + "/" + i
		}
	}
}
