package ambassador

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Transport sends plain-HTTP requests without a body over pooled
// HTTP/1.1 connections in the caller's goroutine, and anything else
// through next. It does what http.Transport does for a proxy, without the
// two goroutines per connection that http.Transport hands each request
// between: on one core those hand-offs cost more than the proxying
// itself. A request with a body needs them: the backend may answer (a
// 413, say) and stop reading before the body is all sent, and only a
// reader beside the writer sees that answer.
type h1Transport struct {
	next          *http.Transport // https, and whatever h1Transport does not do
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxIdle       int
	maxHead       int64 // bytes a response's head may take, with the 1xx heads before it

	mu       sync.Mutex
	pools    map[string]*h1Pool // by host:port
	sweep    *time.Timer        // closes connections idle too long
	sweeping bool               // sweep is armed
}

// h1Pool holds the idle connections to one address. Connections in use
// point to their pool, so that when the address's backend is removed
// they are closed after their requests, not kept. A pool with none idle
// and none in use is dropped by the sweep, and made again when needed.
type h1Pool struct {
	addr  string
	idle  []*h1Conn // most recent last
	inUse int       // connections out on requests, or being dialed
	gone  bool      // the address's backend was removed: keep nothing for it
}

type h1Conn struct {
	c      net.Conn
	lc     *limitedConn // under br: a hostile head cannot take unbounded memory
	br     *bufio.Reader
	bw     *bufio.Writer
	pool   *h1Pool   // where it goes back to
	idleAt time.Time // when it was last put back
}

func newH1Transport(next *http.Transport) *h1Transport {
	return &h1Transport{
		next:          next,
		dial:          next.DialContext,
		headerTimeout: next.ResponseHeaderTimeout,
		idleTimeout:   next.IdleConnTimeout,
		maxIdle:       next.MaxIdleConnsPerHost,
		maxHead:       cmp.Or(next.MaxResponseHeaderBytes, 10<<20), // http.Transport's default
		pools:         make(map[string]*h1Pool),
	}
}

var (
	errHeadTooLarge  = errors.New("ambassador: response head too large")
	errUnaskedSwitch = errors.New("ambassador: 101 Switching Protocols to a request that asked for no upgrade")
)

// limitedConn reads from a connection, refusing to read more than left
// bytes while a response head is read (left < 0: no limit).
type limitedConn struct {
	net.Conn
	left int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.Conn.Read(p)
	}
	if l.left == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.Conn.Read(p)
	l.left -= int64(n)
	return n, err
}

// closeIdleTo closes the connections to addr kept for reuse, and those
// in use when their requests end: its backend is gone. (A request that
// picked the backend before its removal but dials after it makes a new
// pool, which keeps its connection until the sweep.) next's idle
// connections, of requests with bodies and of https, all go, since it
// cannot close one address's; the Router closes them again as requests
// in flight to a removed backend end (see doneBody).
func (t *h1Transport) closeIdleTo(addr string) {
	t.mu.Lock()
	var idle []*h1Conn
	if p := t.pools[addr]; p != nil {
		idle, p.idle, p.gone = p.idle, nil, true
		delete(t.pools, addr)
	}
	t.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
	t.next.CloseIdleConnections()
}

// pool returns addr's pool, made if there is none. t.mu is held.
func (t *h1Transport) pool(addr string) *h1Pool {
	p := t.pools[addr]
	if p == nil {
		p = &h1Pool{addr: addr}
		t.pools[addr] = p
	}
	return p
}

// CloseIdleConnections closes the connections kept for reuse.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	var idle []*h1Conn
	for _, p := range t.pools {
		idle = append(idle, p.idle...)
		p.idle = nil
	}
	if t.sweeping {
		t.sweep.Stop()
		t.sweeping = false
	}
	t.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
	t.next.CloseIdleConnections()
}

// sweepIdle closes the connections idle for idleTimeout, and arms itself
// again while any are kept. (get also checks, but a connection under
// others in the stack may not be asked for again for a long time.)
func (t *h1Transport) sweepIdle() {
	t.mu.Lock()
	now := time.Now()
	var old []*h1Conn
	var next time.Time // when the oldest connection kept turns idle too long
	for addr, p := range t.pools {
		i := 0
		for i < len(p.idle) && now.Sub(p.idle[i].idleAt) >= t.idleTimeout {
			i++
		}
		old = append(old, p.idle[:i]...)
		p.idle = slices.Delete(p.idle, 0, i)
		if len(p.idle) == 0 {
			if p.inUse == 0 {
				delete(t.pools, addr) // made again when needed: addresses come and go
			}
			continue
		}
		if next.IsZero() || p.idle[0].idleAt.Before(next) {
			next = p.idle[0].idleAt
		}
	}
	t.sweeping = !next.IsZero()
	if t.sweeping {
		t.sweep.Reset(next.Add(t.idleTimeout).Sub(now))
	}
	t.mu.Unlock()
	for _, pc := range old {
		pc.c.Close()
	}
}

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "" ||
		(req.Body != nil && req.Body != http.NoBody) {
		return t.next.RoundTrip(req)
	}
	addr := hostPort(req.URL)
	// The request may go again on a fresh connection if a reused one
	// turns out to have been closed by the backend meanwhile.
	replayable := idempotent(req)
	for try := 0; ; try++ {
		pc, reused, err := t.get(req.Context(), addr, try > 0)
		if err != nil {
			return nil, err
		}
		resp, answered, err := t.send(pc, req)
		if err == nil {
			return resp, nil
		}
		t.release(pc, false)
		var ne net.Error
		if try == 0 && reused && replayable && !answered && req.Context().Err() == nil && !(errors.As(err, &ne) && ne.Timeout()) {
			continue
		}
		return nil, err
	}
}

