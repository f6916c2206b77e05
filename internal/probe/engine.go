package probe

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// DefaultPort is the UDP port probes are sent from and to.
const DefaultPort = 47990

const (
	magic      = 0x62626f6e // "bbon"
	packetSize = 28
	// batch bounds the messages one system call sends or receives.
	batch = 64
)

// spec is what one engine does: the streams it sends and those it
// receives. The host computes it from the session's streams; a remote
// engine gets it as the first line of its input.
type spec struct {
	Port int `json:"port"`
	// Grace is how long a remote engine waits for probes in flight
	// after its input ended.
	Grace   time.Duration `json:"grace_ns"`
	Streams []specStream  `json:"streams"`
}

type specStream struct {
	ID       uint32        `json:"id"`
	From     Endpoint      `json:"from"`
	To       Endpoint      `json:"to"`
	Interval time.Duration `json:"interval_ns"`
	Send     bool          `json:"send,omitempty"`
	Recv     bool          `json:"recv,omitempty"`
}

// groups are the engine's sending streams by interval, in order of first
// appearance: group g's ticks carry the streams groups()[g] lists. The
// host derives the same grouping from the same spec.
func (s spec) groups() [][]specStream {
	var out [][]specStream
	idx := map[time.Duration]int{}
	for _, st := range s.Streams {
		if !st.Send {
			continue
		}
		g, ok := idx[st.Interval]
		if !ok {
			g = len(out)
			idx[st.Interval] = g
			out = append(out, nil)
		}
		out[g] = append(out[g], st)
	}
	return out
}

// sink receives what an engine does, in the engine's clock (time since
// its start).
type sink interface {
	// tick: group g sent probe seq of each of its streams at at.
	tick(g int, seq uint64, at time.Duration)
	// recv: probe seq of stream id, sent at sentAt (the sender engine's
	// clock), arrived at at (or, polled, by at).
	recv(id uint32, seq uint64, sentAt, at time.Duration)
}

// engine sends and receives the probes of one kernel with as few system
// calls as possible, because inside UML every one traps into the guest
// kernel (about 70 µs on this project's machines): one UDP socket per
// local endpoint address, for sending and receiving; one goroutine that
// per tick sends one batch per socket (sendmmsg) and drains every
// receiving socket without waiting (recvmmsg, MSG_DONTWAIT). Arrivals are
// timed when polled, within one tick; loss is measured on send times.
type engine struct {
	base  time.Time
	spec  spec
	sink  sink
	socks []*sock
	// begin starts sending (once every engine of a session listens);
	// stop ends sending; done ends polling, after a grace.
	begin, stop, done   chan struct{}
	beginOnce, stopOnce sync.Once
	finished            chan struct{}
}

type sockKey struct {
	ns   string
	addr netip.Addr
}

type sock struct {
	key  sockKey
	conn *net.UDPConn
	raw  syscall.RawConn
	v4   *ipv4.PacketConn
	v6   *ipv6.PacketConn
	// recv are the stream ids this socket receives.
	recv map[uint32]bool
}

func (s *sock) writeBatch(msgs []ipv4.Message) (int, error) {
	if s.v4 != nil {
		return s.v4.WriteBatch(msgs, 0)
	}
	return s.v6.WriteBatch(msgs, 0)
}

// inbox is the receive buffers of one recvmmsg.
type inbox struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
}

func newInbox() *inbox {
	in := &inbox{hdrs: make([]unix.Mmsghdr, batch), iovs: make([]unix.Iovec, batch), bufs: make([][]byte, batch)}
	for i := range in.hdrs {
		in.bufs[i] = make([]byte, 64)
		in.iovs[i].Base = &in.bufs[i][0]
		in.iovs[i].SetLen(len(in.bufs[i]))
		in.hdrs[i].Hdr.Iov = &in.iovs[i]
		in.hdrs[i].Hdr.SetIovlen(1)
	}
	return in
}

// drain receives what is queued on s without waiting: one recvmmsg per
// full batch.
func (e *engine) drain(s *sock, in *inbox, at time.Duration) {
	for {
		n := 0
		_ = s.raw.Read(func(fd uintptr) bool {
			r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&in.hdrs[0])), uintptr(len(in.hdrs)), unix.MSG_DONTWAIT, 0, 0)
			if errno == 0 {
				n = int(r)
			}
			return true // never wait in the poller
		})
		for i := 0; i < n; i++ {
			b := in.bufs[i][:in.hdrs[i].Len]
			if len(b) < packetSize || binary.BigEndian.Uint32(b[0:]) != magic {
				continue
			}
			id := binary.BigEndian.Uint32(b[4:])
			if !s.recv[id] {
				continue
			}
			e.sink.recv(id, binary.BigEndian.Uint64(b[8:]), time.Duration(binary.BigEndian.Uint64(b[16:])), at)
		}
		if n < len(in.hdrs) {
			return
		}
	}
}

