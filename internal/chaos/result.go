package chaos

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/backbone-net/backbone/internal/probe"
	"github.com/backbone-net/backbone/internal/verify"
)

// Phases a gap is attributed to, by when it started.
const (
	PhaseBaseline = "baseline" // before inject: background loss
	PhaseFault    = "fault"    // after inject, before restore
	PhaseRecovery = "recovery" // after restore
)

// Result is one run of one scenario. Times are milliseconds on the probe
// session clock (0 = probes started).
type Result struct {
	Scenario     string  `json:"scenario"`
	Spec         Spec    `json:"spec"`
	Run          int     `json:"run"` // 1-based
	Backend      string  `json:"backend,omitempty"`
	Interval     float64 `json:"interval_ms"`
	CoreInterval float64 `json:"core_interval_ms"`
	// Achieved is how far apart the probes of the site streams really
	// left (the worst stream's), CoreAchieved the same for the PE loopback
	// streams: a machine that cannot keep up (an emulated VM, a guest
	// kernel short of CPU) sends less often, and loss durations are then
	// only as precise as this.
	Achieved     Spacing `json:"achieved"`
	CoreAchieved Spacing `json:"core_achieved"`
	// Inject and Restore are when the first inject/restore command
	// started; InjectDone and RestoreDone when the last one returned.
	Inject      float64 `json:"inject_ms"`
	InjectDone  float64 `json:"inject_done_ms"`
	Restore     float64 `json:"restore_ms"`
	RestoreDone float64 `json:"restore_done_ms"`
	// Converged is when the routers in Actions.Converge were whole again
	// (after restore); End is when probing stopped.
	Converged float64 `json:"converged_ms"`
	End       float64 `json:"end_ms"`
	// Recovered: control plane converged and every stream flowing, with
	// no open gap. Note says what was still broken otherwise.
	Recovered bool `json:"recovered"`
	// Incomplete: the run was interrupted (Ctrl-C, SIGTERM); the fault
	// was restored and the figures stop there.
	Incomplete bool   `json:"incomplete,omitempty"`
	Note       string `json:"note,omitempty"`
	// CleartextPackets is, for a scenario that captures the underlay
	// (charon-kill), how many packets of encrypted tunnels crossed it
	// without ESP from the baseline until recovery; Capture has the
	// detail (ESP and IKE counts, kinds, examples).
	CleartextPackets *int                 `json:"cleartext_packets,omitempty"`
	Capture          *verify.CaptureCount `json:"capture,omitempty"`
	Actions          *Actions             `json:"actions"`
	Streams          []StreamResult       `json:"streams"`
}

// StreamResult is one probe stream's loss in one run.
type StreamResult struct {
	Name string `json:"name"`
	// Site is set for customer (CE to CE) streams.
	Site bool `json:"site,omitempty"`
	// Down is set when an endpoint of the stream is a router the scenario
	// takes down: its loss during the fault is by design.
	Down bool `json:"down,omitempty"`
	// EngineLost: the probe engine of a crashed node (its own kernel)
	// died with it, so this stream stops at the crash and its recovery
	// is not measured.
	EngineLost bool        `json:"engine_lost,omitempty"`
	Sent       int         `json:"sent"`
	Lost       int         `json:"lost"`
	Duplicates int         `json:"duplicates"`
	Reordered  int         `json:"reordered"`
	Baseline   Loss        `json:"baseline"`
	Fault      Loss        `json:"fault"`
	Recovery   Loss        `json:"recovery"`
	Open       bool        `json:"open,omitempty"` // the stream never came back
	Spacing    Spacing     `json:"spacing"`
	Gaps       []GapResult `json:"gaps"`
}

// Loss is the sum of the gaps of one phase.
type Loss struct {
	MS   float64 `json:"ms"`
	Lost int     `json:"lost"`
	Gaps int     `json:"gaps"`
	// Longest is the longest single gap.
	Longest float64 `json:"longest_ms"`
}

func (l *Loss) add(g probe.Gap) {
	d := ms(g.Duration())
	l.MS = round3(l.MS + d)
	l.Lost += g.Lost
	l.Gaps++
	l.Longest = math.Max(l.Longest, d)
}

