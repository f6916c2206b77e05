// Package probe measures packet loss between endpoints with
// sequence-numbered, timestamped UDP probes sent at a fixed interval. Each
// stream is one direction. Endpoints may sit in network namespaces of this
// machine (an Opener creates sockets inside them) or in other kernels (a
// router's UML kernel, the lab's qemu VM), where a remote engine runs
// through a node.Runner and reports back. Every time is mapped to the
// session's clock; loss is measured on the sender's clock, so that a
// gap's length is exact whatever the receiver's.
package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/backbone-net/backbone/internal/node"
)

// Endpoint is an address in a kernel, optionally inside a named network
// namespace of it.
type Endpoint struct {
	// Place names the kernel: "" for this machine's (sockets opened with
	// Options.Opener), else a place Options.Remote knows how to reach.
	Place string     `json:"place,omitempty"`
	NS    string     `json:"ns,omitempty"`
	Addr  netip.Addr `json:"addr"`
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

// Remote is how to run the engine of a place: a command (`backbone
// lab-probe` there) on a runner.
type Remote struct {
	Runner node.Runner
	Argv   []string
}

// Options of a session.
type Options struct {
	// Port is the UDP port of every probe socket (default DefaultPort).
	Port int
	// Opener creates sockets of this machine's endpoints (default Current).
	Opener Opener
	// Remote returns how to run the engine of a place ("" never asked).
	Remote func(place string) (Remote, error)
	// Grace is how long engines wait for probes in flight when stopping
	// (default DefaultStopGrace).
	Grace time.Duration
	// Expendable are places whose remote engine may die once started (a
	// node whose kernel is crashed on purpose): their streams stop there
	// and the session goes on (see Session.Lost).
	Expendable map[string]bool
}

// DefaultStopGrace is how long Stop waits for probes in flight.
const DefaultStopGrace = 50 * time.Millisecond

// Arrival is one received probe.
type Arrival struct {
	Seq    uint64        `json:"seq"`
	SentAt time.Duration `json:"sent_ns"`
	RecvAt time.Duration `json:"recv_ns"`
}

// StreamState is a live view of one stream, cheap to poll while the
// session runs (see Session.State). Times are on the session clock.
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

// Record is everything one stream saw, on the session clock.
type Record struct {
	Stream   Stream
	Sent     []time.Duration // send time of each sequence number
	Received []Arrival       // in arrival order
}

// Session runs a set of streams.
type Session struct {
	base    time.Time
	streams []*stream
	places  []*place
	grace   time.Duration

	errMu sync.Mutex
	err   error
}

// place is the engine of one kernel.
type place struct {
	name   string
	spec   spec
	groups [][]specStream

	mu         sync.Mutex
	offset     time.Duration // session clock - engine clock
	haveOffset bool

	local  *engine
	stdin  *io.PipeWriter
	done   chan error
	cancel context.CancelFunc
	ended  bool
	// lost: the remote engine of an expendable place died.
	lost bool
}

func (p *place) toSession(t time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return t + p.offset
}

type stream struct {
	Stream
	id               uint32
	sender, receiver *place
	first            chan struct{}
	once             sync.Once

	mu   sync.Mutex
	sent []time.Duration // sender's clock
	recv []rawArrival
	live StreamState
}

type rawArrival struct {
	seq    uint64
	sentAt time.Duration // sender's clock
	at     time.Duration // receiver's clock
}

// Start opens every stream's sockets (starting the remote engines) and
// starts sending.
func Start(ctx context.Context, streams []Stream, o Options) (*Session, error) {
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Opener == nil {
		o.Opener = Current
	}
	if o.Grace == 0 {
		o.Grace = DefaultStopGrace
	}
	s := &Session{base: time.Now(), grace: o.Grace}
	byName := map[string]*place{}
	get := func(name string) *place {
		p, ok := byName[name]
		if !ok {
			p = &place{name: name, spec: spec{Port: o.Port, Grace: o.Grace}}
			byName[name] = p
			s.places = append(s.places, p)
		}
		return p
	}
	for i, st := range streams {
		if st.Interval <= 0 {
			st.Interval = time.Millisecond
		}
		r := &stream{Stream: st, id: uint32(i), first: make(chan struct{})}
		r.live.Name = st.Name
		r.sender, r.receiver = get(st.From.Place), get(st.To.Place)
		ss := specStream{ID: r.id, From: st.From, To: st.To, Interval: st.Interval}
		if r.sender == r.receiver {
			ss.Send, ss.Recv = true, true
			r.sender.spec.Streams = append(r.sender.spec.Streams, ss)
		} else {
			snd, rcv := ss, ss
			snd.Send, rcv.Recv = true, true
			r.sender.spec.Streams = append(r.sender.spec.Streams, snd)
			r.receiver.spec.Streams = append(r.receiver.spec.Streams, rcv)
		}
		s.streams = append(s.streams, r)
	}
	// Receivers first, so that the first probes find a socket.
	sort.SliceStable(s.places, func(i, j int) bool { return s.places[i].name == "" && s.places[j].name != "" })
	for _, p := range s.places {
		p.groups = p.spec.groups()
		var err error
		if p.name == "" {
			err = s.startLocal(ctx, p, o.Opener)
		} else {
			err = s.startRemote(ctx, p, o)
		}
		if err != nil {
			s.StopWithin(0)
			return nil, err
		}
	}
	// Every engine listens: start sending everywhere.
	for _, p := range s.places {
		if p.local != nil {
			p.local.start()
		}
		if p.stdin != nil {
			if _, err := p.stdin.Write([]byte("go\n")); err != nil {
				s.StopWithin(0)
				return nil, fmt.Errorf("probe engine in %s: %w", p.name, err)
			}
		}
	}
	return s, nil
}

func (s *Session) startLocal(ctx context.Context, p *place, open Opener) error {
	e, err := startEngine(ctx, p.spec, open, sessionSink{s, p})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.local, p.offset, p.haveOffset = e, e.base.Sub(s.base), true
	p.mu.Unlock()
	return nil
}

func (s *Session) startRemote(ctx context.Context, p *place, o Options) error {
	if o.Remote == nil {
		return fmt.Errorf("probe endpoints in %s, but no way to reach it", p.name)
	}
	rem, err := o.Remote(p.name)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(p.spec)
	pr, pw := io.Pipe()
	p.stdin = pw
	p.done = make(chan error, 1)
	var stderr bytes.Buffer
	ready := make(chan struct{})
	var readyOnce sync.Once
	fr := &frameReader{on: func(kind byte, b []byte) {
		s.onFrame(p, kind, b)
		if kind == frameClock {
			readyOnce.Do(func() { close(ready) })
		}
	}}
	rctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	go func() {
		err := rem.Runner.Run(rctx, node.Cmd{Argv: rem.Argv, Stdin: io.MultiReader(bytes.NewReader(append(line, '\n')), pr), Stdout: fr, Stderr: &stderr})
		if err == nil && !fr.end {
			err = errNoEnd
		}
		if err != nil {
			err = fmt.Errorf("probe engine in %s: %w: %s", p.name, err, strings.TrimSpace(stderr.String()))
			p.mu.Lock()
			lost := o.Expendable[p.name] && p.haveOffset && rctx.Err() == nil
			p.lost = lost
			p.mu.Unlock()
			if !lost {
				s.fail(err)
			}
		}
		p.done <- err
		readyOnce.Do(func() { close(ready) })
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("probe engine in %s did not start within 30s", p.name)
	}
	return s.Err()
}

func (s *Session) onFrame(p *place, kind byte, b []byte) {
	switch kind {
	case frameClock:
		at := time.Duration(binary.BigEndian.Uint64(b))
		off := s.now() - at
		p.mu.Lock()
		if !p.haveOffset || off < p.offset {
			p.offset, p.haveOffset = off, true
		}
		p.mu.Unlock()
	case frameTick:
		s.tick(p, int(binary.BigEndian.Uint16(b[0:])), binary.BigEndian.Uint64(b[2:]), time.Duration(binary.BigEndian.Uint64(b[10:])))
	case frameRecv:
		s.recv(p, binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint64(b[4:]), time.Duration(binary.BigEndian.Uint64(b[12:])), time.Duration(binary.BigEndian.Uint64(b[20:])))
	}
}

// sessionSink feeds a local engine's events into the session.
type sessionSink struct {
	s *Session
	p *place
}

func (k sessionSink) tick(g int, seq uint64, at time.Duration) { k.s.tick(k.p, g, seq, at) }
func (k sessionSink) recv(id uint32, seq uint64, sentAt, at time.Duration) {
	k.s.recv(k.p, id, seq, sentAt, at)
}

func (s *Session) tick(p *place, g int, seq uint64, at time.Duration) {
	if g >= len(p.groups) {
		return
	}
	hostAt := p.toSession(at)
	for _, st := range p.groups[g] {
		r := s.streams[st.ID]
		r.mu.Lock()
		if uint64(len(r.sent)) == seq {
			r.sent = append(r.sent, at)
			r.live.Sent++
			r.live.LastSent = hostAt
		}
		r.mu.Unlock()
	}
}

func (s *Session) recv(p *place, id uint32, seq uint64, sentAt, at time.Duration) {
	if int(id) >= len(s.streams) {
		return
	}
	r := s.streams[id]
	hostAt, hostSent := p.toSession(at), r.sender.toSession(sentAt)
	r.mu.Lock()
	r.recv = append(r.recv, rawArrival{seq: seq, sentAt: sentAt, at: at})
	l := &r.live
	l.Received++
	l.LastArrival = hostAt
	switch {
	case !l.any:
		if seq > 0 {
			l.LastResume = hostSent
		}
		l.any, l.maxSeq = true, seq
	case seq > l.maxSeq+1:
		l.LastResume = hostSent
		l.maxSeq = seq
	case seq == l.maxSeq+1:
		l.maxSeq = seq
	}
	r.mu.Unlock()
	r.once.Do(func() { close(r.first) })
}

func (s *Session) now() time.Duration { return time.Since(s.base) }

// Now is the session clock: time since Start.
func (s *Session) Now() time.Duration { return s.now() }

func (s *Session) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
}

