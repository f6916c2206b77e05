package intent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render"
)

// FuzzLoad feeds arbitrary YAML through the whole pure pipeline: Load,
// Validate and plan.Build, and render.Files when a plan comes out. No input
// may panic; a built plan must come with no errors, and every problem
// must say where it is.
//
//	go test ./internal/intent -run '^$' -fuzz FuzzLoad -fuzztime 60s
func FuzzLoad(f *testing.F) {
	f.Add(intent.DefaultYAML())
	for _, v := range intenttest.Variants(f) {
		f.Add(v.YAML)
	}
	for _, tc := range brokenCases {
		f.Add(intenttest.EditDefault(f, tc.edits...))
	}
	for _, s := range []string{
		"", "name: x\n", "- a\n", "name: [\n", "routers: {a: b}\n", "links:\n  - between: [a]\n",
		"name: a\nasn: 1\npools: {loopback_v4: 10.0.0.0/32, loopback_v6: \"::/128\", link_v4: 10.0.0.0/31, link_v6: \"fd00::/127\"}\n",
		"name: &a x\nasn: *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang is a bug too: crash with the input so the fuzzer keeps it.
		tm := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("input took over 10 s: %q", data)) })
		defer tm.Stop()
		doc, err := intent.Load(data, "fuzz.yaml")
		if err != nil {
			return
		}
		for _, p := range doc.Validate() {
			if p.Path == "" || p.Message == "" {
				t.Errorf("problem without path or message: %+v", p)
			}
		}
		p, ps := plan.Build(doc)
		if p == nil {
			if len(ps.Errors()) == 0 {
				t.Fatalf("no plan and no error")
			}
			return
		}
		if len(ps.Errors()) > 0 {
			t.Fatalf("plan built despite errors: %v", ps.Err())
		}
		render.Files(p, intenttest.PSKs{}, render.Options{})
	})
}
