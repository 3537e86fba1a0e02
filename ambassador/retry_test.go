package ambassador

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// status is a backend handler that answers code and counts its requests.
func status(code int, n *atomic.Int32) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(code)
	}
}

// A failed try goes again to another backend; each retry is counted
// where it went, each failure where it happened.
func TestRetryGoesElsewhere(t *testing.T) {
	var na, nb atomic.Int32
	s := map[string]*httptest.Server{
		"a": backend(t, "a", status(503, &na)),
		"b": backend(t, "b", status(200, &nb)),
	}
	r := newRouter(t, s, []string{"a", "b"}, WithPolicy(RoundRobin()), WithRetry(Retry{Backoff: time.Millisecond}))
	h := r.Proxy()
	for i := range 20 {
		if code, from, _ := get(t, h, "/"); code != 200 || from != "b" {
			t.Fatalf("request %d: %d from %q, want 200 from b", i, code, from)
		}
	}
	st := r.Stats()
	// Round robin turns once per pick, so each request tries a first.
	if na.Load() != 20 || nb.Load() != 20 || st[0].Errors != 20 || st[1].Retries != 20 || st[0].Retries != 0 {
		t.Fatalf("a saw %d, b %d; stats %+v", na.Load(), nb.Load(), st)
	}
}

// Answers that are the request's fault are never retried, nor requests
// that are not safe to repeat; with every try failing, the last answer
// is the client's.
func TestRetryOnlyWhatIsSafe(t *testing.T) {
	var n4, n5 atomic.Int32
	s := map[string]*httptest.Server{
		"four": backend(t, "four", status(429, &n4)),
		"five": backend(t, "five", status(503, &n5)),
	}
	r4 := newRouter(t, s, []string{"four"}, WithRetry(Retry{Attempts: 5, Backoff: time.Millisecond}))
	if code, _, _ := get(t, r4.Proxy(), "/"); code != 429 || n4.Load() != 1 {
		t.Fatalf("429: answered %d after %d tries, want 429 after 1", code, n4.Load())
	}
	r5 := newRouter(t, s, []string{"five"}, WithRetry(Retry{Attempts: 3, Backoff: time.Millisecond}))
	c := &http.Client{Transport: r5.Transport()}
	try := func(method string, body io.Reader, key bool) int32 {
		t.Helper()
		n5.Store(0)
		req, _ := http.NewRequest(method, "http://svc/x", body)
		if key {
			req.Header.Set("Idempotency-Key", "k1")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("%s: %d, want the last try's 503", method, resp.StatusCode)
		}
		return n5.Load()
	}
	if n := try("GET", nil, false); n != 3 {
		t.Errorf("GET tried %d times, want 3", n)
	}
	if n := try("PUT", strings.NewReader("v"), false); n != 3 { // GetBody set by NewRequest
		t.Errorf("PUT with a body it can make again tried %d times, want 3", n)
	}
	if n := try("POST", strings.NewReader("v"), false); n != 1 {
		t.Errorf("POST tried %d times, want 1", n)
	}
	if n := try("POST", strings.NewReader("v"), true); n != 3 {
		t.Errorf("POST with an Idempotency-Key tried %d times, want 3", n)
	}
	if n := try("PUT", io.NopCloser(strings.NewReader("v")), false); n != 1 { // no GetBody
		t.Errorf("PUT with a body it cannot make again tried %d times, want 1", n)
	}
	if _, err := New(nil, WithRetry(Retry{Statuses: []int{503, 404}})); !errors.Is(err, ErrInvalid) {
		t.Errorf("retrying 404: %v, want ErrInvalid", err)
	}
}

