// Package probe measures packet loss between endpoints with
// sequence-numbered, timestamped UDP probes sent at a fixed interval. Each
// stream is one direction; sender and receiver live in the same process,
// so one monotonic clock times both ends. Endpoints may sit in different
// network namespaces: an Opener runs socket creation inside them (sockets
// keep the namespace they were created in).
//
// Streams that share an interval share one sending goroutine and one
// ticker, so that many streams at 1 ms stay cheap; every probe's actual
// send time is recorded, so a late tick shows as a longer interval, never
// as loss.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Endpoint is an address, optionally inside a named network namespace.
type Endpoint struct {
	NS   string     `json:"ns,omitempty"`
	Addr netip.Addr `json:"addr"`
}

// Opener runs fn inside network namespace ns ("" = the current one).
type Opener func(ns string, fn func() error) error

// Current is an Opener for tests and single-namespace use.
func Current(_ string, fn func() error) error { return fn() }

// Stream is one direction of probing.
type Stream struct {
	Name     string        `json:"name"`
	From     Endpoint      `json:"from"`
	To       Endpoint      `json:"to"`
	Interval time.Duration `json:"interval_ns"`
}

const (
	magic      = 0x62626f6e // "bbon"
	packetSize = 28
	// DefaultStopGrace is how long Stop waits for probes in flight.
	DefaultStopGrace = 50 * time.Millisecond
)

// Session runs a set of streams.
type Session struct {
	base    time.Time
	streams []*stream
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

type stream struct {
	Stream
	id    uint32
	tx    *net.UDPConn
	rx    *net.UDPConn
	dst   *net.UDPAddr
	first chan struct{}
	once  sync.Once

	mu   sync.Mutex
	sent []time.Duration // send time of seq i
	recv []Arrival
	live StreamState
}

// Arrival is one received probe.
type Arrival struct {
	Seq    uint64        `json:"seq"`
	SentAt time.Duration `json:"sent_ns"`
	RecvAt time.Duration `json:"recv_ns"`
}

// StreamState is a live view of one stream, cheap to poll while the
// session runs (see Session.State).
type StreamState struct {
	Name string `json:"name"`
	// Sent is how many probes were sent; Received how many arrived
	// (duplicates included).
	Sent     int `json:"sent"`
	Received int `json:"received"`
	// LastSent is the send time of the newest probe; LastArrival the
	// arrival time of the newest arrival (0 if none).
	LastSent    time.Duration `json:"last_sent_ns"`
	LastArrival time.Duration `json:"last_arrival_ns"`
	// LastResume is the send time of the latest probe that arrived after
	// one or more missing sequence numbers: the end of the latest gap seen
	// so far (0 if none). A reordered probe also counts, which only makes
	// a caller waiting for quiet wait a little longer.
	LastResume time.Duration `json:"last_resume_ns"`
	maxSeq     uint64
	any        bool
}

// Start opens every stream's sockets and starts sending.
func Start(ctx context.Context, open Opener, streams []Stream) (*Session, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &Session{base: time.Now(), cancel: cancel}
	for i, st := range streams {
		if st.Interval <= 0 {
			st.Interval = time.Millisecond
		}
		r := &stream{Stream: st, id: uint32(i), first: make(chan struct{})}
		r.live.Name = st.Name
		if err := open(st.To.NS, func() error {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: st.To.Addr.AsSlice()})
			r.rx = c
			return err
		}); err != nil {
			s.closeAll()
			cancel()
			return nil, fmt.Errorf("probe %s: listen on %s: %w", st.Name, st.To.Addr, err)
		}
		port := r.rx.LocalAddr().(*net.UDPAddr).Port
		if err := open(st.From.NS, func() error {
			// Unconnected: with no route yet, connect() would fail; each
			// send that finds no route is simply a lost probe.
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: st.From.Addr.AsSlice()})
			r.tx = c
			r.dst = &net.UDPAddr{IP: st.To.Addr.AsSlice(), Port: port}
			return err
		}); err != nil {
			r.rx.Close()
			s.closeAll()
			cancel()
			return nil, fmt.Errorf("probe %s: socket from %s: %w", st.Name, st.From.Addr, err)
		}
		s.streams = append(s.streams, r)
	}
	groups := map[time.Duration][]*stream{}
	var intervals []time.Duration
	for _, r := range s.streams {
		if groups[r.Interval] == nil {
			intervals = append(intervals, r.Interval)
		}
		groups[r.Interval] = append(groups[r.Interval], r)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.receive(r) }()
	}
	sort.Slice(intervals, func(i, j int) bool { return intervals[i] < intervals[j] })
	for _, iv := range intervals {
		g := groups[iv]
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.send(ctx, iv, g) }()
	}
	return s, nil
}

