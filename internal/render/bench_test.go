package render_test

import (
	"testing"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render"
)

// BenchmarkRender500PE measures the whole pure pipeline (load, validate,
// plan, render every file) on a 500-PE backbone: a ring with chords (625
// links, a third of them VXLAN) and 100 customer sites in 10 VRFs. With
// route reflectors is how such a network is built; the full iBGP mesh
// (250,000 sessions) is the worst case.
//
//	go test -run '^$' -bench 500PE -benchmem -benchtime 3x ./internal/render
func BenchmarkRender500PE(b *testing.B) {
	for _, bc := range []struct {
		name string
		rrs  int
	}{{"rr", 2}, {"fullmesh", 0}} {
		y := intenttest.Generate(500, bc.rrs)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var bytes int
			for b.Loop() {
				doc, err := intent.Load(y, "big.yaml")
				if err != nil {
					b.Fatal(err)
				}
				p, ps := plan.Build(doc)
				if p == nil {
					b.Fatal(ps.Err())
				}
				bytes = 0
				for _, f := range render.Files(p, intenttest.PSKs{}, render.Options{}) {
					bytes += len(f.Data)
				}
			}
			b.ReportMetric(float64(bytes)/1e6, "MB-rendered")
		})
	}
}
