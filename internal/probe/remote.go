package probe

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// A remote engine runs in another kernel (a router's UML kernel, the lab's
// qemu VM, later a real host) as `backbone lab-probe`: it reads its spec
// as the first line of standard input, opens its sockets, reports its
// clock, starts sending at the next line ("go", once every engine of the
// session listens), probes until its input ends, and writes what it did
// to standard output as frames:
//
//	'C' at(8)                          its clock, every clockEvery
//	'T' group(2) seq(8) at(8)          a tick of a sending group
//	'R' id(4) seq(8) sentAt(8) at(8)   an arrival
//	'E'                                the end, after the last arrival
//
// Times are nanoseconds since the engine started. The host maps them to
// its own clock with the smallest observed (host time - engine time) of
// the clock frames: an offset too large by at most the one-way delay of
// the fastest clock frame (well under a millisecond through an agent).
const (
	frameClock = 'C'
	frameTick  = 'T'
	frameRecv  = 'R'
	frameEnd   = 'E'
	clockEvery = 100 * time.Millisecond
	flushEvery = 20 * time.Millisecond
)

var frameLen = map[byte]int{frameClock: 8, frameTick: 18, frameRecv: 28, frameEnd: 0}

// frameSink writes an engine's events as frames.
type frameSink struct {
	mu   sync.Mutex
	w    *bufio.Writer
	base time.Time
	err  error
}

func (f *frameSink) write(kind byte, fill func(b []byte)) {
	b := make([]byte, 1+frameLen[kind])
	b[0] = kind
	fill(b[1:])
	f.mu.Lock()
	if f.err == nil {
		_, f.err = f.w.Write(b)
	}
	f.mu.Unlock()
}

func (f *frameSink) tick(g int, seq uint64, at time.Duration) {
	f.write(frameTick, func(b []byte) {
		binary.BigEndian.PutUint16(b[0:], uint16(g))
		binary.BigEndian.PutUint64(b[2:], seq)
		binary.BigEndian.PutUint64(b[10:], uint64(at))
	})
}

func (f *frameSink) recv(id uint32, seq uint64, sentAt, at time.Duration) {
	f.write(frameRecv, func(b []byte) {
		binary.BigEndian.PutUint32(b[0:], id)
		binary.BigEndian.PutUint64(b[4:], seq)
		binary.BigEndian.PutUint64(b[12:], uint64(sentAt))
		binary.BigEndian.PutUint64(b[20:], uint64(at))
	})
}

// clock writes the engine's clock and flushes at once, so that its
// arrival time tells the offset.
func (f *frameSink) clock(at time.Duration) error {
	f.write(frameClock, func(b []byte) { binary.BigEndian.PutUint64(b, uint64(at)) })
	return f.flush()
}

func (f *frameSink) flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = f.w.Flush()
	}
	return f.err
}

// Serve is the remote engine (`backbone lab-probe`): it reads its spec
// from the first line of in, probes until in ends, then waits the spec's
// grace for probes in flight, and writes everything to out.
func Serve(ctx context.Context, in io.Reader, out io.Writer, open Opener) error {
	r := bufio.NewReader(in)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("lab-probe: no spec on standard input: %w", err)
	}
	var sp spec
	if err := json.Unmarshal(line, &sp); err != nil {
		return fmt.Errorf("lab-probe: bad spec: %w", err)
	}
	fs := &frameSink{w: bufio.NewWriterSize(out, 64<<10)}
	e, err := startEngine(ctx, sp, open, fs)
	if err != nil {
		return err
	}
	if err := fs.clock(e.now()); err != nil {
		e.close()
		return err
	}
	ended := make(chan struct{})
	go func() {
		if _, err := r.ReadBytes('\n'); err == nil {
			e.start()
		}
		_, _ = io.Copy(io.Discard, r)
		close(ended)
	}()
	clock := time.NewTicker(clockEvery)
	defer clock.Stop()
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	for running := true; running; {
		select {
		case <-ended:
			running = false
		case <-ctx.Done():
			running = false
		case <-clock.C:
			if err := fs.clock(e.now()); err != nil {
				e.close()
				return err
			}
		case <-flush.C:
			if err := fs.flush(); err != nil {
				e.close()
				return err
			}
		}
	}
	e.stopSending()
	time.Sleep(sp.Grace)
	e.close()
	fs.write(frameEnd, func([]byte) {})
	return fs.flush()
}

// frameReader decodes a remote engine's frames as they arrive.
type frameReader struct {
	buf []byte
	on  func(kind byte, b []byte)
	end bool
}

func (f *frameReader) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for len(f.buf) > 0 {
		n, ok := frameLen[f.buf[0]]
		if !ok {
			return len(p), fmt.Errorf("lab-probe sent an unknown frame %q: are the host's and the node's backbone binaries the same?", f.buf[0])
		}
		if len(f.buf) < 1+n {
			break
		}
		if f.buf[0] == frameEnd {
			f.end = true
		}
		f.on(f.buf[0], f.buf[1:1+n])
		f.buf = f.buf[1+n:]
	}
	return len(p), nil
}

var errNoEnd = errors.New("lab-probe ended without its last report")
