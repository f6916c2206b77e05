package lab

import (
	"os"
	"testing"
)

func TestCheckKernelRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	fs := CheckKernel()
	if len(fs) < 8 {
		t.Fatalf("expected 8 feature checks, got %d: %+v", len(fs), fs)
	}
	for _, f := range fs {
		t.Logf("%-35s ok=%v %s", f.Name, f.OK, f.Error)
	}
}
