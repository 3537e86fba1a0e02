package ambassador

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Forwarder is the ambassador for protocols that are not HTTP: it
// forwards each connection it accepts to a backend and copies bytes both
// ways until both sides are done. Without a key it balances connections
// (power of two choices on the connections open to each backend);
// with ForwarderConfig.Key and Locator it shards them by a key read from
// the connection's first bytes (a Redis command's key, a protocol's
// hello). Make one with NewForwarder; it is safe for concurrent use.
type Forwarder struct {
	c       ForwarderConfig
	set     atomic.Pointer[tcpSet]
	closing context.Context // done when Close is called: ends dials
	close   context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

// ForwarderConfig configures a Forwarder. Zero fields take the defaults.
type ForwarderConfig struct {
	// Backends are where connections go.
	Backends []TCPBackend
	// Key reads a connection's routing key from its first bytes, for
	// Locator to place. It may read (or Peek) as much as it needs, up to
	// MaxKeyBytes: every byte is forwarded, read or not. An error drops
	// the connection. Key and Locator go together.
	Key     func(first *bufio.Reader) (string, error)
	Locator Locator
	// MaxKeyBytes bounds what Key may read. Default 4 KiB.
	MaxKeyBytes int
	// KeyTimeout bounds the wait for the key's bytes. Default 5 s.
	KeyTimeout time.Duration
	// HandshakeTimeout bounds a client's TLS handshake, when Serve's
	// listener is a tls.NewListener: it is done before the backend is
	// dialed. Default 10 s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds each dial to a backend. Default 5 s.
	DialTimeout time.Duration
	// IdleTimeout, if not zero, closes a forwarded connection that has
	// carried no bytes either way for this long (a client or backend that
	// went without closing, a half-closed connection whose other side never
	// ends). Default: none.
	IdleTimeout time.Duration
	// TLS, if not nil, is the configuration for TLS to the backends. For
	// TLS on the Forwarder's side, give Serve a tls.NewListener.
	TLS *tls.Config
	// Logger gets failed connections at Debug. Default: none.
	Logger *zap.Logger
}

// TCPBackend is one backend of a Forwarder.
type TCPBackend struct {
	Name string // unique; default Addr
	Addr string // host:port
}

// ForwarderStats is what a Forwarder has counted for one backend.
type ForwarderStats struct {
	Name     string
	Conns    uint64 // connections forwarded
	Errors   uint64 // dials that failed
	Open     int    // connections open now
	BytesIn  uint64 // from clients to the backend
	BytesOut uint64 // from the backend to clients
}

type tcpBackend struct {
	TCPBackend
	open              atomic.Int64
	conns, errors     atomic.Uint64
	bytesIn, bytesOut atomic.Uint64
}

type tcpSet struct {
	list   []*tcpBackend
	byName map[string]*tcpBackend
}

// ErrClosed is returned by a Forwarder's Serve once it is closed.
var ErrClosed = errors.New("ambassador: forwarder closed")

// NewForwarder checks c and returns its Forwarder.
func NewForwarder(c ForwarderConfig) (*Forwarder, error) {
	def(&c.MaxKeyBytes, 4<<10)
	def(&c.KeyTimeout, 5*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	def(&c.HandshakeTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	switch {
	case (c.Key == nil) != isNil(c.Locator):
		return nil, invalid("ForwarderConfig: Key and Locator go together (a nil pointer is no Locator)")
	case c.MaxKeyBytes < 16 || c.MaxKeyBytes > 1<<20:
		return nil, invalid("ForwarderConfig.MaxKeyBytes %d: want 16 to 1 MiB", c.MaxKeyBytes)
	case c.IdleTimeout < 0:
		return nil, invalid("ForwarderConfig.IdleTimeout %v: want 0 (none) or more", c.IdleTimeout)
	case c.KeyTimeout <= 0 || c.DialTimeout <= 0 || c.HandshakeTimeout <= 0:
		return nil, invalid("ForwarderConfig: KeyTimeout %v, DialTimeout %v and HandshakeTimeout %v: want more than 0", c.KeyTimeout, c.DialTimeout, c.HandshakeTimeout)
	}
	if c.TLS != nil {
		c.TLS = c.TLS.Clone()
	}
	if isNil(c.Locator) {
		c.Locator = nil
	}
	f := &Forwarder{c: c, listeners: map[net.Listener]bool{}, conns: map[net.Conn]bool{}}
	f.closing, f.close = context.WithCancel(context.Background())
	if err := f.SetBackends(c.Backends); err != nil {
		return nil, err
	}
	f.c.Backends = nil
	return f, nil
}

// SetBackends replaces the backends, all or none. A backend whose name
// and address are unchanged keeps its counts; connections open stay
// where they are.
func (f *Forwarder) SetBackends(bs []TCPBackend) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.set.Load()
	s := &tcpSet{byName: map[string]*tcpBackend{}}
	for i, b := range bs {
		if _, port, err := net.SplitHostPort(b.Addr); err != nil || port == "" {
			return invalid("TCP backend %d: address %q: want host:port", i, b.Addr)
		}
		def(&b.Name, b.Addr)
		if s.byName[b.Name] != nil {
			return invalid("TCP backend %d: name %q is taken by another", i, b.Name)
		}
		tb := &tcpBackend{TCPBackend: b}
		if old != nil {
			if o := old.byName[b.Name]; o != nil && o.Addr == b.Addr {
				tb = o
			}
		}
		s.byName[b.Name] = tb
		s.list = append(s.list, tb)
	}
	f.set.Store(s)
	return nil
}

// Stats returns the counts of the backends now, in order.
func (f *Forwarder) Stats() []ForwarderStats {
	var out []ForwarderStats
	for _, b := range f.set.Load().list {
		out = append(out, ForwarderStats{Name: b.Name, Conns: b.conns.Load(), Errors: b.errors.Load(),
			Open: int(b.open.Load()), BytesIn: b.bytesIn.Load(), BytesOut: b.bytesOut.Load()})
	}
	return out
}

// Serve forwards the connections l accepts until l fails or the
// Forwarder is closed (then it returns ErrClosed). It closes l.
func (f *Forwarder) Serve(l net.Listener) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	f.listeners[l] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.listeners, l)
		f.mu.Unlock()
		l.Close()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			var te interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !f.track(c, true, true) {
			c.Close()
			return ErrClosed
		}
		go f.forward(c)
	}
}

