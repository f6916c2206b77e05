package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/backbone-net/backbone/internal/chaos"
)

func sampleChaosReport() *chaosReport {
	run := func(n int, fault float64) *chaos.Result {
		return &chaos.Result{
			Scenario: "link-shut pe101-pe201", Run: n, Interval: 1, CoreInterval: 1, Achieved: chaos.Spacing{Mean: 1.2, P99: 1.5, Max: 3},
			Inject: 2000, InjectDone: 2300, Restore: 12000, RestoreDone: 12300, Converged: 14000, End: 17000, Recovered: true,
			Streams: []chaos.StreamResult{
				{Name: "ce1>ce2 ipv4", Site: true, Fault: chaos.Loss{MS: fault, Lost: int(fault)}, Gaps: []chaos.GapResult{{Start: 2400, End: 2400 + fault, Lost: int(fault), Phase: "fault"}}},
				{Name: "pe101>pe102 ipv6", Down: true},
			},
		}
	}
	rep := &chaosReport{Scenario: "link-shut pe101-pe201", Lab: "chaos", Backend: "tcg", Runs: []*chaos.Result{run(1, 120), run(2, 80)}}
	rep.Summary = chaos.Summarize(rep.Runs)
	return rep
}

func TestPrintChaos(t *testing.T) {
	var b bytes.Buffer
	printChaos(&b, sampleChaosReport())
	out := b.String()
	for _, want := range []string{
		"chaos link-shut pe101-pe201, run 2/2",
		"converged at 14.00s, recovered",
		"ce1>ce2 ipv4     120.0   120",
		"endpoint taken down",
		"2 runs, median / max per stream (backend tcg)",
		"worst site stream",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteChaosSVG(t *testing.T) {
	dir := t.TempDir()
	files, err := writeChaosSVG(filepath.Join(dir, "t.svg"), sampleChaosReport())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "t-1.svg"), filepath.Join(dir, "t-2.svg")}; !reflect.DeepEqual(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	data, _ := os.ReadFile(files[0])
	if !bytes.Contains(data, []byte("ce1&gt;ce2 ipv4")) || !bytes.Contains(data, []byte("pe101&gt;pe102 ipv6 (down)")) || !bytes.Contains(data, []byte("inject 2.00s")) {
		t.Errorf("SVG lacks rows or markers:\n%s", data)
	}
}
