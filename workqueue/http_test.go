package workqueue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// remote serves q over HTTP on loopback and returns a client of it.
func remote(t *testing.T, q Queue) *Client {
	t.Helper()
	h, err := NewServer(q, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHTTPRoundTrip(t *testing.T) {
	q := newTestQueue(t)
	cl := remote(t, q)
	ctx := context.Background()
	later := time.Now().Add(time.Hour).Round(time.Millisecond)
	if err := cl.Enqueue(ctx, Item{ID: "a", Payload: []byte{0, 1, 2}, Key: "k"}, item("b"), Item{ID: "c", Payload: []byte("x"), NotBefore: later}); err != nil {
		t.Fatal(err)
	}
	c, err := cl.Claim(ctx, time.Minute)
	if err != nil || c.ID != "a" || string(c.Payload) != "\x00\x01\x02" || c.Key != "k" || c.Attempt != 1 || c.Token == 0 {
		t.Fatalf("claim %+v, %v", c, err)
	}
	if left := time.Until(c.Deadline); left < 50*time.Second || left > time.Minute {
		t.Fatalf("deadline in %v, want about a minute", left)
	}
	c2, err := cl.Extend(ctx, c, 2*time.Minute)
	if err != nil || time.Until(c2.Deadline) < 110*time.Second {
		t.Fatalf("extend: %+v, %v", c2, err)
	}
	if err := cl.Ack(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if err := cl.Ack(ctx, c2); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second ack: %v, want ErrNotHeld", err)
	}
	b, _ := cl.Claim(ctx, time.Minute)
	if err := cl.Nack(ctx, b, Permanent(errors.New("bad b"))); err != nil {
		t.Fatal(err)
	}
	ds, err := cl.DeadLetters(ctx)
	if err != nil || len(ds) != 1 || ds[0].ID != "b" || ds[0].Reason != "bad b" || string(ds[0].Payload) != "p-b" {
		t.Fatalf("dead letters %+v, %v", ds, err)
	}
	if err := cl.Requeue(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Requeue(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("requeue of an unknown ID: %v", err)
	}
	s, err := cl.Stats(ctx)
	if err != nil || s.Done != 1 || s.Ready != 1 || s.Delayed != 1 || s.Requeued != 1 {
		t.Fatalf("stats %+v, %v", s, err)
	}
	// c's NotBefore crossed the wire.
	s0 := q.shards[0] // c has an ID of its own
	s0.mu.Lock()
	nb := s0.delayed.top().item.NotBefore
	s0.mu.Unlock()
	if !nb.Equal(later) {
		t.Fatalf("not before %v, want %v", nb, later)
	}
}

func TestHTTPErrorsMapBack(t *testing.T) {
	q := newTestQueue(t)
	cl := remote(t, q)
	ctx := context.Background()
	err := cl.Enqueue(ctx, Item{ID: "empty"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "empty payload") {
		t.Fatalf("enqueue of an empty payload: %v", err)
	}
	if err := cl.Ack(ctx, Claim{Item: Item{ID: "x"}, Token: 7}); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ack of an unknown claim: %v", err)
	}
	if _, err := cl.Claim(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("claim with no lease: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := cl.Claim(short, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim from an empty queue: %v", err)
	}
	q.Close()
	if err := cl.Enqueue(ctx, item("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue to a closed queue: %v", err)
	}
	for _, bad := range []string{"", "ftp://x", "http://", "://"} {
		if _, err := NewClient(bad, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewClient(%q): %v", bad, err)
		}
	}
	if _, err := NewServer(nil, 0); !errors.Is(err, ErrInvalid) {
		t.Error("NewServer(nil)")
	}
	// A raw request that is not the protocol.
	h, _ := NewServer(newTestQueue(t), 16)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, pathEnqueue, strings.NewReader(`{"items": [{"payload": "eHh4eHh4eHh4eHh4eA=="}]}`)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("oversized body: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, pathClaim+"?lease=abc&wait=1", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "lease") {
		t.Fatalf("bad lease: %d %s", rec.Code, rec.Body)
	}
}

func TestHTTPClaimWaitsForWork(t *testing.T) {
	q := newTestQueue(t)
	cl := remote(t, q)
	got := make(chan Claim, 1)
	go func() {
		c, err := cl.Claim(context.Background(), time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	waitFor(t, func() bool { return q.waiting() == 1 })
	other := remote(t, q)
	if err := other.Enqueue(context.Background(), item("late")); err != nil {
		t.Fatal(err)
	}
	c := <-got
	if c.ID != "late" {
		t.Fatalf("claimed %+v", c)
	}
	if err := cl.Ack(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	// A client that gives up frees the server's side of its long poll.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, func() bool { return q.waiting() == 1 })
		cancel()
	}()
	if _, err := cl.Claim(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled claim: %v", err)
	}
	waitFor(t, func() bool { return q.waiting() == 0 })
}

// TestHTTPRemoteWorkers runs pools on both sides of HTTP over one queue
// and checks that every item is done exactly once.
func TestHTTPRemoteWorkers(t *testing.T) {
	q := newTestQueue(t)
	const n = 300
	enqueueN(t, q, n, "i")
	var mu sync.Mutex
	done := map[string]int{}
	h := func(ctx context.Context, c Claim) error {
		if c.Attempt == 1 && strings.HasSuffix(c.ID, "7") {
			return errors.New("first try fails")
		}
		time.Sleep(time.Millisecond) // long enough that every pool gets work
		mu.Lock()
		done[c.ID]++
		mu.Unlock()
		return nil
	}
	var pools []*Pool
	for _, qq := range []Queue{q, remote(t, q), remote(t, q)} {
		p, err := NewPool(qq, h, WithWorkers(2, 4))
		if err != nil {
			t.Fatal(err)
		}
		pools = append(pools, p)
	}
	waitFor(t, func() bool { return q.Stats().Done == n })
	for _, p := range pools {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Remote workers blocked in a long poll end with the pool.
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if len(done) != n {
		t.Fatalf("%d of %d done", len(done), n)
	}
	for id, k := range done {
		if k != 1 {
			t.Fatalf("%s done %d times", id, k)
		}
	}
	if s := pools[1].Stats(); s.Done == 0 {
		t.Fatalf("a remote pool did nothing: %+v", s)
	}
}

// TestHTTPClientReusesConnections: the client reads each answer to its
// end, so that one keep-alive connection serves call after call, failed
// ones included.
func TestHTTPClientReusesConnections(t *testing.T) {
	h, err := NewServer(newTestQueue(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	var conns sync.Map
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Store(c, true)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 20 {
		if err := cl.Enqueue(ctx, item(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		c, err := cl.Claim(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Ack(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := cl.Ack(ctx, c); !errors.Is(err, ErrNotHeld) { // an error answer
			t.Fatalf("second Ack: %v", err)
		}
		if _, err := cl.Stats(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d connections for 100 calls in turn, want 1", n)
	}
}
