package faultnet

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// MaxQueuedDatagrams is the most datagrams that one packet conn holds
// unread, in flight or arrived, like a full UDP receive buffer: a datagram
// sent to a receiver that holds this many already is dropped.
const MaxQueuedDatagrams = 1024

// datagram is one WriteTo's payload, who sent it, and when it becomes
// readable.
type datagram struct {
	data []byte
	from Addr   // the sender's packet address
	node string // the sender's node, to drop datagrams in flight when a cut begins
	at   time.Time
}

// packetConn is a net.PacketConn on a Network, returned by ListenPacket.
type packetConn struct {
	n    *Network
	addr Addr
	node string

	mu     sync.Mutex
	ws     waitset
	queue  []datagram // unread, ordered by at; equal times keep their send order
	closed bool
	rdl    time.Time // read deadline
	wdl    time.Time // write deadline
}

var _ net.PacketConn = (*packetConn)(nil)

// ListenPacket opens a datagram endpoint at addr, as UDP's ListenPacket
// would. addr is a bare node name or "node:port", as for [Network.Listen];
// packet and stream listeners have separate address spaces, so the same
// string can have one of each, like a UDP and a TCP socket on one port.
// The conn's LocalAddr has Network "faultnet" and String addr.
//
// Datagrams behave as on UDP. WriteTo accepts an [Addr] or any
// [net.Addr] whose String is a packet conn's address (a *net.UDPAddr
// will do), never blocks, and returns len(b), nil whether or not the
// datagram arrives: each is delayed on its own by the latency of its
// direction (so jitter may reorder them), and is lost without an error
// when its direction is cut or becomes cut while it is in flight, when
// the drop rate says so, when no packet conn has the destination address,
// or when the receiver already holds [MaxQueuedDatagrams]. ReadFrom blocks
// until a datagram is due, the read deadline passes (an error wrapping
// [os.ErrDeadlineExceeded]) or the conn is closed ([net.ErrClosed]); it
// returns the sender's packet address, and truncates a datagram longer
// than its buffer.
//
// ListenPacket returns ErrInvalidAddr for an empty addr or an empty host
// part, and ErrAddrInUse when addr already has a packet conn. Closing the
// conn, or crashing its node, frees the address and drops its unread
// datagrams.
func (n *Network) ListenPacket(addr string) (net.PacketConn, error) {
	pc, err := n.listenPacket(addr)
	if err != nil {
		return nil, err
	}
	return pc, nil
}

func (n *Network) listenPacket(addr string) (*packetConn, error) {
	node, err := nodeOf(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: Addr(addr), Err: err}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.packets[addr]; ok {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: Addr(addr), Err: ErrAddrInUse}
	}
	pc := &packetConn{n: n, addr: Addr(addr), node: node, ws: newWaitset()}
	n.packets[addr] = pc
	return pc, nil
}

func (pc *packetConn) opErr(op string, remote net.Addr, err error) error {
	return &net.OpError{Op: op, Net: network, Source: pc.addr, Addr: remote, Err: err}
}

// signalLocked wakes everyone waiting on pc.
func (pc *packetConn) signalLocked() { pc.ws.signal() }

// waitLocked releases pc.mu until pc changes or, unless until is zero,
// until passes; then it takes pc.mu again.
func (pc *packetConn) waitLocked(until time.Time) { pc.ws.wait(&pc.mu, until) }

// WriteTo sends b as one datagram to the packet conn whose address is
// addr.String(); addr may be an [Addr] or any other [net.Addr], such as a
// *net.UDPAddr. It never blocks. It returns len(b) and nil whether or not
// the datagram will arrive, as UDP does; [Stats] counts the losses. It
// returns an error, and sends nothing, when this conn is closed or its
// write deadline has passed, or when addr is nil or names no node
// (ErrInvalidAddr).
func (pc *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if addr == nil {
		return 0, pc.opErr("write", nil, fmt.Errorf("%w: nil destination", ErrInvalidAddr))
	}
	to, err := nodeOf(addr.String())
	if err != nil {
		return 0, pc.opErr("write", addr, err)
	}
	n := pc.n
	n.mu.Lock()
	defer n.mu.Unlock()
	pc.mu.Lock()
	closed, wdl := pc.closed, pc.wdl
	pc.mu.Unlock()
	switch {
	case closed:
		return 0, pc.opErr("write", addr, net.ErrClosed)
	case expired(wdl, time.Now()):
		return 0, pc.opErr("write", addr, os.ErrDeadlineExceeded)
	}
	n.datagramsSent.Add(1)
	dst := n.packets[addr.String()]
	if dst == nil || n.isCutLocked(pc.node, to) || n.dropped(pc.node, to) {
		n.datagramsDropped.Add(1)
		return len(b), nil
	}
	d := datagram{data: bytes.Clone(b), from: pc.addr, node: pc.node, at: time.Now().Add(n.delay(pc.node, to))}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	if len(dst.queue) >= MaxQueuedDatagrams {
		n.datagramsDropped.Add(1)
		return len(b), nil
	}
	// Insert after every datagram due at the same time or earlier, so
	// that without jitter datagrams arrive in the order they were sent.
	i, _ := slices.BinarySearchFunc(dst.queue, d.at, func(q datagram, at time.Time) int {
		if q.at.After(at) {
			return 1
		}
		return -1
	})
	dst.queue = slices.Insert(dst.queue, i, d)
	dst.signalLocked()
	return len(b), nil
}