// track adds c to the connections Close closes (and, if work, a
// goroutine for Close to wait for), or removes it; adding fails once the
// Forwarder is closed.
func (f *Forwarder) track(c net.Conn, add, work bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.closed {
			return false
		}
		f.conns[c] = true
		if work {
			f.wg.Add(1) // under the lock: a Close after this waits for it
		}
	} else {
		delete(f.conns, c)
	}
	return true
}

// Close stops every Serve, closes the connections open (both sides), and
// waits for their goroutines to end.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	f.close()
	for l := range f.listeners {
		l.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// recorder keeps what is read through it, up to max bytes, so that the
// bytes Key read can be forwarded.
type recorder struct {
	r   io.Reader
	buf []byte
	max int
}

var errKeyTooLong = errors.New("ambassador: the key function read more than MaxKeyBytes")

func (r *recorder) Read(p []byte) (int, error) {
	if len(r.buf) >= r.max {
		return 0, errKeyTooLong
	}
	n, err := r.r.Read(p[:min(len(p), r.max-len(r.buf))])
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

// forward serves one client connection.
func (f *Forwarder) forward(c net.Conn) {
	defer f.wg.Done()
	defer f.track(c, false, false)
	defer c.Close()
	if tc, ok := c.(*tls.Conn); ok {
		// Before the backend is dialed: a client that does not shake
		// hands costs nothing more.
		ctx, cancel := context.WithTimeout(f.closing, f.c.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			f.c.Logger.Debug("ambassador: a client's TLS handshake failed", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
			return
		}
	}
	var first []byte
	var key string
	if f.c.Key != nil {
		rec := &recorder{r: c, max: f.c.MaxKeyBytes}
		c.SetReadDeadline(time.Now().Add(f.c.KeyTimeout))
		k, err := f.c.Key(bufio.NewReaderSize(rec, f.c.MaxKeyBytes))
		c.SetReadDeadline(time.Time{})
		if err != nil {
			f.c.Logger.Debug("ambassador: no key from a connection", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
			return
		}
		first, key = rec.buf, k
	}
	b, bc, err := f.dial(key)
	if err != nil {
		f.c.Logger.Debug("ambassador: forwarding a connection failed", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
		return
	}
	defer b.open.Add(-1)
	if !f.track(bc, true, false) {
		bc.Close()
		return
	}
	defer f.track(bc, false, false)
	defer bc.Close()
	if len(first) > 0 {
		if _, err := bc.Write(first); err != nil {
			return
		}
		b.bytesIn.Add(uint64(len(first)))
	}
	var last *atomic.Int64 // when bytes last went either way, if watched
	if idle := f.c.IdleTimeout; idle > 0 {
		last = new(atomic.Int64)
		last.Store(time.Now().UnixNano())
		var over atomic.Bool // the connection is done: the timer must not re-arm
		var t *time.Timer
		t = time.AfterFunc(math.MaxInt64, func() { // not before the Reset below
			if over.Load() {
				return
			}
			if quiet := time.Since(time.Unix(0, last.Load())); quiet < idle {
				t.Reset(idle - quiet)
				return
			}
			c.Close()
			bc.Close()
		})
		t.Reset(idle)
		defer t.Stop()
		defer over.Store(true) // first, so that a callback running now stops
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyConn(bc, c, &b.bytesIn, last)
	}()
	copyConn(c, bc, &b.bytesOut, last)
	<-done
}

// copyConn copies src to dst through a pooled buffer, counting the bytes
// in n as they go (and noting when in last, if not nil), then closes dst's writing side so that the far end
// sees the end of the stream; if that fails, or the copy did, both go.
func copyConn(dst, src net.Conn, n *atomic.Uint64, last *atomic.Int64) {
	bp := bufPool.Get().(*[]byte)
	_, err := io.CopyBuffer(countWriter{dst, n, last}, onlyReader{src}, *bp)
	bufPool.Put(bp)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil && cw.CloseWrite() == nil {
		return
	}
	dst.Close()
	src.Close()
}

// countWriter counts what it writes, and notes when in last, if not nil.
type countWriter struct {
	w    io.Writer
	n    *atomic.Uint64
	last *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	if c.last != nil {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// onlyReader hides a conn's WriteTo, which would not use the pooled
// buffer.
type onlyReader struct{ io.Reader }

// dial picks a backend for a connection with key (or none) and dials it.
// Without a key a failed dial goes to another backend, up to three.
func (f *Forwarder) dial(key string) (*tcpBackend, net.Conn, error) {
	s := f.set.Load()
	if len(s.list) == 0 {
		return nil, nil, ErrNoBackends
	}
	var tried []*tcpBackend
	var lastErr error
	for range min(3, len(s.list)) {
		var b *tcpBackend
		if f.c.Locator != nil {
			node, ok := f.c.Locator.Locate(key)
			if b = s.byName[node]; !ok || b == nil {
				return nil, nil, fmt.Errorf("ambassador: the locator put key %q on %q, which is not a backend", key, node)
			}
		} else {
			b = pickConn(s.list, tried)
		}
		b.open.Add(1)
		c, err := f.dialOne(b)
		if err == nil {
			b.conns.Add(1)
			return b, c, nil
		}
		b.open.Add(-1)
		b.errors.Add(1)
		lastErr = &BackendError{Backend: b.Name, Err: err}
		if f.c.Locator != nil {
			break // the key's backend or none
		}
		tried = append(tried, b)
	}
	return nil, nil, lastErr
}

func (f *Forwarder) dialOne(b *tcpBackend) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(f.closing, f.c.DialTimeout)
	defer cancel()
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	if f.c.TLS != nil {
		return (&tls.Dialer{NetDialer: d, Config: f.c.TLS}).DialContext(ctx, "tcp", b.Addr)
	}
	return d.DialContext(ctx, "tcp", b.Addr)
}

// pickConn picks by power of two choices on open connections, among the
// backends not yet tried if any are left.
func pickConn(list, tried []*tcpBackend) *tcpBackend {
	var left []*tcpBackend
	for _, b := range list {
		if !slices.Contains(tried, b) {
			left = append(left, b)
		}
	}
	if len(left) == 0 {
		left = list
	}
	if len(left) == 1 {
		return left[0]
	}
	i, j := twoOf(len(left))
	if left[j].open.Load() < left[i].open.Load() {
		return left[j]
	}
	return left[i]
}
