package ambassador

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/distkit/distkit/internal/budget"
)

// Router is the routing core: its backends, its policy and the transport
// to the backends. Its Transport and Proxy send requests through it. It
// is safe for concurrent use; make one with New.
type Router struct {
	o       options
	set     atomic.Pointer[backendSet]
	mu      sync.Mutex // serializes SetBackends
	ejectMu sync.Mutex // serializes ejections, to keep their cap
	viewMu  sync.Mutex // serializes making and storing views

	closing   context.Context // done when Close is called
	close     context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup // the health checks
}

// New returns a Router over backends (which may be none, for now: see
// SetBackends).
func New(backends []BackendConfig, opts ...Option) (*Router, error) {
	o := options{policy: PeakEWMA(), log: zap.NewNop()}
	for i, opt := range opts {
		if opt == nil {
			return nil, invalid("option %d is nil", i)
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	switch {
	case o.transport != nil && o.tls != nil:
		return nil, invalid("WithTLS and WithTransport: set the TLS config on the transport")
	case o.transport == nil:
		t := defaultTransport()
		t.TLSClientConfig = o.tls
		o.transport = newH1Transport(t)
	}
	if o.budget == nil && (o.retry != nil || o.hedge != nil) {
		o.budget, _ = budget.New(0.2, 10) // Linkerd's default
	}
	r := &Router{o: o}
	if err := r.SetBackends(backends); err != nil {
		return nil, err
	}
	r.closing, r.close = context.WithCancel(context.Background())
	if o.health != nil {
		r.wg.Add(1)
		go r.checkHealth(r.closing)
	}
	return r, nil
}

// Close stops the Router's health checks and shadow copies, and closes
// the idle connections of its transport, if it has a
// CloseIdleConnections method. The Router still routes requests after,
// without health checks (the backends they had taken out are back in)
// or shadowing.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		r.close()
		r.wg.Wait()
		if r.o.shadow != nil {
			r.o.shadow.wait()
		}
		// With no checks to bring them back, backends the checks took
		// out come back now.
		for _, b := range r.set.Load().list {
			b.hmu.Lock()
			b.h.down, b.h.checkRun = false, 0
			b.hmu.Unlock()
		}
		r.remake()
		if c, ok := r.o.transport.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	})
	return nil
}

// SetBackends replaces the backends, all or none: on an error the old
// ones stay. A backend whose name, URL and weight are unchanged keeps its
// measurements; requests in flight finish where they started.
func (r *Router) SetBackends(backends []BackendConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.set.Load()
	s, err := newBackendSet(backends, old)
	if err != nil {
		return err
	}
	r.viewMu.Lock() // a state change meanwhile must reach the new set's view
	s.view.Store(makeView(s, time.Now()))
	r.set.Store(s)
	r.viewMu.Unlock()
	if old == nil {
		return nil
	}
	// Connections kept to addresses no backend has any more would stay
	// open until their idle timeout: they go now, and those in use as
	// their requests end. (A backend whose weight changed keeps its
	// address, and its connections.)
	kept := map[string]bool{}
	for _, b := range s.list {
		kept[hostPort(b.url)] = true
	}
	h, _ := r.o.transport.(*h1Transport)
	for _, b := range old.list {
		addr := hostPort(b.url)
		if kept[addr] {
			continue
		}
		b.removed.Store(true)
		if h != nil {
			h.closeIdleTo(addr)
		}
	}
	return nil
}

// Backends returns the backends now, in the order SetBackends gave them.
func (r *Router) Backends() []*Backend { return append([]*Backend(nil), r.set.Load().list...) }

// BackendStats is what a Router has counted for one backend, and its
// state now.
type BackendStats struct {
	Name     string
	Requests uint64        // tries sent, retries and hedges included
	Errors   uint64        // tries that failed: no answer, or a 5xx
	InFlight int           // sent and not done
	Latency  time.Duration // peak-EWMA to response headers
	Retries  uint64        // tries sent as retries
	Hedges   uint64        // tries sent as hedges
	// BudgetRefusals counts the retries and hedges of requests that had
	// failed or were slow here which the budget did not allow.
	BudgetRefusals uint64
	Ejections      uint64       // times outlier detection took it out
	Ejected        bool         // out now, by outlier detection
	Healthy        bool         // by its health checks (true without them)
	Trips          uint64       // times its breaker opened
	Breaker        BreakerState // now
}