// GapResult is one gap, attributed to a phase.
type GapResult struct {
	Start float64 `json:"start_ms"`
	End   float64 `json:"end_ms"`
	Lost  int     `json:"lost"`
	Phase string  `json:"phase"`
	Open  bool    `json:"open,omitempty"`
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Attribute turns a stream's analysis into phases: gaps that start before
// inject are background, those that start before restore belong to the
// fault (even when they last past restore), later ones to recovery.
func Attribute(s probe.Summary, inject, restore time.Duration) StreamResult {
	r := StreamResult{Name: s.Name, Sent: s.Sent, Lost: s.Lost, Duplicates: s.Duplicates, Reordered: s.Reordered, Gaps: []GapResult{}}
	for _, g := range s.Gaps {
		gr := GapResult{Start: ms(g.Start), End: ms(g.End), Lost: g.Lost, Open: g.Open}
		switch {
		case g.Start < inject:
			gr.Phase = PhaseBaseline
			r.Baseline.add(g)
		case g.Start < restore:
			gr.Phase = PhaseFault
			r.Fault.add(g)
		default:
			gr.Phase = PhaseRecovery
			r.Recovery.add(g)
		}
		if g.Open {
			r.Open = true
		}
		r.Gaps = append(r.Gaps, gr)
	}
	return r
}

// Stat is the median and maximum of a value over runs.
type Stat struct {
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func statOf(vs []float64) Stat {
	if len(vs) == 0 {
		return Stat{}
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: round3(m), Max: s[len(s)-1]}
}

// Aggregate summarizes the runs of one scenario.
type Aggregate struct {
	Scenario string            `json:"scenario"`
	Runs     int               `json:"runs"`
	Streams  []StreamAggregate `json:"streams"`
	// Sites and All are, per run, the worst stream's loss: among customer
	// streams, and among every stream not touching a router taken down.
	Sites StreamAggregate `json:"sites"`
	All   StreamAggregate `json:"all"`
	// NotRecovered counts runs that did not fully recover.
	NotRecovered int `json:"not_recovered"`
	// CleartextPackets is the sum over runs of the packets the underlay
	// capture saw in clear (scenarios that capture: charon-kill).
	CleartextPackets *int `json:"cleartext_packets,omitempty"`
}

// StreamAggregate is one stream's (or a worst-of group's) loss over runs.
type StreamAggregate struct {
	Name         string `json:"name"`
	Site         bool   `json:"site,omitempty"`
	Down         bool   `json:"down,omitempty"`
	FaultMS      Stat   `json:"fault_ms"`
	FaultLost    Stat   `json:"fault_lost"`
	RecoveryMS   Stat   `json:"recovery_ms"`
	RecoveryLost Stat   `json:"recovery_lost"`
	OpenRuns     int    `json:"open_runs,omitempty"`
}

type series struct{ fms, flost, rms, rlost []float64 }

func (s *series) add(fault, recovery Loss) {
	s.fms = append(s.fms, fault.MS)
	s.flost = append(s.flost, float64(fault.Lost))
	s.rms = append(s.rms, recovery.MS)
	s.rlost = append(s.rlost, float64(recovery.Lost))
}

func (s *series) into(a *StreamAggregate) {
	a.FaultMS, a.FaultLost = statOf(s.fms), statOf(s.flost)
	a.RecoveryMS, a.RecoveryLost = statOf(s.rms), statOf(s.rlost)
}

// Summarize aggregates runs of one scenario (same streams in each run).
func Summarize(runs []*Result) *Aggregate {
	a := &Aggregate{Runs: len(runs), Sites: StreamAggregate{Name: "worst site stream", Site: true}, All: StreamAggregate{Name: "worst stream"}}
	if len(runs) == 0 {
		return a
	}
	a.Scenario = runs[0].Scenario
	per := map[string]*series{}
	var sites, all series
	for _, r := range runs {
		if !r.Recovered {
			a.NotRecovered++
		}
		if r.CleartextPackets != nil {
			a.CleartextPackets = new(ptrOr(a.CleartextPackets) + *r.CleartextPackets)
		}
		var ws, wa [2]Loss // worst fault, recovery
		for _, s := range r.Streams {
			if per[s.Name] == nil {
				per[s.Name] = &series{}
				a.Streams = append(a.Streams, StreamAggregate{Name: s.Name, Site: s.Site, Down: s.Down})
			}
			per[s.Name].add(s.Fault, s.Recovery)
			if s.Open {
				for i := range a.Streams {
					if a.Streams[i].Name == s.Name {
						a.Streams[i].OpenRuns++
					}
				}
			}
			if s.Down {
				continue
			}
			worst(&wa, s)
			if s.Site {
				worst(&ws, s)
			}
		}
		sites.add(ws[0], ws[1])
		all.add(wa[0], wa[1])
	}
	for i := range a.Streams {
		per[a.Streams[i].Name].into(&a.Streams[i])
	}
	sites.into(&a.Sites)
	all.into(&a.All)
	return a
}

func worst(w *[2]Loss, s StreamResult) {
	if s.Fault.MS > w[0].MS {
		w[0] = s.Fault
	}
	if s.Recovery.MS > w[1].MS {
		w[1] = s.Recovery
	}
}

// Spacing is how far apart a stream's probes left, in milliseconds:
// their mean, the 99th percentile and the largest gap between two sends.
type Spacing struct {
	Mean float64 `json:"mean_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

func spacing(sent []time.Duration) Spacing {
	if len(sent) < 2 {
		return Spacing{}
	}
	d := make([]float64, len(sent)-1)
	for i := range d {
		d[i] = ms(sent[i+1] - sent[i])
	}
	mean := ms(sent[len(sent)-1]-sent[0]) / float64(len(d))
	sort.Float64s(d)
	return Spacing{Mean: round3(mean), P99: round3(d[(len(d)*99)/100]), Max: round3(d[len(d)-1])}
}

// worstSpacing is the worst of each figure over streams.
func worstSpacing(ss []Spacing) Spacing {
	var w Spacing
	for _, s := range ss {
		w.Mean, w.P99, w.Max = max(w.Mean, s.Mean), max(w.P99, s.P99), max(w.Max, s.Max)
	}
	return w
}

func ptrOr(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
