package workqueue

import (
	"context"
	"errors"
	"math"
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
	if err := checkBatchSize(2, items[0].logSize()+items[1].logSize(), 1000); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "split the batch") {
		t.Fatalf("checkBatchSize: %v", err)
	}
	if err := checkBatchSize(1, items[0].logSize(), 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMemory(WithMaxPayload(maxRecord)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a max payload the log cannot hold: %v", err)
	}
	f := newFixture(t)
	if err := f.Enqueue(context.Background(), Item{Payload: []byte("x"), NotBefore: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NotBefore in the year 3000: %v", err)
	}
	// Enqueue sums a batch of plain items itself: 2100 items sharing one
	// 1 MiB payload, 2.2 GB in all, which overflows a 32-bit int.
	big := make([]byte, 1<<20)
	items = make([]Item, 2100)
	for i := range items {
		items[i].Payload = big
	}
	if err := f.Enqueue(context.Background(), items...); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "split the batch") {
		t.Fatalf("Enqueue of 2.2 GB: %v", err)
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

// TestClaimRacingCloseEnds: a Claim that has looked (queue open, nothing
// ready) but not yet listed itself when Close runs must still end with
// ErrClosed. (It waited on its channel for ever, when listWaiter refused
// to list it on a closed queue.) Holding wmu widens the window between
// the look and the listing.
func TestClaimRacingCloseEnds(t *testing.T) {
	q, err := NewMemory(WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	q.wmu.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { _, err := q.Claim(ctx, time.Second); res <- err }()
	time.Sleep(50 * time.Millisecond) // it has looked, and waits for wmu in listWaiter
	closed := make(chan struct{})
	go func() { q.Close(); close(closed) }()
	for !q.closed.Load() {
		time.Sleep(time.Millisecond)
	}
	q.wmu.Unlock()
	<-closed
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("Claim racing Close returned %v, want ErrClosed", err)
	}
}

// TestWakeSpentOnAnotherShardsItemIsPassedOn: a waiter woken for an item
// in one shard may take another item, in another shard, that came while
// nobody waited (so woke nobody). It must pass the wake-up on: it used to
// only if its own shard had more, and a second waiter slept while the
// first item was ready.
//
// Shards 0, 1, 2; probes off. W (home 0) and W2 (home 1, looks 1, 2, 0)
// both wait. X goes to shard 0 between their first look and their
// listing. W's second look is held at shard 0, W2's at shard 2 (after it
// has looked at shard 1). Y goes to shard 1 and wakes W, the oldest.
// W takes X; W2 then finds shards 2 and 0 empty and sleeps, with Y ready.
func TestWakeSpentOnAnotherShardsItemIsPassedOn(t *testing.T) {
	var home atomic.Int64
	f := newFixture(t, WithShards(3), withPick(func() int { return int(home.Load()) }))
	q := f.Memory
	for _, s := range q.shards {
		s.probeAt.Store(math.MaxInt64) // no starvation probes: looks go home, home+1, ...
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	type result struct {
		c   Claim
		err error
	}
	claim := func(h int) chan result {
		home.Store(int64(h))
		ch := make(chan result, 1)
		go func() { c, err := q.Claim(ctx, time.Minute); ch <- result{c, err} }()
		time.Sleep(50 * time.Millisecond)
		return ch
	}
	q.wmu.Lock()
	w := claim(0)  // first look: nothing; now waits for wmu in listWaiter
	w2 := claim(1) // likewise, behind W
	home.Store(0)
	f.enqueue(Item{Payload: []byte("X")}) // shard 0; nobody listed, so no wake
	q.shards[0].mu.Lock()
	q.shards[2].mu.Lock()
	q.wmu.Unlock()
	for q.nwait.Load() != 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // W held at shard 0; W2 past shard 1, held at 2
	home.Store(1)
	f.enqueue(Item{Payload: []byte("Y")}) // shard 1: wakes W, the oldest
	q.shards[0].mu.Unlock()
	r := <-w
	if r.err != nil || string(r.c.Payload) != "X" {
		t.Fatalf("W: %q, %v; want X", r.c.Payload, r.err)
	}
	q.shards[2].mu.Unlock()
	r2 := <-w2
	if r2.err != nil {
		t.Fatalf("W2 blocked while Y was ready: %v; stats %+v", r2.err, q.Stats())
	}
}
