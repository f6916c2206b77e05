package intent_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/intent/intenttest"
)

// Format writes what Load reads back to the same intent, for every
// variant the renderers are tested with.
func TestFormatRoundTrip(t *testing.T) {
	for _, v := range intenttest.Variants(t) {
		doc, err := intent.Load(v.YAML, v.Name)
		if err != nil {
			t.Fatal(err)
		}
		out, err := intent.Format(doc.Intent)
		if err != nil {
			t.Fatal(err)
		}
		back, err := intent.Load(out, v.Name+" formatted")
		if err != nil {
			t.Fatalf("%s: the formatted intent does not load: %v\n%s", v.Name, err, out)
		}
		if d := cmp.Diff(doc.Intent, back.Intent); d != "" {
			t.Errorf("%s: formatted and loaded back (-before +after):\n%s\n%s", v.Name, d, out)
		}
	}
}
