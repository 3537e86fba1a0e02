package ambassador

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// OutlierDetection takes backends that fail out of balancing for a while
// (passive health checking, as Envoy's outlier detection does). A failure
// is a request the backend did not answer (refused, reset, timed out) or
// answered with a 5xx status. Zero fields take the defaults. Policies that
// route by key (Sharded) still send to an ejected backend: its keys have
// nowhere else to go; use a Breaker to fail them fast.
type OutlierDetection struct {
	// ConsecutiveFailures ejects a backend after this many failures in a
	// row. Default 5; -1 turns it off.
	ConsecutiveFailures int
	// FailureRate ejects a backend whose share of failed requests over
	// Window reaches it, once it has had MinRequests. Default 0.5; -1
	// turns it off.
	FailureRate float64
	MinRequests int           // default 20
	Window      time.Duration // default 10 s
	// BaseEjection is how long an ejection lasts. Each one that comes
	// within MaxEjection of the end of the last lasts one BaseEjection
	// longer, up to MaxEjection: a backend that keeps failing stays out
	// longer. Defaults: 30 s and 5 min.
	BaseEjection, MaxEjection time.Duration
	// MaxEjectedPercent caps the backends out at once, as a percentage of
	// them all, so that a bad spell everywhere cannot empty the pool; one
	// backend may always be ejected. Default 10.
	MaxEjectedPercent int
}

func (c *OutlierDetection) check() error {
	def(&c.ConsecutiveFailures, 5)
	def(&c.FailureRate, 0.5)
	def(&c.MinRequests, 20)
	def(&c.Window, 10*time.Second)
	def(&c.BaseEjection, 30*time.Second)
	def(&c.MaxEjection, 5*time.Minute)
	def(&c.MaxEjectedPercent, 10)
	switch {
	case c.ConsecutiveFailures < -1:
		return invalid("OutlierDetection.ConsecutiveFailures %d: want 1 or more, or -1 for off", c.ConsecutiveFailures)
	case c.FailureRate != -1 && !(c.FailureRate > 0 && c.FailureRate <= 1):
		return invalid("OutlierDetection.FailureRate %v: want more than 0 and at most 1, or -1 for off", c.FailureRate)
	case c.MinRequests < 1:
		return invalid("OutlierDetection.MinRequests %d: want 1 or more", c.MinRequests)
	case c.Window < windowSlots*time.Millisecond:
		return invalid("OutlierDetection.Window %v: want %v or more", c.Window, windowSlots*time.Millisecond)
	case c.BaseEjection < 0 || c.MaxEjection < c.BaseEjection:
		return invalid("OutlierDetection: BaseEjection %v and MaxEjection %v (zero takes 30s and 5m): want 0 < base <= max", c.BaseEjection, c.MaxEjection)
	case c.MaxEjectedPercent < 0 || c.MaxEjectedPercent > 100:
		return invalid("OutlierDetection.MaxEjectedPercent %d: want 0 to 100", c.MaxEjectedPercent)
	}
	return nil
}

// Breaker is a circuit breaker per backend: when the share of failed
// requests (as OutlierDetection counts them) over Window reaches
// FailureRate, after at least MinRequests, it opens, and requests picked
// for the backend fail at once with ErrCircuitOpen (a 503 from the Proxy)
// or, under a balancing policy, go to another backend. After OpenFor it
// lets HalfOpenProbes requests through at once: as many successes close
// it, one failure opens it again. Zero fields take the defaults.
type Breaker struct {
	FailureRate    float64       // default 0.5
	MinRequests    int           // default 20
	Window         time.Duration // default 10 s
	OpenFor        time.Duration // default 5 s
	HalfOpenProbes int           // default 1
}

func (c *Breaker) check() error {
	def(&c.FailureRate, 0.5)
	def(&c.MinRequests, 20)
	def(&c.Window, 10*time.Second)
	def(&c.OpenFor, 5*time.Second)
	def(&c.HalfOpenProbes, 1)
	switch {
	case !(c.FailureRate > 0 && c.FailureRate <= 1):
		return invalid("Breaker.FailureRate %v: want more than 0 and at most 1", c.FailureRate)
	case c.MinRequests < 1:
		return invalid("Breaker.MinRequests %d: want 1 or more", c.MinRequests)
	case c.Window < windowSlots*time.Millisecond:
		return invalid("Breaker.Window %v: want %v or more", c.Window, windowSlots*time.Millisecond)
	case c.OpenFor <= 0:
		return invalid("Breaker.OpenFor %v: want more than 0", c.OpenFor)
	case c.HalfOpenProbes < 1:
		return invalid("Breaker.HalfOpenProbes %d: want 1 or more", c.HalfOpenProbes)
	}
	return nil
}

