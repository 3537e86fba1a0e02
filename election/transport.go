package election

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One listener carries two protocols: raft's own RPCs and distkit's
// forwarding RPCs (followers handing writes to the leader). The dialler
// writes one tag byte first, so both share a port, a TLS setup and a
// faultnet node name.
const (
	tagRaft    byte = 'R'
	tagForward byte = 'F'
	// tagTimeout bounds how long an accepted connection may take to send
	// its tag, so a silent peer cannot hold a goroutine.
	tagTimeout = 5 * time.Second
)

// mux accepts on the Node's listener and routes connections by tag.
type mux struct {
	ln      net.Listener
	dial    Dialer
	addr    string
	raftCh  chan net.Conn
	forward func(net.Conn) // serves one forwarding connection until it ends

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	mu    sync.Mutex
	conns map[*trackedConn]struct{} // every live conn, closed on shutdown
}

// trackedConn is a connection the mux closes when it shuts down: raft's
// transport leaves its inbound and pooled connections open on Close, and
// their reader goroutines would outlive the Node.
type trackedConn struct {
	net.Conn
	m    *mux
	once sync.Once
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.m.untrack(c)
		err = c.Conn.Close()
	})
	return err
}

func newMux(ln net.Listener, dial Dialer, advertise string, forward func(net.Conn)) *mux {
	m := &mux{
		ln:      ln,
		dial:    dial,
		addr:    advertise,
		raftCh:  make(chan net.Conn),
		forward: forward,
		done:    make(chan struct{}),
		conns:   map[*trackedConn]struct{}{},
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient accept errors (EMFILE and the like): back off.
			select {
			case <-m.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		c, ok := m.track(raw)
		if !ok {
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

// track registers c, or closes it if the mux is shutting down.
func (m *mux) track(raw net.Conn) (*trackedConn, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		_ = raw.Close()
		return nil, false
	default:
	}
	c := &trackedConn{Conn: raw, m: m}
	m.conns[c] = struct{}{}
	return c, true
}

func (m *mux) untrack(c *trackedConn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *mux) route(c *trackedConn) {
	defer m.wg.Done()
	var tag [1]byte
	_ = c.SetReadDeadline(time.Now().Add(tagTimeout))
	if _, err := c.Read(tag[:]); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch tag[0] {
	case tagRaft:
		// raft owns the connection from here.
		select {
		case m.raftCh <- c:
		case <-m.done:
			_ = c.Close()
		}
	case tagForward:
		m.forward(c)
		_ = c.Close()
	default:
		_ = c.Close()
	}
}

// dialTag connects to addr and announces the protocol.
func (m *mux) dialTag(ctx context.Context, addr string, tag byte) (net.Conn, error) {
	raw, err := m.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, ok := m.track(raw)
	if !ok {
		return nil, net.ErrClosed
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	if _, err := c.Write([]byte{tag}); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// close stops accepting and closes the listener and forwarding conns; it
// waits for the mux's goroutines.
func (m *mux) close() error {
	var err error
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.done)
		conns := make([]*trackedConn, 0, len(m.conns))
		for c := range m.conns {
			conns = append(conns, c)
		}
		m.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

// raftLayer is the raft.StreamLayer view of the mux.
type raftLayer struct{ m *mux }

var _ raft.StreamLayer = raftLayer{}

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close is called by raft's transport on shutdown; the Node closes the
// mux itself afterwards, so this only needs to unblock Accept.
func (l raftLayer) Close() error { return l.m.close() }

func (l raftLayer) Addr() net.Addr { return addr(l.m.addr) }

func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.m.dialTag(ctx, string(address), tagRaft)
}

// addr is a net.Addr for an advertised address string.
type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

// tcpNetwork opens the default TCP (or TLS) listener and dialer.
func tcpNetwork(o *options) (net.Listener, Dialer, error) {
	ln, err := net.Listen("tcp", o.bind)
	if err != nil {
		return nil, nil, invalid("listen on %q: %v", o.bind, err)
	}
	d := &net.Dialer{}
	if o.serverTLS == nil {
		return ln, d.DialContext, nil
	}
	td := &tls.Dialer{NetDialer: d, Config: o.clientTLS}
	return tls.NewListener(ln, o.serverTLS), td.DialContext, nil
}
