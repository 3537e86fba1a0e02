package ambassador

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rvDeadURL returns the URL of a 127.0.0.1 server that has been closed:
// connecting to it is refused.
func rvDeadURL(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

// With Retry (or Hedge) configured, a backend that refuses connections
// must still be counted as failing: in Errors, by outlier detection, by
// its breaker and in its latency. try cancels the try's own context
// (cancel(nil)) before it asks whether the context was cancelled, so
// every transport error looks like the client's doing and is neutral.
func TestReviewRetryCountsTransportErrors(t *testing.T) {
	ok := backend(t, "ok", nil)
	cs := []BackendConfig{{Name: "dead", URL: rvDeadURL(t)}, {Name: "ok", URL: ok.URL}}
	od := OutlierDetection{ConsecutiveFailures: 2, FailureRate: -1, BaseEjection: time.Minute, MaxEjectedPercent: 50}

	// Without retries the failures count (the control).
	plain := routerFor(t, cs, WithPolicy(RoundRobin()), WithOutlierDetection(od))
	for range 6 {
		get(t, plain.Proxy(), "/")
	}
	if st := plain.Stats()[0]; st.Errors == 0 || !st.Ejected {
		t.Fatalf("control without retries: dead's stats %+v, want errors and ejected", st)
	}

	r := routerFor(t, cs, WithPolicy(RoundRobin()), WithOutlierDetection(od),
		WithRetry(Retry{Backoff: time.Millisecond}))
	for i := range 10 {
		if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "ok" {
			t.Fatalf("request %d: %d from %q", i, code, from)
		}
	}
	st := r.Stats()[0]
	t.Logf("dead's stats with Retry: %+v", st)
	if st.Errors == 0 || !st.Ejected || st.Latency < penalty {
		t.Fatalf("with Retry, a backend that refused %d connections has Errors=%d Ejected=%v Latency=%v; want its failures counted, it ejected and its latency penalised",
			st.Requests, st.Errors, st.Ejected, st.Latency)
	}
}

// The answer a Router returns when it retries no more (the last 503, or
// the first when the request may not be retried or the budget says no)
// must be readable: finish(-1) cancels that try's context before the
// response is handed back, so its body is cut where the transport's
// buffer ends, and the Proxy aborts the answer to its client.
func TestReviewFinalRetryableAnswerReadable(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.WriteHeader(503)
		io.WriteString(w, big)
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: s.URL}}, WithRetry(Retry{Attempts: 2, Backoff: time.Millisecond}))

	// Through the Transport: a POST is not retried, a GET is twice.
	for _, method := range []string{"POST", "GET"} {
		req, _ := http.NewRequest(method, "http://svc/", nil)
		resp, err := r.Transport().RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || err != nil || len(b) != len(big) {
			t.Errorf("%s: %d, read %d of %d bytes of the 503's body, error %v", method, resp.StatusCode, len(b), len(big), err)
		}
	}

	// Through the Proxy: the client should get the backend's 503 whole.
	front := httptest.NewServer(r.Proxy())
	defer front.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(front.URL + "/")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || err != nil || len(b) != len(big) {
		t.Errorf("proxy: %d, read %d of %d bytes, error %v", resp.StatusCode, len(b), len(big), err)
	}
}

