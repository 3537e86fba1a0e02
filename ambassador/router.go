package ambassador

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Router is the routing core: its backends, its policy and the transport
// to the backends. Its Transport and Proxy send requests through it. It
// is safe for concurrent use; make one with New.
type Router struct {
	o   options
	set atomic.Pointer[backendSet]
	mu  sync.Mutex // serializes SetBackends
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
	if o.transport == nil {
		o.transport = newH1Transport(defaultTransport())
	}
	r := &Router{o: o}
	if err := r.SetBackends(backends); err != nil {
		return nil, err
	}
	return r, nil
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
	r.set.Store(s)
	// Connections kept to backends that are gone would stay open forever.
	if h, ok := r.o.transport.(*h1Transport); ok && old != nil {
		kept := map[string]bool{}
		for _, b := range s.list {
			kept[hostPort(b.url)] = true
		}
		for _, b := range old.list {
			if addr := hostPort(b.url); !kept[addr] {
				h.closeIdleTo(addr)
			}
		}
	}
	return nil
}

// Backends returns the backends now, in the order SetBackends gave them.
func (r *Router) Backends() []*Backend { return append([]*Backend(nil), r.set.Load().list...) }

// BackendStats is what a Router has counted for one backend.
type BackendStats struct {
	Name     string
	Requests uint64        // sent
	Errors   uint64        // failed before response headers came
	InFlight int           // sent and not done
	Latency  time.Duration // peak-EWMA to response headers
}

// Stats returns the counts of the backends now, in order.
func (r *Router) Stats() []BackendStats {
	var out []BackendStats
	for _, b := range r.set.Load().list {
		out = append(out, BackendStats{Name: b.name, Requests: b.requests.Load(), Errors: b.errors.Load(), InFlight: b.InFlight(), Latency: b.Latency()})
	}
	return out
}

// send picks a backend for out, an outbound request that send may
// change (its URL), and sends it. The response body, if any, must be
// closed: that ends the request's time in flight.
func (r *Router) send(out *http.Request) (*http.Response, error) {
	s := r.set.Load()
	if len(s.list) == 0 {
		return nil, ErrNoBackends
	}
	b, err := r.o.policy.Pick(out, Backends{s})
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("ambassador: the policy picked no backend")
	}
	u := *out.URL
	u.Scheme, u.Host = b.url.Scheme, b.url.Host
	if b.url.Path != "" && b.url.Path != "/" {
		u.Path = strings.TrimSuffix(b.url.Path, "/") + "/" + strings.TrimPrefix(out.URL.Path, "/")
		if out.URL.RawPath != "" {
			u.RawPath = strings.TrimSuffix(b.url.EscapedPath(), "/") + "/" + strings.TrimPrefix(out.URL.RawPath, "/")
		}
	}
	out.URL = &u
	b.requests.Add(1)
	b.inFlight.Add(1)
	start := time.Now()
	resp, err := r.o.transport.RoundTrip(out)
	now := time.Now()
	if err != nil {
		b.inFlight.Add(-1)
		if out.Context().Err() == nil { // not the client's doing
			b.errors.Add(1)
			b.observe(now, max(now.Sub(start), penalty))
		}
		return nil, &BackendError{Backend: b.name, Err: err}
	}
	b.observe(now, now.Sub(start))
	resp.Body = &doneBody{ReadCloser: resp.Body, b: b}
	return resp, nil
}

// doneBody ends its request's time in flight when closed.
type doneBody struct {
	io.ReadCloser
	b    *Backend
	once atomic.Bool
}

func (d *doneBody) Close() error {
	if d.once.CompareAndSwap(false, true) {
		d.b.inFlight.Add(-1)
	}
	return d.ReadCloser.Close()
}

// Transport returns the Router as an http.RoundTripper, for an
// http.Client: each request goes to the backend its policy picks, with
// the request's scheme and host replaced by the backend's. Errors are a
// *BackendError or ErrNoBackends.
func (r *Router) Transport() http.RoundTripper { return transport{r} }

type transport struct{ r *Router }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, invalid("request without a URL")
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

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}
