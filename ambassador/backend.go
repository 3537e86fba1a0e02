package ambassador

import (
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// BackendConfig describes one backend.
type BackendConfig struct {
	// URL is where requests go: http or https, with a host; a path, if
	// any, is put before each request's own.
	URL string
	// Name names the backend in stats, errors and to policies that route
	// by name; it must be unique. Default: the URL's host.
	Name string
	// Weight is its share for WeightedRoundRobin, 1 to 1000. Default: 1.
	Weight int
}

// MaxWeight bounds BackendConfig.Weight.
const MaxWeight = 1000

// Backend is a backend as the Router keeps it: its configuration and
// what it has measured. Policies read it; its methods are safe for
// concurrent use.
type Backend struct {
	name   string
	url    *url.URL
	weight int

	inFlight atomic.Int64
	requests atomic.Uint64
	errors   atomic.Uint64
	retries  atomic.Uint64
	hedges   atomic.Uint64
	refused  atomic.Uint64 // retries and hedges the budget refused
	ejected  atomic.Uint64
	trips    atomic.Uint64
	removed  atomic.Bool // by SetBackends

	hmu sync.Mutex // guards h
	h   health

	mu     sync.Mutex // guards the latency estimate
	ewma   float64    // peak-EWMA of the time to response headers, ns
	ewmaAt time.Time  // when last updated
}

// Name returns the backend's name.
func (b *Backend) Name() string { return b.name }

// URL returns the backend's URL. Do not change it.
func (b *Backend) URL() *url.URL { return b.url }

// Weight returns the backend's weight.
func (b *Backend) Weight() int { return b.weight }

// InFlight returns the requests sent to the backend and not yet done
// (their response bodies not yet closed).
func (b *Backend) InFlight() int { return int(b.inFlight.Load()) }

// Latency returns the backend's peak-EWMA latency to response headers:
// it jumps up to a slower response at once and decays towards faster
// ones over about ewmaDecay. Zero before the first response.
func (b *Backend) Latency() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Duration(b.ewma)
}

// ewmaDecay is the time constant of the latency estimate, as in
// Finagle's and Linkerd's peak-EWMA balancers.
const ewmaDecay = 10 * time.Second

// observe folds one response time into the latency estimate.
func (b *Backend) observe(now time.Time, rtt time.Duration) {
	x := float64(rtt)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.ewmaAt.IsZero(), x > b.ewma:
		b.ewma = x // a peak counts at once
	default:
		w := math.Exp(-float64(now.Sub(b.ewmaAt)) / float64(ewmaDecay))
		b.ewma = b.ewma*w + x*(1-w)
	}
	b.ewmaAt = now
}

// penalty is the latency a failed request counts as, so that a backend
// that fails fast does not look fast.
const penalty = time.Second

// newBackend checks c and makes its Backend.
func newBackend(i int, c BackendConfig) (*Backend, error) {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return nil, invalid("backend %d: URL %q: %v", i, c.URL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, invalid("backend %d: URL %q: scheme %q, want http or https", i, c.URL, u.Scheme)
	case u.Host == "":
		return nil, invalid("backend %d: URL %q has no host", i, c.URL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, invalid("backend %d: URL %q: want scheme, host and path only", i, c.URL)
	case c.Weight < 0 || c.Weight > MaxWeight:
		return nil, invalid("backend %d (%s): weight %d, want 1 to %d (0 for 1)", i, c.URL, c.Weight, MaxWeight)
	}
	b := &Backend{name: c.Name, url: u, weight: c.Weight}
	if b.name == "" {
		b.name = u.Host
	}
	if b.weight == 0 {
		b.weight = 1
	}
	return b, nil
}

// backendSet is the backends at one time: the Router swaps whole sets,
// so that a request sees one consistent set.
type backendSet struct {
	list   []*Backend
	byName map[string]*Backend
	view   atomic.Pointer[view] // the backends to balance over
	next   atomic.Uint64        // round robin's turn
}

// newBackendSet checks cs and makes their set; old is the set before,
// whose backends (by name and URL) keep their measurements.
func newBackendSet(cs []BackendConfig, old *backendSet) (*backendSet, error) {
	s := &backendSet{byName: make(map[string]*Backend, len(cs))}
	for i, c := range cs {
		b, err := newBackend(i, c)
		if err != nil {
			return nil, err
		}
		if _, dup := s.byName[b.name]; dup {
			return nil, invalid("backend %d: name %q is taken by another", i, b.name)
		}
		if old != nil {
			if o := old.byName[b.name]; o != nil && o.url.String() == b.url.String() && o.weight == b.weight {
				b = o
			}
		}
		s.byName[b.name] = b
		s.list = append(s.list, b)
	}
	if old != nil {
		// Round robin goes on from where it was: started again from 0 on
		// each change, frequent changes would favour the first backends.
		s.next.Store(old.next.Load())
	}
	s.view.Store(makeView(s, time.Now()))
	return s, nil
}
