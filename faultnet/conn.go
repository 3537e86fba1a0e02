package faultnet

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// network is the name of the network, as [net.Addr.Network] reports it.
const network = "faultnet"

// MaxBuffered is the most bytes that one direction of a connection holds
// unread, whether in flight, held by a cut, or arrived. A Write beyond it
// blocks, as with a full TCP window, until the reader drains the
// direction, either end closes, the connection is reset, or the write
// deadline passes.
const MaxBuffered = 1 << 20

// Addr is the address of a listener or a connection end on a [Network]:
// a node name, optionally with a port ("db" or "db:5432"). Its Network is
// "faultnet".
type Addr string

// Network returns "faultnet".
func (Addr) Network() string { return network }

// String returns the address as given to Listen or Dial.
func (a Addr) String() string { return string(a) }

var _ net.Addr = Addr("")

// pair is one connection: two ends and the two directions between them.
type pair struct {
	n      *Network
	ab, ba *pipe   // dialer to listener, and back
	ends   [2]conn // the dialer's end and the listener's end
	closed atomic.Int32
}

// newPairLocked creates a connection from node a (at local) to node b (at
// remote), registers it and gives it the current cuts.
func (n *Network) newPairLocked(a, b string, local, remote Addr) *pair {
	pr := &pair{
		n:  n,
		ab: &pipe{n: n, from: a, to: b, ws: newWaitset()},
		ba: &pipe{n: n, from: b, to: a, ws: newWaitset()},
	}
	now := time.Now()
	pr.ab.setCut(n.isCutLocked(a, b), now)
	pr.ba.setCut(n.isCutLocked(b, a), now)
	pr.ends[0] = conn{pr: pr, in: pr.ba, out: pr.ab, local: local, remote: remote}
	pr.ends[1] = conn{pr: pr, in: pr.ab, out: pr.ba, local: remote, remote: local}
	n.conns[pr] = struct{}{}
	return pr
}

// chunk is the bytes of one Write, or the end of the stream (fin), and
// when they become readable.
type chunk struct {
	data []byte
	at   time.Time
	fin  bool
}

// pipe is one direction of a connection. Its writer is one end and its
// reader the other; each flag and deadline below belongs to one of them.
type pipe struct {
	n        *Network
	from, to string // nodes

	mu       sync.Mutex
	ws       waitset
	chunks   []chunk // unread, oldest first; a fin chunk stays at the head once reached
	buffered int     // unread bytes in chunks
	last     time.Time
	cut      bool
	cutSince time.Time // when cut became true: chunks readable by then stay readable

	writerClosed bool // the writing end was closed
	readerClosed bool // the reading end was closed
	isReset      bool
	rdl, wdl     time.Time // the reader's and the writer's deadlines
}

// waitset lets goroutines sleep, with a lock released, until something
// guarded by that lock changes: pipes and packet conns both block readers
// (and writers) this way. The zero value is not usable; see newWaitset.
type waitset struct {
	changed chan struct{} // closed and replaced on every change while waiters > 0
	waiters int
}

func newWaitset() waitset { return waitset{changed: make(chan struct{})} }

// signal wakes everyone waiting; called with the guarding lock held.
func (w *waitset) signal() {
	if w.waiters > 0 {
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// wait releases mu until a signal or, unless until is zero, until passes;
// then it takes mu again.
func (w *waitset) wait(mu *sync.Mutex, until time.Time) {
	changed := w.changed
	w.waiters++
	mu.Unlock()
	if until.IsZero() {
		<-changed
	} else if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
	mu.Lock()
	w.waiters--
}

// signalLocked wakes everyone waiting on p.
func (p *pipe) signalLocked() { p.ws.signal() }

// waitLocked releases p.mu until p changes or, unless until is zero,
// until passes; then it takes p.mu again.
func (p *pipe) waitLocked(until time.Time) { p.ws.wait(&p.mu, until) }

func (p *pipe) setCut(cut bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cut == p.cut {
		return
	}
	p.cut = cut
	p.cutSince = now
	p.signalLocked()
}

// heldLocked reports whether a cut holds back a chunk due at at: it had
// not arrived when the cut began.
func (p *pipe) heldLocked(at time.Time) bool {
	return p.cut && at.After(p.cutSince)
}

// held returns the bytes a cut holds back.
func (p *pipe) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return 0
	}
	total := 0
	for _, c := range p.chunks {
		if p.heldLocked(c.at) {
			total += len(c.data)
		}
	}
	return total
}

func (p *pipe) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isReset = true
	p.discardLocked()
	p.signalLocked()
}