// ErrCircuitOpen is a request not sent because its backend's breaker is
// open, or half open with its probes out. It comes inside a
// *BackendError; the Proxy answers 503.
var ErrCircuitOpen = errors.New("ambassador: circuit open")

// HealthCheck asks each backend for Path every Interval (active health
// checking): after Unhealthy failed checks in a row the backend is out
// of balancing, after Healthy passed ones it is back. A check passes on
// a 2xx answer within Timeout. Backends start healthy. Zero fields take
// the defaults.
type HealthCheck struct {
	Path      string        // default "/healthz"
	Interval  time.Duration // default 5 s
	Timeout   time.Duration // default 2 s, and at most Interval
	Unhealthy int           // default 2
	Healthy   int           // default 2
}

func (c *HealthCheck) check() error {
	def(&c.Path, "/healthz")
	def(&c.Interval, 5*time.Second)
	def(&c.Timeout, min(2*time.Second, c.Interval))
	def(&c.Unhealthy, 2)
	def(&c.Healthy, 2)
	u, err := url.Parse(c.Path)
	switch {
	case err != nil || u.Scheme != "" || u.Host != "" || len(c.Path) == 0 || c.Path[0] != '/':
		return invalid("HealthCheck.Path %q: want an absolute path", c.Path)
	case c.Interval < time.Millisecond:
		return invalid("HealthCheck.Interval %v: want 1ms or more", c.Interval)
	case c.Timeout <= 0 || c.Timeout > c.Interval:
		return invalid("HealthCheck.Timeout %v: want more than 0 and at most the interval %v", c.Timeout, c.Interval)
	case c.Unhealthy < 1 || c.Healthy < 1:
		return invalid("HealthCheck: Unhealthy %d and Healthy %d: want 1 or more", c.Unhealthy, c.Healthy)
	}
	return nil
}

// def sets *p to d if it is the zero value.
func def[T comparable](p *T, d T) {
	var zero T
	if *p == zero {
		*p = d
	}
}

// windowSlots is how many slots a window has: it forgets a slot's worth
// of outcomes at a time.
const windowSlots = 10

// window counts outcomes over a sliding span of windowSlots slots.
type window struct {
	width time.Duration // of a slot
	slots [windowSlots]struct {
		at        int64 // the slot's number, now / width
		n, failed int
	}
}

func (w *window) add(now time.Time, failed bool) {
	at := now.UnixNano() / int64(w.width)
	s := &w.slots[at%windowSlots]
	if s.at != at {
		s.at, s.n, s.failed = at, 0, 0
	}
	s.n++
	if failed {
		s.failed++
	}
}

// counts returns the outcomes in the window ending now.
func (w *window) counts(now time.Time) (n, failed int) {
	at := now.UnixNano() / int64(w.width)
	for _, s := range w.slots {
		if at-s.at < windowSlots {
			n += s.n
			failed += s.failed
		}
	}
	return n, failed
}

func (w *window) reset() { clear(w.slots[:]) }

// outcome is how a try ended, as health counts it.
type outcome int8

const (
	succeeded outcome = iota
	failed
	neutral // the client went, or the try lost a hedge: says nothing of the backend
)

// health is a backend's state as outlier detection, the breaker and
// health checks see it. Guarded by Backend.hmu.
type health struct {
	consecutive  int
	owin         window    // outlier detection's outcomes
	ejectedUntil time.Time // out of balancing until then
	ejections    int       // in a row, for the backoff
	down         bool      // by health checks
	checkRun     int       // > 0: passed checks in a row; < 0: failed ones

	bwin      window // the breaker's outcomes
	open      bool   // open, or half open once openUntil has passed
	openUntil time.Time
	gen       uint64 // counts the times the breaker opened: probes carry it
	probes    int    // this opening's half-open probes in flight
	probeOK   int    // this opening's half-open probes that succeeded
}

// BreakerState is a backend's circuit breaker state.
type BreakerState int8

// The states of a Breaker.
const (
	Closed BreakerState = iota
	Open
	HalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "closed"
}

// state returns b's breaker state at now. Called with b.hmu held.
func (h *health) state(now time.Time) BreakerState {
	switch {
	case !h.open:
		return Closed
	case now.Before(h.openUntil):
		return Open
	}
	return HalfOpen
}