// Under a balancing policy a half-open backend whose probe is out must
// not fail requests that another backend could take (Breaker's doc: "or,
// under a balancing policy, go to another backend"). pick asks the policy
// three times, and P2C by cost picks the same cheap half-open backend
// each time, so the request fails with a 503 while b is healthy.
func TestReviewHalfOpenProbeOutFailsHealthyTraffic(t *testing.T) {
	var bad atomic.Bool
	bad.Store(true)
	hold := make(chan struct{})
	var held atomic.Int32
	sa := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held.Add(1)
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		if bad.Load() {
			w.WriteHeader(500)
		}
	})
	sb := backend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // healthy, slower than a fails
	})
	openFor := 100 * time.Millisecond
	// A policy that, like P2C by cost with a fast-failing a, takes a
	// whenever it is offered.
	preferA := PolicyFunc(func(_ *http.Request, bs Backends) (*Backend, error) {
		for i := range bs.Len() {
			if bs.At(i).Name() == "a" {
				return bs.At(i), nil
			}
		}
		return bs.At(0), nil
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: sa.URL}, {Name: "b", URL: sb.URL}}, WithPolicy(preferA),
		WithBreaker(Breaker{MinRequests: 3, OpenFor: openFor, HalfOpenProbes: 1}))
	h := r.Proxy()
	for i := 0; r.Stats()[0].Breaker != Open; i++ {
		if i > 200 {
			t.Fatal("a's breaker never opened")
		}
		get(t, h, "/")
	}
	time.Sleep(openFor + 10*time.Millisecond)
	if st := r.Stats()[0]; st.Breaker != HalfOpen {
		t.Fatalf("a's breaker %v, want half-open", st.Breaker)
	}
	done := make(chan int, 1)
	go func() { code, _, _ := get(t, h, "/hold"); done <- code }()
	defer func() { close(hold); <-done }()
	waitFor(t, "the probe to reach a", func() bool { return held.Load() == 1 })

	failed := 0
	for range 10 {
		if code, _, _ := get(t, h, "/"); code != 200 {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 10 requests failed (503, circuit open) while a's probe was out and b was healthy; stats %+v", failed, r.Stats())
	}
}

// Retry goes "to another backend when the policy offers one". With the
// default policy (PeakEWMA) it does not: pick asks the policy three
// times to avoid the backend that failed, but P2C over two backends
// always weighs the same two, and a backend that answers 503 fast (its
// 5xx latency is not penalised) is always the cheaper; the third pick is
// taken as it comes, so every retry goes back to the failing backend and
// the client gets its 503 while b is healthy.
func TestReviewRetryGoesElsewhereUnderPeakEWMA(t *testing.T) {
	var na, nb atomic.Int32
	sa := backend(t, "a", status(503, &na))
	sb := backend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		nb.Add(1)
		time.Sleep(10 * time.Millisecond)
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: sa.URL}, {Name: "b", URL: sb.URL}},
		WithRetry(Retry{Attempts: 3, Backoff: time.Millisecond})) // default policy: PeakEWMA
	h := r.Proxy()
	failed := 0
	for range 20 {
		if code, _, _ := get(t, h, "/"); code != 200 {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 20 requests answered 503 with 3 attempts and a healthy b; a saw %d tries, b %d; stats %+v",
			failed, na.Load(), nb.Load(), r.Stats())
	}
}

// Two failures that arrive together eject a backend once. record decides
// to eject under b.hmu, lets it go, and eject never checks whether b was
// ejected meanwhile, so each failure in the window ejects b again: the
// Ejections count doubles and the ejection lasts two BaseEjections. The
// test holds ejectMu (as any concurrent ejection holds it) to make the
// window wide enough to hit every time.
func TestReviewConcurrentFailuresEjectOnce(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	sc := backend(t, "c", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.WriteHeader(503)
	})
	sa := backend(t, "a", nil)
	base := 10 * time.Second
	toC := PolicyFunc(func(_ *http.Request, bs Backends) (*Backend, error) { return bs.Named("c"), nil })
	r := routerFor(t, []BackendConfig{{Name: "a", URL: sa.URL}, {Name: "c", URL: sc.URL}}, WithPolicy(toC),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 1, FailureRate: -1, BaseEjection: base, MaxEjection: time.Hour}))
	c := r.Backends()[1]

	r.ejectMu.Lock()
	locked := true
	var wg sync.WaitGroup
	defer func() { // on a failure too: no request may be left waiting
		if locked {
			r.ejectMu.Unlock()
		}
		wg.Wait()
	}()
	for range 2 {
		wg.Go(func() { get(t, r.Proxy(), "/") })
	}
	<-arrived
	<-arrived
	start := time.Now()
	close(release)
	waitFor(t, "both failures counted", func() bool { return c.errors.Load() == 2 })
	time.Sleep(50 * time.Millisecond) // both are now waiting to eject c
	locked = false
	r.ejectMu.Unlock()
	wg.Wait()

	c.hmu.Lock()
	until := c.h.ejectedUntil
	c.hmu.Unlock()
	st := r.Stats()[1]
	if st.Ejections != 1 || until.Sub(start) > base+time.Second {
		t.Fatalf("two simultaneous failures: Ejections=%d, ejected for %v; want 1 ejection of %v", st.Ejections, until.Sub(start).Round(time.Second), base)
	}
}