// read waits for the next deliverable datagram and removes it from the
// queue, without copying it.
func (pc *packetConn) read() (datagram, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for {
		now := time.Now()
		switch {
		case pc.closed:
			return datagram{}, pc.opErr("read", nil, net.ErrClosed)
		case expired(pc.rdl, now):
			return datagram{}, pc.opErr("read", nil, os.ErrDeadlineExceeded)
		case len(pc.queue) > 0 && !pc.queue[0].at.After(now):
			d := pc.queue[0]
			pc.queue[0] = datagram{}
			pc.queue = pc.queue[1:]
			pc.n.datagramsDelivered.Add(1)
			return d, nil
		}
		var wake time.Time
		if len(pc.queue) > 0 {
			wake = pc.queue[0].at
		}
		pc.waitLocked(earliest(wake, pc.rdl))
	}
}

// ReadFrom waits for the next datagram that has arrived, copies it into b
// and returns its length and the sender's packet address. A datagram
// longer than b is truncated to len(b), the rest lost, as on UDP.
// ReadFrom returns an error wrapping [os.ErrDeadlineExceeded] once the read
// deadline passes, and [net.ErrClosed] once the conn is closed, including
// when that happens while it waits.
func (pc *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	d, err := pc.read()
	if err != nil {
		return 0, nil, err
	}
	return copy(b, d.data), d.from, nil
}

// Close closes the conn and frees its address. Unread datagrams are
// dropped, and blocked ReadFroms return [net.ErrClosed].
func (pc *packetConn) Close() error {
	pc.n.mu.Lock()
	defer pc.n.mu.Unlock()
	if !pc.n.closePacketLocked(pc) {
		return pc.opErr("close", nil, net.ErrClosed)
	}
	return nil
}

// closePacketLocked closes pc, unregisters it and counts its unread
// datagrams as dropped. It reports false if pc was closed already.
func (n *Network) closePacketLocked(pc *packetConn) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return false
	}
	pc.closed = true
	n.datagramsDropped.Add(uint64(len(pc.queue)))
	pc.queue = nil
	pc.signalLocked()
	if n.packets[string(pc.addr)] == pc {
		delete(n.packets, string(pc.addr))
	}
	return true
}

// dropCutLocked drops the datagrams still in flight to pc whose direction
// is now cut: a cut loses what is on the wire, while what had arrived
// stays readable.
func (n *Network) dropCutLocked(pc *packetConn, now time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	kept := pc.queue[:0]
	for _, d := range pc.queue {
		if d.at.After(now) && n.isCutLocked(d.node, pc.node) {
			n.datagramsDropped.Add(1)
			continue
		}
		kept = append(kept, d)
	}
	clear(pc.queue[len(kept):])
	pc.queue = kept
}

// queued returns how many datagrams pc holds.
func (pc *packetConn) queued() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.queue)
}

// LocalAddr returns the address the conn was opened at.
func (pc *packetConn) LocalAddr() net.Addr { return pc.addr }

// SetDeadline sets both the read and the write deadline.
func (pc *packetConn) SetDeadline(t time.Time) error {
	return pc.setDeadline(func() { pc.rdl, pc.wdl = t, t })
}

// SetReadDeadline sets the deadline for ReadFrom, including one blocked
// now; the zero time means none.
func (pc *packetConn) SetReadDeadline(t time.Time) error {
	return pc.setDeadline(func() { pc.rdl = t })
}

// SetWriteDeadline sets the deadline for WriteTo, which never blocks, so
// only a deadline already past matters; the zero time means none.
func (pc *packetConn) SetWriteDeadline(t time.Time) error {
	return pc.setDeadline(func() { pc.wdl = t })
}

// setDeadline runs set under pc.mu and wakes a blocked ReadFrom to look
// at the new deadline.
func (pc *packetConn) setDeadline(set func()) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return pc.opErr("set", nil, net.ErrClosed)
	}
	set()
	pc.signalLocked()
	return nil
}