func (s *Session) now() time.Duration { return time.Since(s.base) }

// send sends one probe on every stream of a group per tick.
func (s *Session) send(ctx context.Context, interval time.Duration, group []*stream) {
	buf := make([]byte, packetSize)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := uint64(0); ; seq++ {
		for _, r := range group {
			at := s.now()
			binary.BigEndian.PutUint32(buf[0:], magic)
			binary.BigEndian.PutUint32(buf[4:], r.id)
			binary.BigEndian.PutUint64(buf[8:], seq)
			binary.BigEndian.PutUint64(buf[16:], uint64(at))
			r.mu.Lock()
			r.sent = append(r.sent, at)
			r.live.Sent++
			r.live.LastSent = at
			r.mu.Unlock()
			// Errors (no route, unreachable) are loss, as on a real network.
			_, _ = r.tx.WriteToUDP(buf, r.dst)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Session) receive(r *stream) {
	buf := make([]byte, 2048)
	for {
		n, err := r.rx.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		at := s.now()
		if n < packetSize || binary.BigEndian.Uint32(buf[0:]) != magic || binary.BigEndian.Uint32(buf[4:]) != r.id {
			continue
		}
		a := Arrival{Seq: binary.BigEndian.Uint64(buf[8:]), SentAt: time.Duration(binary.BigEndian.Uint64(buf[16:])), RecvAt: at}
		r.mu.Lock()
		r.recv = append(r.recv, a)
		l := &r.live
		l.Received++
		l.LastArrival = at
		switch {
		case !l.any:
			if a.Seq > 0 {
				l.LastResume = a.SentAt
			}
			l.any, l.maxSeq = true, a.Seq
		case a.Seq > l.maxSeq+1:
			l.LastResume = a.SentAt
			l.maxSeq = a.Seq
		case a.Seq == l.maxSeq+1:
			l.maxSeq = a.Seq
		}
		r.mu.Unlock()
		r.once.Do(func() { close(r.first) })
	}
}

// Now is the session clock: time since Start.
func (s *Session) Now() time.Duration { return s.now() }

// State returns the live state of every stream, in stream order.
func (s *Session) State() []StreamState {
	out := make([]StreamState, len(s.streams))
	for i, r := range s.streams {
		r.mu.Lock()
		out[i] = r.live
		r.mu.Unlock()
	}
	return out
}

// WaitFirst waits until every stream received a probe and returns, per
// stream, the session time of its first arrival.
func (s *Session) WaitFirst(ctx context.Context) ([]time.Duration, error) {
	out := make([]time.Duration, len(s.streams))
	for i, r := range s.streams {
		select {
		case <-r.first:
			r.mu.Lock()
			out[i] = r.recv[0].RecvAt
			r.mu.Unlock()
		case <-ctx.Done():
			return out, fmt.Errorf("no probe arrived on %s (%s -> %s)", r.Name, r.From.Addr, r.To.Addr)
		}
	}
	return out, nil
}

// Stop ends sending, waits DefaultStopGrace for packets in flight, closes
// the sockets and returns each stream's record.
func (s *Session) Stop() []Record { return s.StopWithin(DefaultStopGrace) }

// StopWithin is Stop with an explicit wait for packets in flight (use
// more on slow, emulated machines).
func (s *Session) StopWithin(grace time.Duration) []Record {
	if s.cancel != nil {
		s.cancel()
	}
	time.Sleep(grace)
	s.closeAll()
	s.wg.Wait()
	out := make([]Record, len(s.streams))
	for i, r := range s.streams {
		r.mu.Lock()
		out[i] = Record{Stream: r.Stream, Sent: append([]time.Duration(nil), r.sent...), Received: append([]Arrival(nil), r.recv...)}
		r.mu.Unlock()
	}
	return out
}

func (s *Session) closeAll() {
	for _, r := range s.streams {
		if r.tx != nil {
			r.tx.Close()
		}
		if r.rx != nil {
			r.rx.Close()
		}
	}
}

// Record is everything one stream saw.
type Record struct {
	Stream   Stream
	Sent     []time.Duration // send time of each sequence number
	Received []Arrival       // in arrival order
}