// HalfOpenProbes caps the probes out at once. A probe still out when the
// breaker closes (possible with HalfOpenProbes >= 2: slots free as
// probes end) is still counted as a probe when it ends: after a trip
// from closed set probes to 0, that end takes probes to -1, and the next
// half-open period lets one probe more than the cap through. Its success
// also counts towards closing in a later period.
func TestReviewHalfOpenProbeCap(t *testing.T) {
	var arrived atomic.Int32
	holds := map[string]chan struct{}{}
	for _, p := range []string{"/p1", "/h1", "/h2", "/h3"} {
		holds[p] = make(chan struct{})
	}
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if ch := holds[r.URL.Path]; ch != nil {
			arrived.Add(1)
			select {
			case <-ch:
			case <-r.Context().Done():
			}
		}
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
	})
	openFor := 100 * time.Millisecond
	r := routerFor(t, []BackendConfig{{Name: "a", URL: s.URL}},
		WithBreaker(Breaker{FailureRate: 0.5, MinRequests: 2, OpenFor: openFor, HalfOpenProbes: 2}))
	h := r.Proxy()
	var wg sync.WaitGroup
	defer func() {
		for _, ch := range holds {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		wg.Wait()
	}()
	codes := make(chan int, 8)
	send := func(path string) { wg.Go(func() { code, _, _ := get(t, h, path); codes <- code }) }

	get(t, h, "/fail")
	get(t, h, "/fail")
	if st := r.Stats()[0]; st.Breaker != Open {
		t.Fatalf("after 2 failures: %v", st.Breaker)
	}
	time.Sleep(openFor + 10*time.Millisecond)
	send("/p1") // probe 1, held
	waitFor(t, "probe 1", func() bool { return arrived.Load() == 1 })
	for i := range 2 { // probes 2 and 3 succeed: the breaker closes with probe 1 out
		if code, _, _ := get(t, h, "/"); code != 200 {
			t.Fatalf("probe %d: %d", i+2, code)
		}
	}
	if st := r.Stats()[0]; st.Breaker != Closed {
		t.Fatalf("after 2 good probes: %v", st.Breaker)
	}
	get(t, h, "/fail")
	get(t, h, "/fail")
	if st := r.Stats()[0]; st.Breaker != Open {
		t.Fatalf("after 2 more failures: %v", st.Breaker)
	}
	close(holds["/p1"]) // probe 1 ends now, long after its half-open period
	if code := <-codes; code != 200 {
		t.Fatalf("probe 1: %d", code)
	}
	time.Sleep(openFor + 10*time.Millisecond)

	// Half open again: at most 2 of 3 simultaneous requests may reach a.
	reached := 0
	for i, p := range []string{"/h1", "/h2", "/h3"} {
		before := arrived.Load()
		send(p)
		deadline := time.Now().Add(2 * time.Second)
	wait:
		for time.Now().Before(deadline) {
			select {
			case code := <-codes:
				if code != 503 {
					t.Fatalf("request %d ended with %d", i, code)
				}
				break wait
			default:
			}
			if arrived.Load() > before {
				reached++
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if reached > 2 {
		t.Fatalf("%d probes out at once with HalfOpenProbes 2", reached)
	}
}

// The view the balancing policies see must follow the backends' states.
// checkHealth runs each backend's check in a goroutine of its own, so two
// backends that change state in the same round call remake at once; each
// makes a view from what it reads and stores it, and the one made first
// may be stored last. A stale view with no timed exclusion never expires:
// the backend stays in (or out) until some other change.
func TestReviewConcurrentHealthChangesKeepViewFresh(t *testing.T) {
	s := servers(t, "a", "b", "c")
	r := newRouter(t, s, []string{"a", "b", "c"}, WithPolicy(RoundRobin()),
		WithHealthCheck(HealthCheck{Interval: time.Hour, Timeout: time.Second, Unhealthy: 1, Healthy: 1}))
	defer r.Close()
	bs := r.Backends()
	a, b := bs[0], bs[1]
	isDown := func(x *Backend) bool {
		x.hmu.Lock()
		defer x.hmu.Unlock()
		return x.h.down
	}
	// The round runs its checks in parallel, so wait for every backend's:
	// one landing mid-loop would change b under the test's feet.
	waitFor(t, "the first round of checks", func() bool {
		for _, x := range bs {
			x.hmu.Lock()
			run := x.h.checkRun
			x.hmu.Unlock()
			if run <= 0 {
				return false
			}
		}
		return true
	})
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		// As one round of checkHealth does when a and b both change.
		upA, upB := isDown(a), isDown(b)
		var wg sync.WaitGroup
		wg.Go(func() { r.checked(a, upA) })
		wg.Go(func() { r.checked(b, upB) })
		wg.Wait()
		v := r.set.Load().view.Load()
		for _, x := range []*Backend{a, b} {
			if v.out[x] != isDown(x) {
				// Stale, and it stays so: show what the requests see.
				got := spread(t, r.Proxy(), 30)
				t.Fatalf("round %d: %s down=%v but the view has it excluded=%v; 30 requests went %v",
					i, x.Name(), isDown(x), v.out[x], got)
			}
		}
	}
}

// Each retry or hedge taken from the budget should be one sent. wait
// withdraws before start picks a backend; when the pick fails (here the
// only backend's breaker opened on the failure itself) the withdrawal is
// spent on nothing. Hedges do the same (withdraw, then start fails).
func TestReviewBudgetSpentOnlyOnSentTries(t *testing.T) {
	var n atomic.Int32
	s := backend(t, "a", status(503, &n))
	b := &rvCountingBudget{}
	r := routerFor(t, []BackendConfig{{Name: "a", URL: s.URL}}, WithBudget(b),
		WithRetry(Retry{Backoff: time.Millisecond}),
		WithBreaker(Breaker{MinRequests: 1, OpenFor: time.Minute}))
	code, _, _ := get(t, r.Proxy(), "/")
	st := r.Stats()[0]
	if sent := int64(st.Retries + st.Hedges); b.withdrawn.Load() != sent {
		t.Fatalf("answered %d after %d tries: %d withdrawn from the budget for %d retries and hedges sent",
			code, n.Load(), b.withdrawn.Load(), sent)
	}
}

type rvCountingBudget struct{ withdrawn atomic.Int64 }

func (b *rvCountingBudget) Deposit(int) {}
func (b *rvCountingBudget) Withdraw() bool {
	b.withdrawn.Add(1)
	return true
}

// Close stops the health checks, and "the Router still routes requests
// after, without health checks"; but a backend that was down when Close
// came stays out of balancing for good, whatever it does after: nothing
// will ever bring it back.
func TestReviewCloseLeavesBackendDownForever(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	s := map[string]*httptest.Server{"a": backend(t, "a", nil), "b": backend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			w.WriteHeader(503)
		}
	})}
	r := newRouter(t, s, []string{"a", "b"}, WithPolicy(RoundRobin()),
		WithHealthCheck(HealthCheck{Path: "/ready", Interval: 10 * time.Millisecond, Unhealthy: 1}))
	defer r.Close()
	waitFor(t, "b to fail its checks", func() bool { return !r.Stats()[1].Healthy })
	r.Close()
	sick.Store(false)
	if got := spread(t, r.Proxy(), 10); got["b"] == 0 {
		t.Fatalf("after Close, with b well again and no health checks: %v; stats %+v", got, r.Stats()[1])
	}
}
