package workqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestQueue(t *testing.T) *Memory {
	t.Helper()
	q, err := NewMemory(WithRetry(Retry{MaxFailures: 3, MaxExpiries: 3, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func enqueueN(t *testing.T, q Queue, n int, prefix string) {
	t.Helper()
	var items []Item
	for i := range n {
		items = append(items, item(fmt.Sprint(prefix, i)))
	}
	if err := q.Enqueue(context.Background(), items...); err != nil {
		t.Fatal(err)
	}
}

func closePool(t *testing.T, p *Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPoolDoesEveryItemAndTurnsPanicsIntoNacks(t *testing.T) {
	q := newTestQueue(t)
	enqueueN(t, q, 300, "i")
	var mu sync.Mutex
	done := map[string]int{}
	p, err := NewPool(q, func(ctx context.Context, c Claim) error {
		switch {
		case c.ID == "i7" && c.Attempt == 1:
			panic("boom")
		case c.ID == "i8" && c.Attempt < 3:
			return errors.New("flaky")
		case c.ID == "i9":
			return Permanent(errors.New("never"))
		}
		mu.Lock()
		done[c.ID]++
		mu.Unlock()
		return nil
	}, WithWorkers(2, 4))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { s := q.Stats(); return s.Done+s.DeadLettered == 300 })
	closePool(t, p)
	if len(done) != 299 {
		t.Fatalf("%d items done, want 299", len(done))
	}
	for id, n := range done {
		if n != 1 {
			t.Fatalf("%s done %d times", id, n)
		}
	}
	ps := p.Stats()
	if ps.Panics != 1 || ps.Failed != 4 || ps.Done != 299 || ps.Workers != 0 {
		t.Fatalf("pool stats %+v", ps)
	}
	if ds, _ := q.DeadLetters(context.Background()); len(ds) != 1 || ds[0].ID != "i9" {
		t.Fatalf("dead letters %+v", ds)
	}
}

func TestPoolScalesUpAndDown(t *testing.T) {
	q := newTestQueue(t)
	enqueueN(t, q, 200, "i")
	var running, peak atomic.Int32
	p, err := NewPool(q, func(ctx context.Context, c Claim) error {
		r := running.Add(1)
		defer running.Add(-1)
		for {
			m := peak.Load()
			if r <= m || peak.CompareAndSwap(m, r) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		return nil
	}, WithWorkers(1, 6), WithScaleInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer closePool(t, p)
	waitFor(t, func() bool { return q.Stats().Done == 200 })
	if peak.Load() < 3 || peak.Load() > 6 {
		t.Fatalf("peak of %d handlers at once, want 3 to 6", peak.Load())
	}
	// Idle now: back to the minimum.
	waitFor(t, func() bool { return p.Stats().Workers == 1 })
	if s := p.Stats(); s.Retired == 0 || s.Started < 3 {
		t.Fatalf("pool stats %+v", s)
	}
}

func TestPoolExtendsLeases(t *testing.T) {
	q := newTestQueue(t)
	enqueueN(t, q, 3, "i")
	p, err := NewPool(q, func(ctx context.Context, c Claim) error {
		select {
		case <-time.After(400 * time.Millisecond): // four leases
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, WithWorkers(3, 3), WithLease(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return q.Stats().Done == 3 })
	closePool(t, p)
	if s := q.Stats(); s.LeaseExpiries != 0 || s.Claimed != 3 {
		t.Fatalf("queue stats %+v: leases were not extended", s)
	}
}

// losingQueue refuses every Extend, as a queue does once it has taken an
// item back.
type losingQueue struct{ *Memory }

func (q losingQueue) Extend(ctx context.Context, c Claim, d time.Duration) (Claim, error) {
	return c, notHeld(c)
}

func TestPoolStopsAHandlerThatLostItsClaim(t *testing.T) {
	q := newTestQueue(t)
	enqueueN(t, q, 1, "i")
	stopped := make(chan error, 1)
	p, err := NewPool(losingQueue{q}, func(ctx context.Context, c Claim) error {
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil // not acked all the same: the claim is lost
	}, WithWorkers(1, 1), WithLease(30*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's context: %v", err)
	}
	closePool(t, p)
	if s, qs := p.Stats(), q.Stats(); s.Lost != 1 || s.Done != 0 || qs.Done != 0 {
		t.Fatalf("pool %+v, queue %+v", s, qs)
	}
}

func TestPoolCloseDrainsThenGivesUp(t *testing.T) {
	q := newTestQueue(t)
	enqueueN(t, q, 2, "i")
	release := make(chan struct{})
	started := make(chan string, 2)
	p, err := NewPool(q, func(ctx context.Context, c Claim) error {
		started <- c.ID
		if c.ID == "i0" {
			<-release // finishes when let go
			return nil
		}
		<-ctx.Done() // only Close's deadline stops it
		return ctx.Err()
	}, WithWorkers(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	<-started
	go func() {
		time.Sleep(20 * time.Millisecond)
		close(release)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	// i0 finished and was acked; i1 was given back, not failed.
	s := q.Stats()
	if s.Done != 1 || s.Retried != 0 {
		t.Fatalf("queue stats %+v", s)
	}
	c, err := q.Claim(context.Background(), time.Minute)
	if err != nil || c.ID != "i1" || c.Failures != 0 {
		t.Fatalf("claim after Close: %+v, %v", c, err)
	}
	if p.Close(context.Background()) != nil {
		t.Fatal("second Close")
	}
}

func TestPoolBadInput(t *testing.T) {
	q := newTestQueue(t)
	h := func(context.Context, Claim) error { return nil }
	for _, tc := range []struct {
		q    Queue
		h    Handler
		opts []PoolOption
	}{
		{nil, h, nil}, {q, nil, nil},
		{q, h, []PoolOption{nil}},
		{q, h, []PoolOption{WithWorkers(0, 1)}},
		{q, h, []PoolOption{WithWorkers(3, 2)}},
		{q, h, []PoolOption{WithLease(0)}},
		{q, h, []PoolOption{WithScaleInterval(-1)}},
		{q, h, []PoolOption{WithPoolLogger(nil)}},
	} {
		if _, err := NewPool(tc.q, tc.h, tc.opts...); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewPool: %v, want ErrInvalid", err)
		}
	}
}