// Stats returns the counts of the backends now, in order.
func (r *Router) Stats() []BackendStats {
	var out []BackendStats
	now := time.Now()
	for _, b := range r.set.Load().list {
		b.hmu.Lock()
		ejected, down, state := now.Before(b.h.ejectedUntil), b.h.down, b.h.state(now)
		b.hmu.Unlock()
		out = append(out, BackendStats{
			Name: b.name, Requests: b.requests.Load(), Errors: b.errors.Load(),
			InFlight: b.InFlight(), Latency: b.Latency(),
			Retries: b.retries.Load(), Hedges: b.hedges.Load(), BudgetRefusals: b.refused.Load(),
			Ejections: b.ejected.Load(), Ejected: ejected, Healthy: !down,
			Trips: b.trips.Load(), Breaker: state,
		})
	}
	return out
}

// send picks a backend for out, an outbound request that send may
// change (its URL), and sends it, with retries and hedges if configured.
// The response body, if any, must be closed: that ends the request's time
// in flight.
func (r *Router) send(out *http.Request) (*http.Response, error) {
	s := r.set.Load()
	if len(s.list) == 0 {
		return nil, ErrNoBackends
	}
	if r.o.shadow != nil {
		r.mirror(out)
	}
	if r.o.retry != nil || r.o.hedge != nil {
		return r.sendAgain(out, s)
	}
	b, probe, err := r.pick(out, s)
	if err != nil {
		return nil, err
	}
	return r.try(out, b, probe, nil, 0)
}

// pick asks the policy for a backend for out that its breaker lets
// through, other than those in avoid (the ones the request was tried at)
// while the policy has others. A backend the breaker refuses is taken
// out of the policy's choice and the policy asked again. probe is the
// breaker opening a half-open probe is for, else 0.
func (r *Router) pick(out *http.Request, s *backendSet, avoid ...*Backend) (b *Backend, probe uint64, err error) {
	if len(s.list) == 0 {
		return nil, 0, ErrNoBackends
	}
	b, probe, err = r.pickFrom(out, s, avoid)
	if errors.Is(err, ErrCircuitOpen) && len(avoid) > 0 {
		// The breakers refuse every backend not tried: a tried one may
		// still take it.
		return r.pickFrom(out, s, nil)
	}
	return b, probe, err
}

func (r *Router) pickFrom(out *http.Request, s *backendSet, avoid []*Backend) (b *Backend, probe uint64, err error) {
	var now time.Time
	v := s.view.Load()
	if !v.expires.IsZero() || r.o.breaker != nil {
		now = time.Now()
		v = r.view(s, now)
	}
	// The latest tried first: when a view of one is left, without keeps
	// it, so the backends tried longest ago are the ones tried again.
	for i := len(avoid) - 1; i >= 0; i-- {
		v = v.without(avoid[i])
	}
	var refused []*Backend
	for {
		b, err := r.o.policy.Pick(out, Backends{s, v})
		if err != nil {
			return nil, 0, err
		}
		if b == nil {
			return nil, 0, errors.New("ambassador: the policy picked no backend")
		}
		if slices.Contains(refused, b) || len(refused) > len(s.list) {
			// The policy has nothing else to offer (Sharded: the key's
			// backend, or the last one in the view).
			return nil, 0, &BackendError{Backend: b.name, Err: ErrCircuitOpen}
		}
		ok, probe := b.allow(now, r.o.breaker)
		if ok {
			return b, probe, nil
		}
		refused = append(refused, b)
		v = v.without(b)
	}
}

