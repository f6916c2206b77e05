package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/backbone-net/backbone/internal/node"
)

const ms = time.Millisecond

// record builds a synthetic record of n probes sent every millisecond;
// arrivals lists sequence numbers in arrival order.
func record(n int, arrivals ...uint64) Record {
	r := Record{Stream: Stream{Name: "s", Interval: ms}}
	for i := 0; i < n; i++ {
		r.Sent = append(r.Sent, time.Duration(i)*ms)
	}
	for _, seq := range arrivals {
		r.Received = append(r.Received, Arrival{Seq: seq, SentAt: time.Duration(seq) * ms, RecvAt: time.Duration(seq)*ms + 300*time.Microsecond})
	}
	return r
}

func seqs(from, to uint64) []uint64 { // inclusive
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func cat(parts ...[]uint64) []uint64 {
	var out []uint64
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want Summary
	}{
		{
			name: "no loss",
			rec:  record(10, seqs(0, 9)...),
			want: Summary{Name: "s", Sent: 10, Received: 10},
		},
		{
			name: "gap at start",
			rec:  record(10, seqs(3, 9)...),
			want: Summary{Name: "s", Sent: 10, Received: 7, Lost: 3,
				Gaps: []Gap{{FirstSeq: 0, LastSeq: 2, Lost: 3, Start: 0, End: 3 * ms}}},
		},
		{
			name: "gap in the middle",
			rec:  record(10, cat(seqs(0, 3), seqs(7, 9))...),
			want: Summary{Name: "s", Sent: 10, Received: 7, Lost: 3,
				Gaps: []Gap{{FirstSeq: 4, LastSeq: 6, Lost: 3, Start: 4 * ms, End: 7 * ms}}},
		},
		{
			name: "two gaps, one probe each",
			rec:  record(10, cat(seqs(0, 1), seqs(3, 5), seqs(7, 9))...),
			want: Summary{Name: "s", Sent: 10, Received: 8, Lost: 2,
				Gaps: []Gap{{FirstSeq: 2, LastSeq: 2, Lost: 1, Start: 2 * ms, End: 3 * ms}, {FirstSeq: 6, LastSeq: 6, Lost: 1, Start: 6 * ms, End: 7 * ms}}},
		},
		{
			name: "open gap at the end, beyond the grace",
			rec:  record(100, seqs(0, 49)...),
			want: Summary{Name: "s", Sent: 100, Received: 50, Lost: 45, InFlight: 5,
				Gaps: []Gap{{FirstSeq: 50, LastSeq: 94, Lost: 45, Start: 50 * ms, End: 100 * ms, Open: true}}},
		},
		{
			name: "in-flight tail within the grace is not loss",
			rec:  record(100, seqs(0, 96)...),
			want: Summary{Name: "s", Sent: 100, Received: 97, InFlight: 3},
		},
		{
			name: "a loss just before an arrived last probe is a closed gap",
			rec:  record(100, cat(seqs(0, 96), []uint64{99})...),
			want: Summary{Name: "s", Sent: 100, Received: 98, Lost: 2,
				Gaps: []Gap{{FirstSeq: 97, LastSeq: 98, Lost: 2, Start: 97 * ms, End: 99 * ms}}},
		},
		{
			name: "nothing arrived at all",
			rec:  record(20),
			want: Summary{Name: "s", Sent: 20, Lost: 15, InFlight: 5,
				Gaps: []Gap{{FirstSeq: 0, LastSeq: 14, Lost: 15, Start: 0, End: 20 * ms, Open: true}}},
		},
		{
			name: "duplicates are counted once and are not loss",
			rec:  record(6, 0, 1, 1, 2, 3, 3, 3, 4, 5),
			want: Summary{Name: "s", Sent: 6, Received: 6, Duplicates: 3},
		},
		{
			name: "reordering is not loss",
			rec:  record(8, 0, 2, 1, 3, 6, 4, 5, 7),
			want: Summary{Name: "s", Sent: 8, Received: 8, Reordered: 3},
		},
		{
			name: "a late probe fills its gap",
			rec:  record(10, cat(seqs(0, 3), seqs(5, 9), []uint64{4})...),
			want: Summary{Name: "s", Sent: 10, Received: 10, Reordered: 1},
		},
		{
			name: "unknown sequence numbers are ignored",
			rec:  record(3, 0, 1, 2, 77),
			want: Summary{Name: "s", Sent: 3, Received: 3},
		},
		{
			name: "empty record",
			rec:  record(0),
			want: Summary{Name: "s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Analyze(tt.rec, 5*ms)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Analyze:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestAnalyzeNoGrace(t *testing.T) {
	got := Analyze(record(10, seqs(0, 8)...), 0)
	want := []Gap{{FirstSeq: 9, LastSeq: 9, Lost: 1, Start: 9 * ms, End: 10 * ms, Open: true}}
	if !reflect.DeepEqual(got.Gaps, want) || got.InFlight != 0 {
		t.Errorf("gaps %+v in flight %d, want %+v and 0", got.Gaps, got.InFlight, want)
	}
}

// freePort returns a UDP port free on the loopback addresses.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no loopback UDP here: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestSessionLoopback runs real streams over the loopback interface: no
// root needed.
func TestSessionLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("sends real packets")
	}
	lo := Endpoint{Addr: mustParse(t, "127.0.0.1")}
	sess, err := Start(t.Context(), []Stream{{Name: "a", From: lo, To: lo, Interval: ms}, {Name: "b", From: lo, To: lo, Interval: 2 * ms}}, Options{Port: freePort(t)})
	if err != nil {
		t.Skipf("no loopback UDP here: %v", err)
	}
	if _, err := sess.WaitFirst(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * ms)
	st := sess.State()
	recs := sess.Stop()
	if len(recs) != 2 || len(st) != 2 {
		t.Fatalf("got %d records, %d states", len(recs), len(st))
	}
	for i, r := range recs {
		s := Analyze(r, 20*ms)
		if s.Sent < 10 || s.Lost != 0 || st[i].Received == 0 || st[i].LastArrival == 0 {
			t.Errorf("%s: %+v (state %+v)", r.Stream.Name, s, st[i])
		}
	}
}

// TestSessionRemote runs one end of each stream in a remote engine,
// reached through a node.Runner as a guest's would be (here the engine
// runs in this process, fed by the runner's pipes): frames, the clock
// mapping, the end of input that stops it, and the final report.
func TestSessionRemote(t *testing.T) {
	if testing.Short() {
		t.Skip("sends real packets")
	}
	port := freePort(t)
	here := Endpoint{Addr: mustParse(t, "127.0.0.1")}
	there := Endpoint{Place: "guest", Addr: mustParse(t, "127.0.0.2")}
	var argv []string
	remote := node.RunnerFunc(func(ctx context.Context, c node.Cmd) error {
		argv = c.Argv
		return Serve(ctx, c.Stdin, c.Stdout, Current)
	})
	before := time.Now()
	sess, err := Start(t.Context(), []Stream{
		{Name: "out", From: here, To: there, Interval: ms},
		{Name: "back", From: there, To: here, Interval: ms},
		{Name: "inside", From: there, To: there, Interval: 2 * ms},
	}, Options{Port: port, Remote: func(place string) (Remote, error) {
		if place != "guest" {
			return Remote{}, fmt.Errorf("unknown place %q", place)
		}
		return Remote{Runner: remote, Argv: []string{"backbone", "lab-probe"}}, nil
	}})
	if err != nil {
		t.Skipf("no loopback UDP on 127.0.0.2 here: %v", err)
	}
	if _, err := sess.WaitFirst(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * ms)
	recs := sess.Stop()
	if err := sess.Err(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(argv, []string{"backbone", "lab-probe"}) {
		t.Errorf("remote engine started as %q", argv)
	}
	elapsed := time.Since(before)
	for _, r := range recs {
		s := Analyze(r, 20*ms)
		if s.Sent < 50 || s.Lost != 0 || s.Received == 0 {
			t.Errorf("%s: %+v", r.Stream.Name, s)
		}
		// Every time is on the session clock, in the session's span.
		for _, tm := range []time.Duration{r.Sent[0], r.Sent[len(r.Sent)-1], r.Received[0].RecvAt} {
			if tm < 0 || tm > elapsed {
				t.Errorf("%s: time %s outside the session (0..%s): clock mapping broken", r.Stream.Name, tm, elapsed)
			}
		}
		for _, a := range r.Received {
			if d := a.RecvAt - a.SentAt; d < -5*ms || d > 50*ms {
				t.Errorf("%s: probe %d took %s from send to arrival on the session clock", r.Stream.Name, a.Seq, d)
				break
			}
		}
	}
}

func mustParse(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The pacer counts slots from its start: after a stall it skips the slots
// it missed (no burst), then goes on one slot at a time.
func TestPacerSkipsMissedSlots(t *testing.T) {
	p := newPacer(time.Millisecond)
	defer p.close()
	if s := p.wait(); s != 1 {
		t.Fatalf("first wait = slot %d, want 1", s)
	}
	time.Sleep(20 * time.Millisecond)
	s := p.wait()
	if s < 20 {
		t.Fatalf("after a 20 ms stall the pacer is at slot %d: it would send a burst of the missed ones", s)
	}
	if next := p.wait(); next != s+1 && next != s+2 {
		t.Errorf("slot after %d = %d, want the next one", s, next)
	}
}
