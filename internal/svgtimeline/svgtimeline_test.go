package svgtimeline

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func sample() Chart {
	return Chart{
		Title:    "link-shut pe101-pe201 <run 1>",
		Subtitle: "vm mode, probes every 1ms",
		Start:    0, End: 16.5,
		Rows: []Row{
			{Label: "ce1>ce2 ipv4", Spans: []Span{{Start: 2.1, End: 2.95, Title: "850 ms, 850 lost"}}},
			{Label: "ce2>ce1 ipv4", Spans: []Span{{Start: 2.1, End: 2.1004, Title: "tiny"}, {Start: 12.5, End: 13.1}}},
			{Label: "pe102>pe101 ipv6", Muted: true, Spans: []Span{{Start: 2, End: 12}}},
			{Label: "pe201>pe101 ipv6", Spans: []Span{{Start: 15, End: 16.5, Open: true}}},
		},
		Markers: []Marker{{At: 2.0, Until: 2.6, Label: "inject", Color: "#ff7f0e"}, {At: 12.0, Label: "restore", Color: "#2ca02c"}, {At: 14.2, Label: "converged", Color: "#1f77b4"}},
	}
}

func TestGolden(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, sample()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "timeline.svg")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("SVG differs from %s (run go test ./internal/svgtimeline -update after checking it in a browser)", golden)
	}
}

// The output must be well-formed XML with escaped labels.
func TestWellFormed(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, sample()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	d := xml.NewDecoder(&b)
	rects, texts := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "rect":
				rects++
			case "text":
				texts++
			}
		}
	}
	// background + 2 legend boxes + 2 bands + 5 spans + frame + 1 marker band
	if rects != 12 {
		t.Errorf("%d rects, want 12", rects)
	}
	if !strings.Contains(out, "&lt;run 1&gt;") {
		t.Error("title not escaped")
	}
}

func TestRenderRejectsEmptyRange(t *testing.T) {
	if err := Render(io.Discard, Chart{Start: 3, End: 3}); err == nil {
		t.Error("no error for an empty time range")
	}
}

func TestTickStep(t *testing.T) {
	for span, want := range map[float64]float64{16.5: 2, 5: 0.5, 100: 10, 0.01: 0.001, 31: 5} {
		if got := tickStep(span); got != want {
			t.Errorf("tickStep(%g) = %g, want %g", span, got, want)
		}
	}
}