// try sends req to b, and counts how it went. cancel, if not nil, is the
// try's own context's, which perTry (if not 0) cancels with ErrTryTimeout
// when response headers are late, and closing the body cancels.
func (r *Router) try(req *http.Request, b *Backend, probe uint64, cancel context.CancelCauseFunc, perTry time.Duration) (*http.Response, error) {
	req.URL = backendURL(b, req.URL)
	b.requests.Add(1)
	b.inFlight.Add(1)
	start := time.Now()
	var clock *tryClock
	if body := req.Body != nil && req.Body != http.NoBody; body || perTry > 0 {
		clock = newTryClock(start, perTry, func() { cancel(ErrTryTimeout) })
		if body {
			req.Body = &clockedBody{ReadCloser: req.Body, c: clock}
			// http.Transport sends the body again itself, from GetBody,
			// when a kept connection turns out closed.
			if getBody := req.GetBody; getBody != nil {
				req.GetBody = func() (io.ReadCloser, error) {
					rc, err := getBody()
					if err != nil {
						return nil, err
					}
					return &clockedBody{ReadCloser: rc, c: clock}, nil
				}
			}
		}
	}
	resp, err := r.o.transport.RoundTrip(req)
	now := time.Now()
	rtt := now.Sub(start)
	if clock != nil {
		var timedOut bool
		now, rtt, timedOut = clock.stop()
		if timedOut && err == nil {
			// Timed out as the headers came: the body would fail as cut.
			resp.Body.Close()
			resp, err = nil, ErrTryTimeout
		}
	}
	if err == nil && !validStatus(req, resp.StatusCode) {
		resp.Body.Close()
		resp, err = nil, fmt.Errorf("%w: %d", errBadStatus, resp.StatusCode)
	}
	if err != nil {
		b.inFlight.Add(-1)
		o := failed
		if errors.Is(context.Cause(req.Context()), ErrTryTimeout) {
			err = ErrTryTimeout
		} else if req.Context().Err() != nil {
			o = neutral // the client's doing, or the try lost a hedge
		}
		if cancel != nil {
			cancel(nil)
		}
		if o == failed {
			b.errors.Add(1)
			b.observe(now, max(rtt, penalty))
		}
		r.record(b, now, o, probe)
		return nil, &BackendError{Backend: b.name, Err: err}
	}
	o := succeeded
	if resp.StatusCode >= 500 {
		// A backend that fails fast must not look fast, or latency-aware
		// policies would send it more.
		o, rtt = failed, max(rtt, penalty)
		b.errors.Add(1)
	}
	b.observe(now, rtt)
	r.record(b, now, o, probe)
	done := &doneBody{ReadCloser: resp.Body, r: r, b: b, cancel: cancel}
	if w, ok := resp.Body.(io.Writer); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = upgradedBody{done, w} // the connection, writable as http.Response promises
	} else {
		resp.Body = done
	}
	return resp, nil
}

// upgradedBody is a 101's body: the connection, both ways.
type upgradedBody struct {
	*doneBody
	io.Writer
}

// errBadStatus is a backend's answer that no client may be given as
// final: a status out of 200–599 (1xx answers come before the final one,
// and the transports skip them), or a 101 to a request that asked for no
// upgrade (after which the connection is no longer HTTP, and a client
// that took it for a tunnel could be walked around a front proxy's
// checks). The Proxy strips Upgrade, so it never asks.
var errBadStatus = errors.New("ambassador: the backend answered with a status it may not")

func validStatus(req *http.Request, code int) bool {
	if code == http.StatusSwitchingProtocols {
		return httpguts.HeaderValuesContainsToken(req.Header["Connection"], "upgrade")
	}
	return code >= 200 && code <= 599
}

// tryClock times a try with a body, or with a timeout: the backend's time,
// which leaves out the time spent waiting for the client's body. A slow
// upload is the client's time; counted, it would time the try out, or
// make the backend look slow to PeakEWMA. A backend that stops reading
// the body is still timed: waiting to write is not waiting for the
// client.
type tryClock struct {
	mu       sync.Mutex
	start    time.Time
	waited   time.Duration // in the client's body, reads ended
	reading  int           // reads of it under way (a rewound body's too)
	readFrom time.Time     // since when one has been
	timer    *time.Timer   // the per-try timeout, if any
	left     time.Duration // its time left
	runFrom  time.Time     // when it last ran on
	fired    bool          // it went off, or is going off
	done     bool
}

func newTryClock(start time.Time, timeout time.Duration, f func()) *tryClock {
	c := &tryClock{start: start}
	if timeout > 0 {
		c.left, c.runFrom = timeout, start
		c.timer = time.AfterFunc(timeout, f)
	}
	return c
}

// pause stops the clock while the client's body is read.
func (c *tryClock) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading++; c.reading > 1 {
		return
	}
	now := time.Now()
	c.readFrom = now
	if c.done || c.timer == nil || c.fired {
		return
	}
	if !c.timer.Stop() {
		c.fired = true
		return
	}
	c.left -= now.Sub(c.runFrom)
}

// resume runs the clock on after a read of the client's body.
func (c *tryClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading--; c.reading > 0 {
		return
	}
	now := time.Now()
	if !c.done {
		c.waited += now.Sub(c.readFrom)
	}
	if c.done || c.timer == nil || c.fired {
		return
	}
	c.runFrom = now
	c.timer.Reset(max(c.left, 0))
}

