package ambassador

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is a backend handler that fails with 500 while bad is set.
func flaky(bad *atomic.Bool) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if bad.Load() {
			w.WriteHeader(500)
		}
	}
}

// spread sends n GETs through h and counts them by backend.
func spread(t *testing.T, h http.Handler, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		_, from, _ := get(t, h, "/")
		got[from]++
	}
	return got
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A backend that fails in a row is ejected, gets no requests while out,
// comes back by itself, and stays out longer the next time.
func TestOutlierEjection(t *testing.T) {
	var bad atomic.Bool
	bad.Store(true)
	s := map[string]*httptest.Server{"a": backend(t, "a", nil), "b": backend(t, "b", nil), "c": backend(t, "c", flaky(&bad))}
	base := 400 * time.Millisecond // long enough for 30 requests on a loaded machine
	r := newRouter(t, s, []string{"a", "b", "c"}, WithPolicy(RoundRobin()),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 3, FailureRate: -1, BaseEjection: base, MaxEjection: time.Minute, MaxEjectedPercent: 50}))
	h := r.Proxy()
	got := spread(t, h, 9) // c fails its third
	ejectedAt := time.Now()
	if got["c"] != 3 || !r.Stats()[2].Ejected {
		t.Fatalf("spread %v; stats %+v", got, r.Stats()[2])
	}
	if got := spread(t, h, 30); got["c"] != 0 || got["a"] != 15 {
		t.Fatalf("while c is out: %v", got)
	}
	bad.Store(false)
	waitFor(t, "c to come back", func() bool { return !r.Stats()[2].Ejected })
	// ejectedAt is taken a little after the ejection: allow for it.
	if out := time.Since(ejectedAt); out < base*9/10 {
		t.Fatalf("c was out %v, want %v", out, base)
	}
	if got := spread(t, h, 30); got["c"] != 10 {
		t.Fatalf("after c came back: %v", got)
	}
	// The second ejection lasts twice as long.
	bad.Store(true)
	for !r.Stats()[2].Ejected {
		get(t, h, "/")
	}
	ejectedAt = time.Now()
	bad.Store(false)
	waitFor(t, "c to come back again", func() bool { return !r.Stats()[2].Ejected })
	if out := time.Since(ejectedAt); out < 2*base*9/10 {
		t.Fatalf("c was out %v the second time, want %v", out, 2*base)
	}
	if st := r.Stats()[2]; st.Ejections != 2 || st.Errors != 6 {
		t.Fatalf("stats %+v", st)
	}
}

// No more backends are ejected than the cap, however many fail; when all
// that are in balancing are out, requests go to all (better a sick
// backend than none).
func TestEjectionCap(t *testing.T) {
	var bad atomic.Bool
	bad.Store(true)
	s := map[string]*httptest.Server{"a": backend(t, "a", flaky(&bad)), "b": backend(t, "b", flaky(&bad)), "c": backend(t, "c", flaky(&bad))}
	r := newRouter(t, s, []string{"a", "b", "c"}, WithPolicy(RoundRobin()),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 2, BaseEjection: time.Minute}))
	spread(t, r.Proxy(), 30)
	n := 0
	for _, st := range r.Stats() {
		if st.Ejected {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d ejected, want 1 (10%% of 3, but at least one)", n)
	}

	// With one backend the only one may be ejected; then it still gets
	// the requests.
	r = newRouter(t, s, []string{"a"}, WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 2, BaseEjection: time.Minute}))
	got := spread(t, r.Proxy(), 5)
	if st := r.Stats()[0]; !st.Ejected || got["a"] != 5 || st.Ejections != 1 {
		t.Fatalf("spread %v; stats %+v", got, st)
	}
}

// A backend that fails often, but never many times in a row, is ejected
// by its failure rate.
func TestFailureRateEjection(t *testing.T) {
	var n atomic.Int32
	s := map[string]*httptest.Server{"a": backend(t, "a", nil), "b": backend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 { // two in three fail
			w.WriteHeader(503)
		}
	})}
	r := newRouter(t, s, []string{"a", "b"}, WithPolicy(RoundRobin()),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 3, FailureRate: 0.6, MinRequests: 10, BaseEjection: time.Minute, MaxEjectedPercent: 50}))
	spread(t, r.Proxy(), 19)
	if st := r.Stats()[1]; st.Ejected {
		t.Fatalf("ejected before MinRequests: %+v", st)
	}
	spread(t, r.Proxy(), 2)
	if st := r.Stats()[1]; !st.Ejected || st.Requests != 10 {
		t.Fatalf("b not ejected at 10 requests: %+v", st)
	}
}