// Lost reports whether the engine of an expendable place died: its
// streams ended when it did.
func (s *Session) Lost(place string) bool {
	for _, p := range s.places {
		if p.name == place {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.lost
		}
	}
	return false
}

// Err is the first failure of a remote engine (nil if none).
func (s *Session) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

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
			if len(r.recv) > 0 {
				out[i] = r.receiver.toSession(r.recv[0].at)
			}
			r.mu.Unlock()
		case <-ctx.Done():
			if err := s.Err(); err != nil {
				return out, err
			}
			return out, fmt.Errorf("no probe arrived on %s (%s -> %s)", r.Name, r.From.Addr, r.To.Addr)
		}
	}
	return out, nil
}

// Stop ends sending, waits DefaultStopGrace for packets in flight, closes
// the sockets and returns each stream's record.
func (s *Session) Stop() []Record { return s.StopWithin(s.grace) }

// StopWithin is Stop with an explicit wait for packets in flight (use
// more on slow, emulated machines).
func (s *Session) StopWithin(grace time.Duration) []Record {
	for _, p := range s.places {
		if p.local != nil {
			p.local.stopSending()
		}
		if p.stdin != nil {
			p.stdin.Close() // the remote engine stops, waits its grace, reports
		}
	}
	time.Sleep(grace)
	for _, p := range s.places {
		if p.local != nil {
			p.local.close()
		}
		if p.done != nil && !p.ended {
			select {
			case <-p.done:
			case <-time.After(10*time.Second + grace):
				p.cancel()
				<-p.done
			}
			p.ended = true
		}
	}
	out := make([]Record, len(s.streams))
	for i, r := range s.streams {
		r.mu.Lock()
		rec := Record{Stream: r.Stream, Sent: make([]time.Duration, len(r.sent)), Received: make([]Arrival, len(r.recv))}
		for k, t := range r.sent {
			rec.Sent[k] = r.sender.toSession(t)
		}
		for k, a := range r.recv {
			rec.Received[k] = Arrival{Seq: a.seq, SentAt: r.sender.toSession(a.sentAt), RecvAt: r.receiver.toSession(a.at)}
		}
		r.mu.Unlock()
		out[i] = rec
	}
	return out
}
