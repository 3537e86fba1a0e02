package workqueue

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNoOpWaitsForPending checks that an operation that logs nothing (a
// duplicate) still waits for what is on its way to disk, which may hold
// the change it repeats.
func TestNoOpWaitsForPending(t *testing.T) {
	j, err := openJournal(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.add() != nil {
		t.Fatal("nothing pending, yet a no-op has something to wait for")
	}
	c := j.add(record{kind: recAck, id: "a"})
	if j.add() != c {
		t.Fatal("a no-op does not wait for the pending commit")
	}
	go j.commit()
	if err := c.wait(); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
}

func TestBatchLimit(t *testing.T) {
	items := []Item{{Payload: make([]byte, 600)}, {Payload: make([]byte, 600)}}
	if err := checkBatch(items, 1000); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "split the batch") {
		t.Fatalf("checkBatch: %v", err)
	}
	if err := checkBatch(items[:1], 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMemory(WithMaxPayload(maxRecord)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a max payload the log cannot hold: %v", err)
	}
	f := newFixture(t)
	if err := f.Enqueue(context.Background(), Item{Payload: []byte("x"), NotBefore: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NotBefore in the year 3000: %v", err)
	}
}

// TestWaiterWakesForALeaseGrantedAfterItBlocked: two claims block; one
// gets the item and goes silent; the other gets it when the lease ends.
func TestWaiterWakesForALeaseGrantedAfterItBlocked(t *testing.T) {
	f := newFixture(t)
	got := make(chan Claim, 2)
	for range 2 {
		go func() {
			c, err := f.Claim(context.Background(), time.Minute)
			if err == nil {
				got <- c
			}
		}()
	}
	waitFor(t, func() bool { return f.waiting() == 2 })
	f.enqueue(item("a"))
	first := <-got
	waitFor(t, func() bool { return f.clk.Pending() > 0 }) // the other's timer, for first's lease
	f.clk.Advance(time.Minute)
	second := <-got
	if second.ID != "a" || second.Token <= first.Token || second.Expiries != 1 {
		t.Fatalf("second claim %+v", second)
	}
}

func TestFireTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, complete, err := f.Join(ctx, "g", 1, "m", nil); !complete || err != nil {
		t.Fatal(complete, err)
	}
	// A result may not take an ID of the kind the queue generates.
	generated := item(f.nextIDForTest())
	if fired, err := f.Fire(ctx, "g", generated); fired || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Fire with a generated-looking ID: %v, %v", fired, err)
	}
	for i, want := range []bool{true, false} {
		fired, err := f.Fire(ctx, "g", item("result"))
		if fired != want || err != nil {
			t.Fatalf("Fire %d: %v, %v; want %v", i, fired, err, want)
		}
	}
}

// flakyQueue fails its first claims, as a remote queue does while it
// restarts.
type flakyQueue struct {
	*Memory
	fails atomic.Int32
}

func (q *flakyQueue) Claim(ctx context.Context, lease time.Duration) (Claim, error) {
	if q.fails.Add(-1) >= 0 {
		return Claim{}, errors.New("connection refused")
	}
	return q.Memory.Claim(ctx, lease)
}

func TestPoolOutlastsFailingClaims(t *testing.T) {
	q := &flakyQueue{Memory: newTestQueue(t)}
	q.fails.Store(3)
	enqueueN(t, q.Memory, 5, "i")
	p, err := NewPool(q, func(context.Context, Claim) error { return nil }, WithWorkers(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return q.Stats().Done == 5 })
	closePool(t, p)
	if n := q.fails.Load(); n >= 0 {
		t.Fatalf("%d failing claims left: the pool did not claim through the flaky queue", n)
	}
}

func TestServerCapsLeases(t *testing.T) {
	h, err := NewServer(newTestQueue(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{pathClaim + "?lease=86400001&wait=1", pathClaim + "?lease=99999999999999999999&wait=1"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
}