// Health checks take a backend that fails them out of balancing, and
// put it back when it passes them again; Close stops them.
func TestHealthCheck(t *testing.T) {
	var sick atomic.Bool
	var checks atomic.Int32
	s := map[string]*httptest.Server{"a": backend(t, "a", nil), "b": backend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			checks.Add(1)
			if sick.Load() {
				w.WriteHeader(503)
			}
		}
	})}
	r := newRouter(t, s, []string{"a", "b"}, WithPolicy(RoundRobin()),
		WithHealthCheck(HealthCheck{Path: "/ready", Interval: 10 * time.Millisecond, Unhealthy: 2, Healthy: 3}))
	defer r.Close()
	if got := spread(t, r.Proxy(), 10); got["b"] != 5 {
		t.Fatalf("healthy: %v", got)
	}
	sick.Store(true)
	waitFor(t, "b to fail its checks", func() bool { return !r.Stats()[1].Healthy })
	if got := spread(t, r.Proxy(), 10); got["b"] != 0 {
		t.Fatalf("b failing its checks: %v", got)
	}
	sick.Store(false)
	waitFor(t, "b to pass its checks", func() bool { return r.Stats()[1].Healthy })
	if got := spread(t, r.Proxy(), 10); got["b"] != 5 {
		t.Fatalf("b passing again: %v", got)
	}
	if st := r.Stats()[1]; st.Requests != 10 {
		t.Fatalf("health checks counted as requests: %+v", st)
	}
	r.Close()
	n := checks.Load()
	time.Sleep(50 * time.Millisecond)
	if checks.Load() != n {
		t.Fatal("checks went on after Close")
	}
}

// The breaker opens on the failure rate, fails requests at once while
// open (503, nothing sent), lets a capped number of probes through when
// half open, and closes on their success or opens again on a failure.
func TestBreaker(t *testing.T) {
	var bad atomic.Bool
	var n atomic.Int32
	hold := make(chan struct{})
	s := map[string]*httptest.Server{"a": backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.URL.Path == "/hold" {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		if bad.Load() {
			w.WriteHeader(500)
		}
	})}
	openFor := 300 * time.Millisecond // long enough for the requests below on a loaded machine
	r := newRouter(t, s, []string{"a"}, WithBreaker(Breaker{FailureRate: 0.5, MinRequests: 4, OpenFor: openFor, HalfOpenProbes: 1}))
	h := r.Proxy()
	bad.Store(true)
	spread(t, h, 4)
	if st := r.Stats()[0]; st.Breaker != Open || st.Trips != 1 {
		t.Fatalf("after 4 failures: %+v", st)
	}
	for range 5 {
		if code, _, body := get(t, h, "/"); code != 503 {
			t.Fatalf("open: %d %q, want 503", code, body)
		}
	}
	req, _ := http.NewRequest("GET", "http://svc/", nil)
	if _, err := r.Transport().RoundTrip(req); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("open: %v, want ErrCircuitOpen", err)
	}
	if n.Load() != 4 {
		t.Fatalf("%d requests reached the backend, want 4", n.Load())
	}

	// Half open: one probe at a time; it fails, and the breaker opens.
	time.Sleep(openFor)
	if st := r.Stats()[0]; st.Breaker != HalfOpen {
		t.Fatalf("after OpenFor: %v", st.Breaker)
	}
	done := make(chan int, 1)
	go func() { code, _, _ := get(t, h, "/hold"); done <- code }()
	defer func() {
		select {
		case <-hold:
		default:
			close(hold) // the test failed with the probe held
		}
		<-done
	}()
	waitFor(t, "the probe", func() bool { return n.Load() == 5 })
	if code, _, _ := get(t, h, "/"); code != 503 || n.Load() != 5 {
		t.Fatalf("a second request while the probe is out: %d", code)
	}
	close(hold)
	code := <-done
	done <- code // for the deferred wait
	if code != 500 {
		t.Fatalf("probe: %d", code)
	}
	if st := r.Stats()[0]; st.Breaker != Open || st.Trips != 2 {
		t.Fatalf("after a failed probe: %+v", st)
	}

	// It recovers: the next probe succeeds and the breaker closes.
	bad.Store(false)
	time.Sleep(openFor)
	if code, _, _ := get(t, h, "/"); code != 200 {
		t.Fatalf("probe: %d", code)
	}
	if st := r.Stats()[0]; st.Breaker != Closed {
		t.Fatalf("after a good probe: %+v", st)
	}
	if got := spread(t, h, 10); got["a"] != 10 {
		t.Fatalf("closed: %v", got)
	}
}

// Under a balancing policy, a backend with an open breaker is passed
// over.
func TestBreakerBalancing(t *testing.T) {
	var bad atomic.Bool
	bad.Store(true)
	s := map[string]*httptest.Server{"a": backend(t, "a", flaky(&bad)), "b": backend(t, "b", nil)}
	r := newRouter(t, s, []string{"a", "b"}, WithPolicy(RoundRobin()), WithBreaker(Breaker{MinRequests: 3, OpenFor: time.Minute}))
	for i := 0; r.Stats()[0].Breaker != Open; i++ {
		if i > 100 {
			t.Fatal("a's breaker did not open")
		}
		get(t, r.Proxy(), "/")
	}
	if got := spread(t, r.Proxy(), 20); got["b"] != 20 {
		t.Fatalf("with a's breaker open: %v", got)
	}
}