// stop ends the clock, at the try's answer: it returns the time, the
// backend's share of the try's, and whether the timeout went off.
func (c *tryClock) stop() (now time.Time, took time.Duration, fired bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now = time.Now() // under the lock, so that no read ends after it
	c.done = true
	if c.reading > 0 {
		c.waited += now.Sub(c.readFrom) // paused: the timer is stopped
	} else if c.timer != nil && !c.fired && !c.timer.Stop() {
		c.fired = true
	}
	return now, max(now.Sub(c.start)-c.waited, 0), c.fired
}

// clockedBody is a request body whose reads pause its try's clock.
type clockedBody struct {
	io.ReadCloser
	c *tryClock
}

func (b *clockedBody) Read(p []byte) (int, error) {
	b.c.pause()
	defer b.c.resume()
	return b.ReadCloser.Read(p)
}

// backendURL returns u with b's scheme and host, and b's path before
// its own, joined by one slash. The paths are joined escaped, so that a
// %2F at either's end is not taken for the joining slash.
func backendURL(b *Backend, u *url.URL) *url.URL {
	out := *u
	out.Scheme, out.Host = b.url.Scheme, b.url.Host
	if b.url.Path != "" && b.url.Path != "/" {
		raw := strings.TrimSuffix(b.url.EscapedPath(), "/") + "/" + strings.TrimPrefix(u.EscapedPath(), "/")
		out.Path, _ = url.PathUnescape(raw) // cannot fail: both halves are url's own escaping
		out.RawPath = ""
		if b.url.RawPath != "" || u.RawPath != "" {
			out.RawPath = raw
		}
	}
	return &out
}

// doneBody ends its request's time in flight when closed.
type doneBody struct {
	io.ReadCloser
	r      *Router
	b      *Backend
	cancel context.CancelCauseFunc // the try's context's, if it has one
	once   atomic.Bool
}

func (d *doneBody) Close() error {
	err := d.ReadCloser.Close()
	if d.once.CompareAndSwap(false, true) {
		d.b.inFlight.Add(-1)
		if d.cancel != nil {
			d.cancel(nil)
		}
		if d.b.removed.Load() {
			// The connection, if http.Transport's, went back to its pool
			// just now, after SetBackends closed that pool's idle ones.
			if h, ok := d.r.o.transport.(*h1Transport); ok {
				h.next.CloseIdleConnections()
			}
		}
	}
	return err
}

// Transport returns the Router as an http.RoundTripper, for an
// http.Client: each request goes to the backend its policy picks, with
// the request's scheme and host replaced by the backend's. Errors are a
// *BackendError, ErrNoBackends, or ErrInvalid for a request that cannot
// be written: a method, header field name or value that could break a
// line, as http.Transport also refuses.
func (r *Router) Transport() http.RoundTripper { return transport{r} }

type transport struct{ r *Router }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, invalid("request without a URL")
	}
	if err := checkFields(req); err != nil {
		closeBody(req)
		return nil, err
	}
	out := new(http.Request)
	*out = *req // a RoundTripper must not change the request it is given
	resp, err := t.r.send(out)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return resp, nil
}

// checkFields refuses what http.Transport refuses before it writes a
// request: a method or field name that is not a token, or a field value
// with a control character. Written as they are, a line break in any of
// them would start a header, or a whole request, of its own. (The Proxy's
// requests need no check: net/http's server refuses the same on reading.)
func checkFields(req *http.Request) error {
	if req.Method != "" && !validMethod(req.Method) {
		return invalid("method %q", req.Method)
	}
	if len(req.TransferEncoding) > 1 || len(req.TransferEncoding) == 1 && req.TransferEncoding[0] != "chunked" {
		// Written as given, "identity" with no length sends the body
		// unframed, and the backend reads it as the next request.
		return invalid("transfer encoding %q: only chunked is sent", req.TransferEncoding)
	}
	for _, h := range [...]http.Header{req.Header, req.Trailer} {
		for k, vs := range h {
			if !httpguts.ValidHeaderFieldName(k) {
				return invalid("header field name %q", k)
			}
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					return invalid("value of header field %q", k)
				}
			}
		}
	}
	return nil
}

// validMethod reports whether m is a token, as RFC 9110 has methods.
func validMethod(m string) bool {
	return strings.IndexFunc(m, func(c rune) bool { return !httpguts.IsTokenRune(c) }) < 0
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}