func (p *pipe) discardLocked() {
	p.chunks = nil
	p.buffered = 0
}

// enqueueLocked appends one chunk, due after this direction's latency but
// not before the chunk ahead of it.
func (p *pipe) enqueueLocked(data []byte, fin bool) {
	at := time.Now().Add(p.n.delay(p.from, p.to))
	if at.Before(p.last) {
		at = p.last
	}
	p.last = at
	p.chunks = append(p.chunks, chunk{data: bytes.Clone(data), at: at, fin: fin})
	p.buffered += len(data)
	p.signalLocked()
}

// takeLocked copies readable bytes into b. It returns how many, whether
// the reader has reached the end of the stream, and, when nothing was
// readable, when the head chunk will be (zero if only a change can make
// it readable).
func (p *pipe) takeLocked(b []byte, now time.Time) (n int, eof bool, wake time.Time) {
	for len(p.chunks) > 0 && n < len(b) {
		h := &p.chunks[0]
		if h.at.After(now) || p.heldLocked(h.at) {
			if n == 0 && !p.heldLocked(h.at) {
				wake = h.at
			}
			break
		}
		if h.fin {
			eof = n == 0
			break
		}
		k := copy(b[n:], h.data)
		n += k
		p.buffered -= k
		h.data = h.data[k:]
		if len(h.data) == 0 {
			p.chunks[0] = chunk{}
			p.chunks = p.chunks[1:]
		}
	}
	return n, eof, wake
}

// conn is one end of a connection.
type conn struct {
	pr            *pair
	in, out       *pipe
	local, remote Addr
}

var _ net.Conn = (*conn)(nil)

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: network, Source: c.local, Addr: c.remote, Err: err}
}

// expired reports whether deadline dl is set and has passed.
func expired(dl, now time.Time) bool {
	return !dl.IsZero() && !now.Before(dl)
}

// earliest returns the earlier of two times, where zero means never.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// Read reads the bytes that have arrived, blocking until some have, as
// net.Conn requires.
func (c *conn) Read(b []byte) (int, error) {
	p := c.in
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		switch now := time.Now(); {
		case p.readerClosed:
			return 0, c.opErr("read", net.ErrClosed)
		case p.isReset:
			return 0, c.opErr("read", ErrReset)
		case expired(p.rdl, now):
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		case len(b) == 0:
			return 0, nil
		default:
			n, eof, wake := p.takeLocked(b, now)
			if n > 0 {
				c.pr.n.delivered.Add(uint64(n))
				p.signalLocked() // room for a blocked writer
				return n, nil
			}
			if eof {
				return 0, io.EOF
			}
			p.waitLocked(earliest(wake, p.rdl))
		}
	}
}

// Write queues b for the peer, blocking while the direction is full.
func (c *conn) Write(b []byte) (int, error) {
	p := c.out
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for {
		switch {
		case p.writerClosed:
			return total, c.opErr("write", net.ErrClosed)
		case p.isReset:
			return total, c.opErr("write", ErrReset)
		case p.readerClosed:
			return total, c.opErr("write", os.NewSyscallError("write", syscall.EPIPE))
		case expired(p.wdl, time.Now()):
			return total, c.opErr("write", os.ErrDeadlineExceeded)
		case len(b) == 0:
			return total, nil
		case p.buffered < MaxBuffered:
			k := min(MaxBuffered-p.buffered, len(b))
			p.enqueueLocked(b[:k], false)
			b = b[k:]
			total += k
		default:
			p.waitLocked(p.wdl)
		}
	}
}

// Close closes this end: unread incoming bytes are discarded, and the
// peer reads io.EOF after the bytes already written (once they are
// deliverable); its Writes fail with EPIPE.
func (c *conn) Close() error {
	in := c.in
	in.mu.Lock()
	if in.readerClosed {
		in.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	in.readerClosed = true
	in.discardLocked()
	in.signalLocked()
	in.mu.Unlock()

	out := c.out
	out.mu.Lock()
	out.writerClosed = true
	if !out.isReset && !out.readerClosed {
		out.enqueueLocked(nil, true)
	}
	out.signalLocked()
	out.mu.Unlock()

	if c.pr.closed.Add(1) == 2 {
		c.pr.n.forget(c.pr)
	}
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	p := c.in
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readerClosed {
		return c.opErr("set", net.ErrClosed)
	}
	p.rdl = t
	p.signalLocked()
	return nil
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	p := c.out
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writerClosed {
		return c.opErr("set", net.ErrClosed)
	}
	p.wdl = t
	p.signalLocked()
	return nil
}