// A retried request's body arrives whole every time.
func TestRetryResendsBody(t *testing.T) {
	var bodies []string
	var n atomic.Int32
	s := map[string]*httptest.Server{"a": backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if n.Add(1) < 3 {
			w.WriteHeader(502)
		}
	})}
	r := newRouter(t, s, []string{"a"}, WithRetry(Retry{Backoff: time.Millisecond}))
	req, _ := http.NewRequest("PUT", "http://svc/x", bytes.NewReader([]byte("the value")))
	resp, err := (&http.Client{Transport: r.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Join(bodies, ",") != "the value,the value,the value" {
		t.Fatalf("%d, bodies %q", resp.StatusCode, bodies)
	}
}

// No try starts after the request's deadline, and the budget bounds the
// retries: with none to spend, a request gets one try, and the refusal
// is counted.
func TestRetryBounds(t *testing.T) {
	var n atomic.Int32
	s := map[string]*httptest.Server{"a": backend(t, "a", status(503, &n))}
	r := newRouter(t, s, []string{"a"}, WithRetry(Retry{Attempts: 10, Backoff: 40 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/", nil)
	start := time.Now()
	resp, err := r.Transport().RoundTrip(req)
	switch {
	case err == nil:
		resp.Body.Close()
	case !errors.Is(err, context.DeadlineExceeded): // a loaded machine may take the last try to the deadline
		t.Fatal(err)
	}
	// Backoffs of 20-40, 40-80, 80-160 ms: the third cannot fit. (The
	// time bound is loose: CI machines overshoot sleeps by 100 ms.)
	if took := time.Since(start); took > time.Second || n.Load() > 3 || n.Load() < 2 {
		t.Fatalf("%d tries in %v with a 150 ms deadline", n.Load(), took)
	}

	b, _ := NewBudget(0, 0)
	n.Store(0)
	r = newRouter(t, s, []string{"a"}, WithRetry(Retry{Backoff: time.Millisecond}), WithBudget(b))
	for range 5 {
		get(t, r.Proxy(), "/")
	}
	if st := r.Stats()[0]; n.Load() != 5 || st.BudgetRefusals != 5 || st.Retries != 0 {
		t.Fatalf("%d tries for 5 requests with an empty budget; stats %+v", n.Load(), st)
	}

	b, _ = NewBudget(0.2, 0) // one retry per five requests
	n.Store(0)
	r = newRouter(t, s, []string{"a"}, WithRetry(Retry{Backoff: time.Millisecond}), WithBudget(b))
	for range 50 {
		get(t, r.Proxy(), "/")
	}
	if st := r.Stats()[0]; st.Retries < 8 || st.Retries > 10 || n.Load() != 50+int32(st.Retries) {
		t.Fatalf("%d tries for 50 requests with a 20%% budget; stats %+v", n.Load(), st)
	}
}

// slowThenFast makes a backend that answers after d, or when the request
// is cancelled, and reports cancellations.
func slow(d time.Duration, cancelled *atomic.Int32) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	}
}

// A try with no headers within PerTry fails and goes again elsewhere;
// when every try times out the Proxy answers 504.
func TestPerTryTimeout(t *testing.T) {
	var gone atomic.Int32
	s := map[string]*httptest.Server{
		"slow": backend(t, "slow", slow(5*time.Second, &gone)),
		"fast": backend(t, "fast", nil),
	}
	r := newRouter(t, s, []string{"slow", "fast"}, WithPolicy(RoundRobin()),
		WithRetry(Retry{PerTry: 50 * time.Millisecond, Backoff: time.Millisecond}))
	start := time.Now()
	code, from, _ := get(t, r.Proxy(), "/")
	if code != 200 || from != "fast" || time.Since(start) > 2*time.Second {
		t.Fatalf("%d from %q in %v", code, from, time.Since(start))
	}
	if st := r.Stats()[0]; st.Errors != 1 {
		t.Fatalf("slow's stats %+v", st)
	}

	r = newRouter(t, s, []string{"slow"}, WithRetry(Retry{Attempts: 2, PerTry: 30 * time.Millisecond, Backoff: time.Millisecond}))
	if code, _, body := get(t, r.Proxy(), "/"); code != 504 {
		t.Fatalf("all tries timed out: %d %q, want 504", code, body)
	}
	req, _ := http.NewRequest("GET", "http://svc/", nil)
	if _, err := r.Transport().RoundTrip(req); !errors.Is(err, ErrTryTimeout) {
		t.Fatalf("error %v, want ErrTryTimeout", err)
	}
}

// A slow request is hedged to another backend after Hedge.After; the
// first answer wins and the other try is cancelled. With no budget, no
// hedge goes.
func TestHedge(t *testing.T) {
	var gone atomic.Int32
	s := map[string]*httptest.Server{
		"slow": backend(t, "slow", slow(5*time.Second, &gone)),
		"fast": backend(t, "fast", nil),
	}
	r := newRouter(t, s, []string{"slow", "fast"}, WithPolicy(RoundRobin()), WithHedge(Hedge{After: 20 * time.Millisecond}))
	h := r.Proxy()
	for i := range 4 { // round robin turns once per pick: each tries slow first
		start := time.Now()
		if code, from, _ := get(t, h, "/"); code != 200 || from != "fast" || time.Since(start) > 2*time.Second {
			t.Fatalf("request %d: %d from %q in %v", i, code, from, time.Since(start))
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for gone.Load() != 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := r.Stats()
	if gone.Load() != 4 || st[1].Hedges != 4 || st[0].Hedges != 0 || st[0].Errors != 0 || st[0].InFlight != 0 {
		t.Fatalf("slow saw %d cancels; stats %+v", gone.Load(), st)
	}

	b, _ := NewBudget(0, 0)
	r = newRouter(t, s, []string{"slow", "fast"}, WithPolicy(RoundRobin()), WithBudget(b),
		WithHedge(Hedge{After: 20 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/", nil)
	if _, err := r.Transport().RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unhedged slow request: %v, want the deadline", err)
	}
	if st := r.Stats(); st[0].BudgetRefusals != 1 || st[1].Requests != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Each hedge and retry goes to a backend the request has not been tried
// at while there is one: with two slow backends, the second hedge goes to
// the third, not back to the first. (It avoided only the last try's.)
func TestHedgesAvoidEveryTriedBackend(t *testing.T) {
	var gone atomic.Int32
	s := map[string]*httptest.Server{
		"a": backend(t, "a", slow(5*time.Second, &gone)),
		"b": backend(t, "b", slow(5*time.Second, &gone)),
		"c": backend(t, "c", nil),
	}
	first := PolicyFunc(func(_ *http.Request, bs Backends) (*Backend, error) { return bs.At(0), nil })
	r := newRouter(t, s, []string{"a", "b", "c"}, WithPolicy(first), WithHedge(Hedge{After: 20 * time.Millisecond, Max: 2}))
	if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "c" {
		t.Fatalf("%d from %q, want c's answer", code, from)
	}
	if st := r.Stats(); st[0].Requests != 1 || st[1].Requests != 1 || st[2].Requests != 1 {
		t.Fatalf("requests a %d, b %d, c %d: want one each", st[0].Requests, st[1].Requests, st[2].Requests)
	}
	waitFor(t, "the slow tries to be cancelled", func() bool { return gone.Load() == 2 })

	// Tried at both of two backends, a third try goes to the one tried
	// longest ago.
	var n atomic.Int32
	fail := func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) < 3 {
			w.WriteHeader(503)
		}
	}
	s = map[string]*httptest.Server{"a": backend(t, "a", fail), "b": backend(t, "b", fail)}
	r = newRouter(t, s, []string{"a", "b"}, WithPolicy(first), WithRetry(Retry{Attempts: 3, Backoff: time.Millisecond}))
	if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "a" {
		t.Fatalf("%d from %q, want a's answer on the third try", code, from)
	}
}

// A hedge and a retry together: the first try fails slowly, the hedge
// fails fast, and the retry succeeds.
func TestHedgeThenRetry(t *testing.T) {
	var n atomic.Int32
	s := map[string]*httptest.Server{"a": backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			time.Sleep(60 * time.Millisecond)
			w.WriteHeader(503)
		case 2:
			w.WriteHeader(503)
		}
	})}
	r := newRouter(t, s, []string{"a"}, WithHedge(Hedge{After: 20 * time.Millisecond}), WithRetry(Retry{Backoff: time.Millisecond}))
	if code, _, _ := get(t, r.Proxy(), "/"); code != 200 || n.Load() != 3 {
		t.Fatalf("%d after %d tries", code, n.Load())
	}
	if st := r.Stats()[0]; st.Hedges != 1 || st.Retries != 1 || st.Errors != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestResilienceConfig(t *testing.T) {
	for _, o := range []Option{
		WithRetry(Retry{Attempts: 1}), WithRetry(Retry{Attempts: 11}), WithRetry(Retry{PerTry: -1}),
		WithRetry(Retry{Backoff: -1}), WithRetry(Retry{Statuses: []int{200}}),
		WithHedge(Hedge{}), WithHedge(Hedge{After: time.Millisecond, Max: 6}), WithBudget(nil),
		WithOutlierDetection(OutlierDetection{FailureRate: 2}), WithOutlierDetection(OutlierDetection{MaxEjectedPercent: 101}),
		WithOutlierDetection(OutlierDetection{BaseEjection: time.Minute, MaxEjection: time.Second}),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: -2}), WithOutlierDetection(OutlierDetection{Window: time.Millisecond}),
		WithBreaker(Breaker{FailureRate: 1.5}), WithBreaker(Breaker{HalfOpenProbes: -1}), WithBreaker(Breaker{OpenFor: -1}),
		WithHealthCheck(HealthCheck{Path: "healthz"}), WithHealthCheck(HealthCheck{Path: "http://x/healthz"}),
		WithHealthCheck(HealthCheck{Interval: time.Second, Timeout: 2 * time.Second}), WithHealthCheck(HealthCheck{Healthy: -1}),
	} {
		if _, err := New(nil, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v, want ErrInvalid", err)
		}
	}
	if _, err := NewBudget(1.5, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewBudget(1.5, 0): %v", err)
	}
}

// A refused connection is a failure of the backend's, counted where it
// happened and retried elsewhere, with outlier detection seeing it.
func TestRetryRefused(t *testing.T) {
	dead := backend(t, "dead", nil)
	dead.Close()
	s := map[string]*httptest.Server{"dead": dead, "b": backend(t, "b", nil)}
	r := newRouter(t, s, []string{"dead", "b"}, WithPolicy(RoundRobin()), WithRetry(Retry{Backoff: time.Millisecond}),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 3, BaseEjection: time.Minute, MaxEjectedPercent: 50}))
	for i := range 10 {
		if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "b" {
			t.Fatalf("request %d: %d from %q", i, code, from)
		}
	}
	if st := r.Stats(); st[0].Errors != 3 || st[0].Requests != 3 || !st[0].Ejected || st[1].Retries != 3 {
		t.Fatalf("stats %+v", st)
	}
}