// get returns an idle connection to addr, or dials one.
func (t *h1Transport) get(ctx context.Context, addr string, fresh bool) (pc *h1Conn, reused bool, err error) {
	// The pool is taken before the dial: if the backend is removed during
	// it, the connection is closed after its request, not kept.
	t.mu.Lock()
	p := t.pool(addr)
	p.inUse++ // the sweep keeps the pool, and closeIdleTo marks it, while the connection is out
	for !fresh && len(p.idle) > 0 {
		pc = p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		t.mu.Unlock()
		if (t.idleTimeout <= 0 || time.Since(pc.idleAt) < t.idleTimeout) && quiet(pc.c) {
			return pc, true, nil
		}
		pc.c.Close() // idle too long, closed by the backend, or bytes no request asked for
		t.mu.Lock()
	}
	t.mu.Unlock()
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		t.mu.Lock()
		p.inUse--
		t.mu.Unlock()
		return nil, false, err
	}
	lc := &limitedConn{Conn: c, left: -1}
	return &h1Conn{c: c, lc: lc, br: bufio.NewReaderSize(lc, 4<<10), bw: bufio.NewWriterSize(c, 4<<10), pool: p}, false, nil
}

// release ends pc's use: it keeps pc for reuse if keep, there is room,
// and its backend is not gone, and else closes it.
func (t *h1Transport) release(pc *h1Conn, keep bool) {
	pc.idleAt = time.Now()
	t.mu.Lock()
	p := pc.pool
	p.inUse--
	if keep && !p.gone && len(p.idle) < t.maxIdle {
		p.idle = append(p.idle, pc)
		if !t.sweeping && t.idleTimeout > 0 {
			t.sweeping = true
			if t.sweep == nil {
				t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
			} else {
				t.sweep.Reset(t.idleTimeout)
			}
		}
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.c.Close()
}

func hostPort(u *url.URL) string {
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// idempotent reports whether req may be sent twice to the same effect:
// its method is idempotent by RFC 9110, or it carries an idempotency key.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// aLongTimeAgo is a deadline that has passed: setting it stops a read or
// write at once.
var aLongTimeAgo = time.Unix(1, 0)

// send writes req on pc and reads the response headers. answered reports
// whether any of the response came back (after which the request must
// not be sent again).
func (t *h1Transport) send(pc *h1Conn, req *http.Request) (resp *http.Response, answered bool, err error) {
	stop := context.AfterFunc(req.Context(), func() { pc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, bool, error) {
		pc.lc.left = -1 // the connection is closed, but no limit outlives a head
		stop()
		if cerr := req.Context().Err(); cerr != nil {
			err = cerr
		}
		return nil, answered, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	if t.headerTimeout > 0 {
		pc.c.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	// The head, and the 1xx heads before it, may take maxHead bytes in
	// all, as in http.Transport; the body that follows has no limit.
	pc.lc.left = max(t.maxHead-int64(pc.br.Buffered()), 0)
	for {
		_, err := pc.br.Peek(1)
		if err != nil {
			return fail(err) // nothing came back: the request may go again
		}
		answered = true
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil && pc.lc.left == 0 {
			err = errHeadTooLarge // whatever the cut-off line looked like
		}
		if err != nil {
			return fail(err)
		}
		// 1xx answers other than 101 come before the real one.
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	pc.lc.left = -1
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Requests that ask for an upgrade go to next: this one did not,
		// and what follows on the connection is no longer HTTP.
		resp.Body.Close()
		return fail(errUnaskedSwitch)
	}
	if t.headerTimeout > 0 {
		pc.c.SetReadDeadline(time.Time{})
		// A cancel that set its past deadline before this cleared it
		// would otherwise be lost: the context's Err is set before
		// its AfterFunc runs.
		if req.Context().Err() != nil {
			return fail(req.Context().Err()) // the caller closes the connection
		}
	}
	// A response with no body (HEAD, 204, 304, a length of 0) is at its
	// end already: closed unread, it gives its connection back.
	keep := !resp.Close && !req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	resp.Body = &h1Body{rc: resp.Body, t: t, pc: pc, stop: stop, keep: keep, eof: resp.Body == http.NoBody}
	return resp, true, nil
}

// h1Body is a response body that gives its connection back for reuse
// once read to the end, and closes it if closed before.
type h1Body struct {
	mu   sync.Mutex
	rc   io.ReadCloser
	t    *h1Transport
	pc   *h1Conn
	stop func() bool
	keep bool // the connection may be reused, if the body is read through
	eof  bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done {
		return 0, errors.New("ambassador: read of a closed response body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.mu.Lock()
		b.eof = true
		b.mu.Unlock()
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return nil
	}
	b.done = true
	eof := b.eof
	b.mu.Unlock()
	if !eof || b.pc.br.Buffered() > 0 {
		// Closed before the end: the connection goes, and first, for
		// closing the body itself would read the rest of it.
		b.stop()
		b.t.release(b.pc, false)
		b.rc.Close()
		return nil
	}
	err := b.rc.Close()
	// The context's watch ends first: once stopped, it cannot break the
	// connection under its next request.
	b.t.release(b.pc, b.stop() && b.keep && err == nil)
	return err
}