// startEngine opens the engine's sockets (inside their namespaces) and
// starts sending and receiving.
func startEngine(ctx context.Context, sp spec, open Opener, sk sink) (*engine, error) {
	e := &engine{base: time.Now(), spec: sp, sink: sk, begin: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}), finished: make(chan struct{})}
	bykey := map[sockKey]*sock{}
	get := func(ep Endpoint) (*sock, error) {
		k := sockKey{ep.NS, ep.Addr}
		if s, ok := bykey[k]; ok {
			return s, nil
		}
		s := &sock{key: k, recv: map[uint32]bool{}}
		err := open(ep.NS, func() error {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ep.Addr.AsSlice(), Port: sp.Port})
			s.conn = c
			return err
		})
		if err != nil {
			where := ""
			if ep.NS != "" {
				where = " in " + ep.NS
			}
			return nil, fmt.Errorf("probe socket on %s port %d%s: %w", ep.Addr, sp.Port, where, err)
		}
		if s.raw, err = s.conn.SyscallConn(); err != nil {
			s.conn.Close()
			return nil, err
		}
		if ep.Addr.Is4() {
			s.v4 = ipv4.NewPacketConn(s.conn)
		} else {
			s.v6 = ipv6.NewPacketConn(s.conn)
		}
		bykey[k] = s
		e.socks = append(e.socks, s)
		return s, nil
	}
	for _, st := range sp.Streams {
		var err error
		if st.Send {
			_, err = get(st.From)
		}
		if err == nil && st.Recv {
			var s *sock
			if s, err = get(st.To); err == nil {
				s.recv[st.ID] = true
			}
		}
		if err != nil {
			e.closeSockets()
			return nil, err
		}
	}
	go e.run(ctx, bykey)
	return e, nil
}

// group is a sending group made concrete: its messages per socket.
type group struct {
	every int64 // sends every every-th slot
	due   int64 // the next slot it sends in
	seq   uint64
	outs  []*outbox
}

type outbox struct {
	s    *sock
	msgs []ipv4.Message
}

// run is the engine's one goroutine: tick at the smallest interval; send
// the groups due; drain the receiving sockets.
func (e *engine) run(ctx context.Context, bykey map[sockKey]*sock) {
	defer close(e.finished)
	gs := e.spec.groups()
	if len(gs) == 0 && len(e.socks) == 0 {
		<-e.done
		return
	}
	tickEvery := time.Duration(0)
	for _, g := range gs {
		if iv := g[0].Interval; tickEvery == 0 || iv < tickEvery {
			tickEvery = iv
		}
	}
	if tickEvery == 0 {
		tickEvery = time.Millisecond // receive only
	}
	var groups []*group
	for _, streams := range gs {
		g := &group{every: max(1, int64(streams[0].Interval/tickEvery))}
		byS := map[*sock]*outbox{}
		for _, st := range streams {
			s := bykey[sockKey{st.From.NS, st.From.Addr}]
			o := byS[s]
			if o == nil {
				o = &outbox{s: s}
				byS[s] = o
				g.outs = append(g.outs, o)
			}
			buf := make([]byte, packetSize)
			binary.BigEndian.PutUint32(buf[0:], magic)
			binary.BigEndian.PutUint32(buf[4:], st.ID)
			o.msgs = append(o.msgs, ipv4.Message{Buffers: [][]byte{buf}, Addr: &net.UDPAddr{IP: st.To.Addr.AsSlice(), Port: e.spec.Port}})
		}
		groups = append(groups, g)
	}
	var receivers []*sock
	for _, s := range e.socks {
		if len(s.recv) > 0 {
			receivers = append(receivers, s)
		}
	}
	in := newInbox()
	select {
	case <-e.begin:
	case <-e.done:
		return
	case <-ctx.Done():
		return
	}
	// The loop runs on a thread of its own, woken at each slot (pacer).
	pace := newPacer(tickEvery)
	defer pace.close()
	sending := true
	for slot := int64(0); ; slot = pace.wait() {
		at := e.now()
		if sending {
			for gi, g := range groups {
				if slot < g.due {
					continue
				}
				g.due = (slot/g.every + 1) * g.every
				for _, o := range g.outs {
					for _, m := range o.msgs {
						binary.BigEndian.PutUint64(m.Buffers[0][8:], g.seq)
						binary.BigEndian.PutUint64(m.Buffers[0][16:], uint64(at))
					}
					// Errors (no route, unreachable) are loss, as on a
					// real network.
					for sent := 0; sent < len(o.msgs); {
						k, err := o.s.writeBatch(o.msgs[sent:])
						if err != nil || k <= 0 {
							break
						}
						sent += k
					}
				}
				e.sink.tick(gi, g.seq, at)
				g.seq++
			}
		}
		for _, s := range receivers {
			e.drain(s, in, e.now())
		}
		select {
		case <-ctx.Done():
			return
		case <-e.done:
			// Keep nothing in flight unread.
			for _, s := range receivers {
				e.drain(s, in, e.now())
			}
			return
		case <-e.stop:
			// Keep draining, without sending, until done.
			sending = false
		default:
		}
	}
}

func (e *engine) now() time.Duration { return time.Since(e.base) }

// start lets the engine send (its sockets listen from startEngine on).
func (e *engine) start() { e.beginOnce.Do(func() { close(e.begin) }) }

// stopSending ends sending; arrivals are still taken until close.
func (e *engine) stopSending() { e.stopOnce.Do(func() { close(e.stop) }) }

// close drains a last time, closes the sockets and waits for the engine
// to end.
func (e *engine) close() {
	e.stopSending()
	select {
	case <-e.done:
	default:
		close(e.done)
	}
	<-e.finished
	e.closeSockets()
}

func (e *engine) closeSockets() {
	for _, s := range e.socks {
		s.conn.Close()
	}
}
