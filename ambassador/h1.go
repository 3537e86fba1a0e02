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
	"sync"
	"time"
)

// h1Transport sends plain-HTTP requests over pooled HTTP/1.1 connections
// in the caller's goroutine, and anything else through next. It does what
// http.Transport does for a proxy, without the two goroutines per
// connection that http.Transport hands each request between: on one core
// those hand-offs cost more than the proxying itself.
type h1Transport struct {
	next          *http.Transport // https, and whatever h1Transport does not do
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxIdle       int
	maxHead       int64 // bytes a response's head may take, 1xx heads each

	mu   sync.Mutex
	idle map[string][]*h1Conn // by host:port, most recent last
}

type h1Conn struct {
	c      net.Conn
	lc     *limitedConn // under br: a hostile head cannot take unbounded memory
	br     *bufio.Reader
	bw     *bufio.Writer
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
		idle:          make(map[string][]*h1Conn),
	}
}

// max1xx is how many informational answers may come before the real one,
// as http.Transport allows.
const max1xx = 5

var (
	errHeadTooLarge = errors.New("ambassador: response head too large")
	errTooMany1xx   = errors.New("ambassador: too many 1xx responses")
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

// closeIdleTo closes the connections to addr kept for reuse: its backend
// is gone.
func (t *h1Transport) closeIdleTo(addr string) {
	t.mu.Lock()
	cs := t.idle[addr]
	delete(t.idle, addr)
	t.mu.Unlock()
	for _, pc := range cs {
		pc.c.Close()
	}
}

// CloseIdleConnections closes the connections kept for reuse.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*h1Conn)
	t.mu.Unlock()
	for _, cs := range idle {
		for _, pc := range cs {
			pc.c.Close()
		}
	}
	t.next.CloseIdleConnections()
}

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "" {
		return t.next.RoundTrip(req)
	}
	addr := hostPort(req.URL)
	// A request with no body may go again on a fresh connection if a
	// reused one turns out to have been closed by the backend meanwhile.
	replayable := (req.Body == nil || req.Body == http.NoBody) && idempotent(req)
	for try := 0; ; try++ {
		pc, reused, err := t.get(req.Context(), addr, try > 0)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		resp, answered, err := t.send(pc, req, addr)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		var ne net.Error
		if try == 0 && reused && replayable && !answered && req.Context().Err() == nil && !(errors.As(err, &ne) && ne.Timeout()) {
			continue
		}
		return nil, err
	}
}

// get returns an idle connection to addr, or dials one.
func (t *h1Transport) get(ctx context.Context, addr string, fresh bool) (pc *h1Conn, reused bool, err error) {
	for !fresh {
		t.mu.Lock()
		if cs := t.idle[addr]; len(cs) > 0 {
			pc = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			t.idle[addr] = cs[:len(cs)-1]
		}
		t.mu.Unlock()
		if pc == nil {
			break
		}
		if (t.idleTimeout <= 0 || time.Since(pc.idleAt) < t.idleTimeout) && quiet(pc.c) {
			return pc, true, nil
		}
		pc.c.Close() // idle too long, closed by the backend, or bytes no request asked for
		pc = nil
	}
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	lc := &limitedConn{Conn: c, left: -1}
	return &h1Conn{c: c, lc: lc, br: bufio.NewReaderSize(lc, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

// put keeps pc for reuse, or closes it if enough are kept.
func (t *h1Transport) put(addr string, pc *h1Conn) {
	pc.idleAt = time.Now()
	t.mu.Lock()
	if cs := t.idle[addr]; len(cs) < t.maxIdle {
		t.idle[addr] = append(cs, pc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.c.Close()
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
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

// send writes req on pc, a connection to addr, and reads the response
// headers. answered reports whether any of the response came back (after
// which the request must not be sent again).
func (t *h1Transport) send(pc *h1Conn, req *http.Request, addr string) (resp *http.Response, answered bool, err error) {
	stop := context.AfterFunc(req.Context(), func() { pc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, bool, error) {
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
	for n1xx := 0; ; n1xx++ {
		// Each head may take maxHead bytes, counted from what the buffer
		// still holds; the body that follows has no limit.
		pc.lc.left = max(t.maxHead-int64(pc.br.Buffered()), 0)
		_, err := pc.br.Peek(1)
		if err != nil {
			pc.lc.left = -1
			return fail(err) // nothing came back: the request may go again
		}
		answered = true
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil && pc.lc.left == 0 {
			err = errHeadTooLarge // whatever the cut-off line looked like
		}
		pc.lc.left = -1
		if err != nil {
			return fail(err)
		}
		// 1xx answers other than 101 come before the real one.
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n1xx == max1xx {
			return fail(errTooMany1xx)
		}
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
	resp.Body = &h1Body{rc: resp.Body, t: t, pc: pc, addr: addr, stop: stop, keep: !resp.Close && !req.Close, eof: resp.Body == http.NoBody}
	return resp, true, nil
}

// h1Body is a response body that gives its connection back for reuse
// once read to the end, and closes it if closed before.
type h1Body struct {
	mu   sync.Mutex
	rc   io.ReadCloser
	t    *h1Transport
	pc   *h1Conn
	addr string
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
		b.pc.c.Close()
		b.rc.Close()
		return nil
	}
	err := b.rc.Close()
	// The context's watch ends first: once stopped, it cannot break the
	// connection under its next request.
	if b.stop() && b.keep && err == nil {
		b.t.put(b.addr, b.pc)
		return nil
	}
	b.pc.c.Close()
	return err
}
