package features

import (
	"os"
	"testing"
)

func TestCheckRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	fs := Check(nil)
	if len(fs) != 8 {
		t.Fatalf("expected 8 feature checks, got %d: %+v", len(fs), fs)
	}
	for _, f := range fs {
		t.Logf("%-35s ok=%v %s", f.Name, f.OK, f.Error)
		if f.OK == (f.Error != "") {
			t.Errorf("%s: ok=%v but error %q", f.Name, f.OK, f.Error)
		}
	}
	// veth and namespaces exist on every kernel the lab runs on: a check
	// that reports them missing is broken, not the kernel.
	for _, f := range fs {
		if f.Module == "veth" && !f.OK {
			t.Errorf("veth reported missing: %s", f.Error)
		}
	}
}

func TestRequired(t *testing.T) {
	fs := []Feature{{Name: "a", Module: "vrf"}, {Name: "b", Module: "mpls_router"}, {Name: "c"}}
	got := Required(fs, []string{"vrf"})
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "c" {
		t.Errorf("Required = %+v, want a and c", got)
	}
}
