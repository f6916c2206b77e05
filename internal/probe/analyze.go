package probe

import (
	"sort"
	"time"
)

// Gap is a run of consecutive lost probes.
type Gap struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Lost     int    `json:"lost"`
	// Start is when the first lost probe was sent; End is when the first
	// probe that arrived after the gap was sent (or the last send + one
	// interval if none did). Both on the session clock.
	Start time.Duration `json:"start_ns"`
	End   time.Duration `json:"end_ns"`
	// Open is set when no probe arrived after the gap: the loss lasted
	// until the end of the run.
	Open bool `json:"open,omitempty"`
}

// Duration is how long the gap blackholed traffic.
func (g Gap) Duration() time.Duration { return g.End - g.Start }

// Summary is the analysis of one stream.
type Summary struct {
	Name       string `json:"name"`
	Sent       int    `json:"sent"`
	Received   int    `json:"received"`
	Lost       int    `json:"lost"`
	Duplicates int    `json:"duplicates"`
	Reordered  int    `json:"reordered"`
	Gaps       []Gap  `json:"gaps"`
}

// Analyze turns a record into loss gaps, duplicates and reordering. The
// trailing window of probes still in flight is not loss: probes sent less
// than grace before the last send are ignored when missing at the end.
func Analyze(r Record, grace time.Duration) Summary {
	s := Summary{Name: r.Stream.Name, Sent: len(r.Sent)}
	seen := make(map[uint64]bool, len(r.Received))
	var maxSeq uint64
	for i, a := range r.Received {
		if seen[a.Seq] {
			s.Duplicates++
			continue
		}
		seen[a.Seq] = true
		if i > 0 && a.Seq < maxSeq {
			s.Reordered++
		}
		if a.Seq > maxSeq {
			maxSeq = a.Seq
		}
	}
	s.Received = len(seen)
	n := uint64(len(r.Sent))
	// Ignore the tail that may still have been in flight.
	if n > 0 && grace > 0 {
		last := r.Sent[n-1]
		for n > 0 && !seen[n-1] && last-r.Sent[n-1] < grace {
			n--
		}
	}
	for seq := uint64(0); seq < n; {
		if seen[seq] {
			seq++
			continue
		}
		g := Gap{FirstSeq: seq, Start: r.Sent[seq]}
		for seq < n && !seen[seq] {
			seq++
		}
		g.LastSeq = seq - 1
		g.Lost = int(g.LastSeq - g.FirstSeq + 1)
		if seq < uint64(len(r.Sent)) && seq < n {
			g.End = r.Sent[seq]
		} else {
			g.Open = true
			g.End = r.Sent[len(r.Sent)-1] + r.Stream.Interval
		}
		s.Lost += g.Lost
		s.Gaps = append(s.Gaps, g)
	}
	sort.Slice(s.Gaps, func(i, j int) bool { return s.Gaps[i].FirstSeq < s.Gaps[j].FirstSeq })
	return s
}
