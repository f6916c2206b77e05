package probe

import (
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
	Name     string `json:"name"`
	Sent     int    `json:"sent"`
	Received int    `json:"received"` // distinct sequence numbers
	Lost     int    `json:"lost"`
	// InFlight are the trailing probes, sent less than the grace before
	// the last send, that had not arrived when the session stopped: not
	// counted as lost.
	InFlight   int   `json:"in_flight"`
	Duplicates int   `json:"duplicates"`
	Reordered  int   `json:"reordered"` // arrivals with a lower sequence number than one before them
	Gaps       []Gap `json:"gaps"`
}

// Analyze turns a record into loss gaps, duplicates and reordering. The
// trailing window of probes still in flight is not loss: probes sent less
// than grace before the last send are ignored when missing at the end.
// Arrivals with a sequence number that was never sent are ignored.
func Analyze(r Record, grace time.Duration) Summary {
	s := Summary{Name: r.Stream.Name, Sent: len(r.Sent)}
	n := uint64(len(r.Sent))
	seen := make([]bool, n)
	var maxSeq uint64
	first := true
	for _, a := range r.Received {
		if a.Seq >= n {
			continue
		}
		if seen[a.Seq] {
			s.Duplicates++
			continue
		}
		seen[a.Seq] = true
		s.Received++
		if !first && a.Seq < maxSeq {
			s.Reordered++
		}
		if first || a.Seq > maxSeq {
			maxSeq = a.Seq
		}
		first = false
	}
	// Ignore the tail that may still have been in flight.
	end := n
	if n > 0 && grace > 0 {
		last := r.Sent[n-1]
		for end > 0 && !seen[end-1] && last-r.Sent[end-1] < grace {
			end--
		}
	}
	s.InFlight = int(n - end)
	for seq := uint64(0); seq < end; {
		if seen[seq] {
			seq++
			continue
		}
		g := Gap{FirstSeq: seq, Start: r.Sent[seq]}
		for seq < end && !seen[seq] {
			seq++
		}
		g.LastSeq = seq - 1
		g.Lost = int(g.LastSeq - g.FirstSeq + 1)
		if seq < end {
			g.End = r.Sent[seq]
		} else {
			// Nothing arrived after the gap (only, perhaps, probes still
			// in flight): the loss lasted to the end of the run.
			g.Open = true
			g.End = r.Sent[n-1] + r.Stream.Interval
		}
		s.Lost += g.Lost
		s.Gaps = append(s.Gaps, g)
	}
	return s
}
