package frr

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

func TestDump(t *testing.T) {
	doc, _ := intent.LoadFile("")
	p, ps := plan.Build(doc)
	if p == nil {
		t.Fatal(ps)
	}
	for _, r := range p.Routers {
		os.WriteFile(filepath.Join("/tmp/frrt", r.Name+".conf"), Render(p, r), 0o644)
	}
}
