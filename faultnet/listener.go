package faultnet

import (
	"net"
	"sync"
)

// listener is a net.Listener on a Network, returned by Listen.
type listener struct {
	n    *Network
	addr Addr
	node string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a connection arrives or the listener closes
	queue   []*conn       // dialled, not yet accepted
	closed  bool
}

var _ net.Listener = (*listener)(nil)

// enqueue hands a new connection's accepting end to Accept.
func (l *listener) enqueue(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(l.queue, c)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Accept waits for and returns the next connection dialled to the
// listener, or net.ErrClosed once the listener is closed.
func (l *listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed {
			return nil, &net.OpError{Op: "accept", Net: network, Addr: l.addr, Err: net.ErrClosed}
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			return c, nil
		}
		changed := l.changed
		l.mu.Unlock()
		<-changed
		l.mu.Lock()
	}
}

// Close stops the listener and frees its address. Connections not yet
// accepted are reset; accepted ones stay open.
func (l *listener) Close() error {
	l.n.mu.Lock()
	defer l.n.mu.Unlock()
	if !l.n.closeListenerLocked(l) {
		return &net.OpError{Op: "close", Net: network, Addr: l.addr, Err: net.ErrClosed}
	}
	return nil
}

// Addr returns the address the listener was created with.
func (l *listener) Addr() net.Addr { return l.addr }

// closeListenerLocked closes l, unregisters it and resets the connections
// waiting in its queue. It reports false if l was closed already.
func (n *Network) closeListenerLocked(l *listener) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	pending := l.queue
	l.queue = nil
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()

	if n.listeners[string(l.addr)] == l {
		delete(n.listeners, string(l.addr))
	}
	for _, c := range pending {
		if _, live := n.conns[c.pr]; live {
			n.resetLocked(c.pr)
		}
	}
	return true
}