// excluded reports whether b is out of balancing at now, and until when
// (zero for no set end).
func (b *Backend) excluded(now time.Time) (bool, time.Time) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	h := &b.h
	switch {
	case h.down:
		return true, time.Time{}
	case now.Before(h.ejectedUntil):
		return true, h.ejectedUntil
	case h.open && now.Before(h.openUntil):
		return true, h.openUntil
	}
	return false, time.Time{}
}

// allow reports whether b's breaker lets a request through at now, and
// if it goes as a half-open probe, the opening it probes (else 0), for
// record or release.
func (b *Backend) allow(now time.Time, br *Breaker) (ok bool, probe uint64) {
	if br == nil {
		return true, 0
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	switch b.h.state(now) {
	case Closed:
		return true, 0
	case Open:
		return false, 0
	}
	if b.h.probes >= br.HalfOpenProbes {
		return false, 0
	}
	b.h.probes++
	return true, b.h.gen
}

// current reports whether probe is one of the breaker's half-open probes
// now: a probe of an earlier opening, or one still out when the breaker
// closed, is not. Called with b.hmu held.
func (h *health) current(probe uint64) bool { return probe != 0 && probe == h.gen && h.open }

// release gives back a half-open probe that was not sent.
func (b *Backend) release(probe uint64) {
	b.hmu.Lock()
	if b.h.current(probe) {
		b.h.probes--
	}
	b.hmu.Unlock()
}

// record counts a try's outcome towards b's ejection and breaker, and
// ejects b or trips its breaker if it should.
func (r *Router) record(b *Backend, now time.Time, o outcome, probe uint64) {
	od, br := r.o.outlier, r.o.breaker
	if od == nil && br == nil {
		return
	}
	b.hmu.Lock()
	h := &b.h
	changed, eject := false, false
	if o != neutral && od != nil && !now.Before(h.ejectedUntil) {
		if o == failed {
			h.consecutive++
		} else {
			h.consecutive = 0
		}
		if h.owin.width == 0 {
			h.owin.width = od.Window / windowSlots
		}
		h.owin.add(now, o == failed)
		n, f := h.owin.counts(now)
		eject = od.ConsecutiveFailures > 0 && h.consecutive >= od.ConsecutiveFailures ||
			od.FailureRate > 0 && n >= od.MinRequests && float64(f) >= od.FailureRate*float64(n)
	}
	if br != nil {
		switch {
		case h.current(probe):
			h.probes--
			switch o {
			case failed: // open again, for another OpenFor
				h.openUntil, h.probes, h.probeOK = now.Add(br.OpenFor), 0, 0
				h.gen++
				b.trips.Add(1)
				changed = true
			case succeeded:
				if h.probeOK++; h.probeOK >= br.HalfOpenProbes {
					h.open, h.probeOK = false, 0
					h.bwin.reset()
				}
			}
		case o != neutral && !h.open:
			if h.bwin.width == 0 {
				h.bwin.width = br.Window / windowSlots
			}
			h.bwin.add(now, o == failed)
			if n, f := h.bwin.counts(now); n >= br.MinRequests && float64(f) >= br.FailureRate*float64(n) {
				h.open, h.openUntil, h.probes, h.probeOK = true, now.Add(br.OpenFor), 0, 0
				h.gen++
				b.trips.Add(1)
				changed = true
			}
		}
	}
	b.hmu.Unlock()
	if eject {
		changed = r.eject(b, now) || changed
	}
	if changed {
		r.remake()
	}
}

// eject takes b out of balancing, if the cap on ejections allows.
func (r *Router) eject(b *Backend, now time.Time) bool {
	od := r.o.outlier
	r.ejectMu.Lock() // one decision at a time, so that the cap holds
	defer r.ejectMu.Unlock()
	s := r.set.Load()
	out := 0
	for _, o := range s.list {
		if o != b {
			o.hmu.Lock()
			if now.Before(o.h.ejectedUntil) {
				out++
			}
			o.hmu.Unlock()
		}
	}
	if out+1 > max(1, len(s.list)*od.MaxEjectedPercent/100) {
		return false
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	h := &b.h
	if now.Before(h.ejectedUntil) {
		return false // another failure ejected it meanwhile
	}
	if !h.ejectedUntil.IsZero() && now.Sub(h.ejectedUntil) > od.MaxEjection {
		h.ejections = 0 // healthy long enough: the backoff starts again
	}
	h.ejections++
	h.ejectedUntil = now.Add(min(time.Duration(h.ejections)*od.BaseEjection, od.MaxEjection))
	h.consecutive = 0
	h.owin.reset()
	b.ejected.Add(1)
	return true
}

// view is the backends a balancing policy picks from at one time: those
// not ejected, down or with an open breaker, or all of them if that
// leaves none (better to try a sick backend than to fail for sure).
type view struct {
	list    []*Backend
	out     map[*Backend]bool // the backends left out, if any
	expires time.Time         // when an exclusion ends and the view is stale; zero: never

	wrrOnce sync.Once
	wrr     []int32 // WeightedRoundRobin's schedule, made when first used
	derived bool    // leaves out backends a request was tried at (see without)
}

// makeView makes s's view at now.
func makeView(s *backendSet, now time.Time) *view {
	v := &view{list: s.list}
	var live []*Backend
	for i, b := range s.list {
		out, until := b.excluded(now)
		if !out {
			if live != nil {
				live = append(live, b)
			}
			continue
		}
		if live == nil {
			live = append(make([]*Backend, 0, len(s.list)), s.list[:i]...)
			v.out = make(map[*Backend]bool)
		}
		v.out[b] = true
		if !until.IsZero() && (v.expires.IsZero() || until.Before(v.expires)) {
			v.expires = until
		}
	}
	if len(live) > 0 {
		v.list = live
	} else {
		v.out = nil // none left: all are in
	}
	return v
}

// view returns s's view at now, making it again if an exclusion ended.
func (r *Router) view(s *backendSet, now time.Time) *view {
	v := s.view.Load()
	if v.expires.IsZero() || now.Before(v.expires) {
		return v
	}
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	if v = s.view.Load(); v.expires.IsZero() || now.Before(v.expires) {
		return v // made again meanwhile
	}
	v = makeView(s, now)
	s.view.Store(v)
	return v
}

// remake makes the view again after a backend's state changed. Views are
// made and stored one at a time, each after its change, so the last one
// stored has seen every change.
func (r *Router) remake() {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	s := r.set.Load()
	s.view.Store(makeView(s, time.Now()))
}

// checkHealth runs the health checks until the Router closes.
func (r *Router) checkHealth(ctx context.Context) {
	defer r.wg.Done()
	hc := r.o.health
	t := time.NewTicker(hc.Interval)
	defer t.Stop()
	for {
		s := r.set.Load()
		var wg sync.WaitGroup
		for _, b := range s.list {
			wg.Go(func() { r.checked(b, r.probe(ctx, b)) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe asks b for the health check's path and reports whether it
// answered 2xx in time.
func (r *Router) probe(ctx context.Context, b *Backend) bool {
	hc := r.o.health
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hc.Path, nil)
	if err != nil {
		return false
	}
	req.URL = backendURL(b, req.URL)
	req.Host = req.URL.Host
	req.Header["User-Agent"] = []string{"distkit-ambassador-health"}
	resp, err := r.o.transport.RoundTrip(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection if it is small
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// checked counts one health check's result for b.
func (r *Router) checked(b *Backend, ok bool) {
	if r.closing.Err() != nil {
		return // a check cut short by Close says nothing
	}
	hc := r.o.health
	b.hmu.Lock()
	h := &b.h
	switch {
	case ok && h.checkRun < 0, !ok && h.checkRun > 0:
		h.checkRun = 0
	}
	if ok {
		h.checkRun++
	} else {
		h.checkRun--
	}
	changed := false
	switch {
	case h.down && h.checkRun >= hc.Healthy:
		h.down, changed = false, true
	case !h.down && -h.checkRun >= hc.Unhealthy:
		h.down, changed = true, true
	}
	down := h.down
	b.hmu.Unlock()
	if changed {
		r.o.log.Info("ambassador: health check changed a backend's state", zap.String("backend", b.name), zap.Bool("healthy", !down))
		r.remake()
	}
}

// without returns v without b, or v itself if b is not in it or is all
// of it (a policy must have a backend to pick).
func (v *view) without(b *Backend) *view {
	i := slices.Index(v.list, b)
	if i < 0 || len(v.list) == 1 {
		return v
	}
	w := &view{list: make([]*Backend, 0, len(v.list)-1), out: map[*Backend]bool{b: true}, expires: v.expires, derived: true}
	w.list = append(append(w.list, v.list[:i]...), v.list[i+1:]...)
	for o := range v.out {
		w.out[o] = true
	}
	return w
}
