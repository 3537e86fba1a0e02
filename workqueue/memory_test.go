package workqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/distkit/distkit/internal/clock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if arg := os.Getenv(crashChildEnv); arg != "" {
		os.Exit(crashChild(arg)) // a worker process of TestCrash
	}
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixture is a queue on a fake clock, with test-sized retries.
type fixture struct {
	*Memory
	t   *testing.T
	clk *clock.Fake
}

var testRetry = Retry{MaxFailures: 3, MaxExpiries: 2, Backoff: time.Second, MaxBackoff: 4 * time.Second}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	clk := clock.NewFake(t0)
	q, err := NewMemory(append([]Option{withClock(clk), WithRetry(testRetry)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return &fixture{Memory: q, t: t, clk: clk}
}

func item(id string) Item { return Item{ID: id, Payload: []byte("p-" + id)} }

func (f *fixture) enqueue(items ...Item) {
	f.t.Helper()
	if err := f.Enqueue(context.Background(), items...); err != nil {
		f.t.Fatalf("Enqueue: %v", err)
	}
}

// claim claims without blocking: it fails the test if nothing is ready.
func (f *fixture) claim(lease time.Duration) Claim {
	f.t.Helper()
	c, ok := f.tryClaim(lease)
	if !ok {
		f.t.Fatalf("Claim: nothing ready; %+v", f.Stats())
	}
	return c
}

// tryClaim claims if an item is ready now, as Claim would, without
// blocking. (The tests of blocked claims use Claim itself.)
func (f *fixture) tryClaim(lease time.Duration) (Claim, bool) {
	f.t.Helper()
	s, e, _, err := f.Memory.tryClaim(f.local(), lease)
	if err != nil {
		f.t.Fatalf("Claim: %v", err)
	}
	if e == nil {
		return Claim{}, false
	}
	var c Claim
	c.set(e, s.deadline(e.at))
	s.mu.Unlock()
	return c, true
}

func (f *fixture) ack(c Claim) {
	f.t.Helper()
	if err := f.Ack(context.Background(), c); err != nil {
		f.t.Fatalf("Ack(%s): %v", c.ID, err)
	}
}

func (f *fixture) nack(c Claim, reason error) {
	f.t.Helper()
	if err := f.Nack(context.Background(), c, reason); err != nil {
		f.t.Fatalf("Nack(%s): %v", c.ID, err)
	}
}

func TestFIFOAndAck(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"), item("b"))
	f.enqueue(item("c"))
	for _, want := range []string{"a", "b", "c"} {
		c := f.claim(time.Minute)
		if c.ID != want || string(c.Payload) != "p-"+want || c.Attempt != 1 || c.Deadline != t0.Add(time.Minute) {
			t.Fatalf("claimed %+v, want %s, attempt 1, deadline in a minute", c, want)
		}
		f.ack(c)
		if err := f.Ack(context.Background(), c); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("second Ack: %v, want ErrNotHeld", err)
		}
	}
	if _, ok := f.tryClaim(time.Minute); ok {
		t.Fatal("claimed from an empty queue")
	}
	s := f.Stats()
	if s.Enqueued != 3 || s.Claimed != 3 || s.Done != 3 || s.Depth() != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTokensIncrease(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"), item("b"))
	a, b := f.claim(time.Minute), f.claim(time.Minute)
	f.nack(a, errors.New("x"))
	f.clk.Advance(time.Minute)
	a2 := f.claim(time.Minute)
	if !(a.Token < b.Token && b.Token < a2.Token) || a2.Attempt != 2 || a2.Failures != 1 {
		t.Fatalf("tokens %d %d %d, retry %+v", a.Token, b.Token, a2.Token, a2)
	}
}

func TestEnqueueIsIdempotent(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"), item("a"), item("b"))
	f.enqueue(item("a"))
	c := f.claim(time.Minute)
	f.enqueue(item("a")) // claimed: still held
	if s := f.Stats(); s.Enqueued != 2 || s.Duplicates != 3 || s.Ready != 1 {
		t.Fatalf("stats %+v", s)
	}
	f.ack(c)
	f.enqueue(item("a")) // done and forgotten: a new item
	if s := f.Stats(); s.Enqueued != 3 || s.Ready != 2 {
		t.Fatalf("stats after ack %+v", s)
	}
}

func TestGeneratedIDs(t *testing.T) {
	f := newFixture(t, WithShards(1))
	const n = 1000
	for range n {
		f.enqueue(Item{Payload: []byte("x")})
	}
	seen := map[string]bool{}
	for i := range n {
		c := f.claim(time.Minute)
		if c.ID == "" || seen[c.ID] {
			t.Fatalf("ID %q empty or seen", c.ID)
		}
		// The queue's prefix and the count so far, in two hex digits or
		// more (three from 256).
		if want := fmt.Sprintf("%s%02x", f.prefix, i); c.ID != want {
			t.Fatalf("ID %d is %q, want %q", i, c.ID, want)
		}
		seen[c.ID] = true
		f.ack(c)
	}
	// A generated ID cannot be given back: dedup would not see it.
	if err := f.Enqueue(context.Background(), Item{ID: f.nextIDForTest(), Payload: []byte("x")}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("Enqueue with a generated-looking ID: %v", err)
	}
	// Each shard takes its own chunk of the count, in turn.
	turn := 0
	h := newFixture(t, WithShards(2), withPick(func() int { turn++; return turn / 2 }))
	next := map[int]int{} // by shard: the next ID's count
	for i := range 4 {
		h.enqueue(Item{Payload: []byte("x")})
		c := h.claim(time.Minute)
		idx := c.e.s.idx
		if _, ok := next[idx]; !ok {
			next[idx] = len(next) * idChunk
		}
		if want := fmt.Sprintf("%s%02x", h.prefix, next[idx]); c.ID != want {
			t.Fatalf("ID %d is %q, want %q", i, c.ID, want)
		}
		next[idx]++
		h.ack(c)
	}
	if len(next) != 2 {
		t.Fatalf("items went to shards %v, want both", next)
	}
	// At a power of 16, which starts a chunk, the IDs gain a digit.
	k := newFixture(t, WithShards(1))
	k.gen.Store(1<<16 - idChunk)
	for i := range 2 * idChunk {
		if got, want := k.nextIDForTest(), fmt.Sprintf("%s%x", k.prefix, 1<<16-idChunk+i); got != want {
			t.Fatalf("ID %d past 0x%x is %q, want %q", i, 1<<16-idChunk, got, want)
		}
	}
	// Another queue's IDs differ too.
	g := newFixture(t)
	g.enqueue(Item{Payload: []byte("x")})
	if c := g.claim(time.Minute); seen[c.ID] {
		t.Fatalf("second queue generated %q again", c.ID)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, WithMaxPayload(8))
	ctx := context.Background()
	long := strings.Repeat("x", MaxIDLen+1)
	for _, tc := range []struct {
		items []Item
		want  string
	}{
		{[]Item{item("ok"), {ID: "empty"}}, "item 1 (\"empty\"): empty payload"},
		{[]Item{{ID: "big", Payload: make([]byte, 9)}}, "payload of 9 bytes, over the limit of 8"},
		{[]Item{{ID: long, Payload: []byte("x")}}, "ID of 257 bytes"},
		{[]Item{{ID: "k", Key: long, Payload: []byte("x")}}, "key of 257 bytes"},
		// Items with no ID, key or NotBefore are checked apart.
		{[]Item{{Payload: []byte("x")}, {}}, "item 1 (\"\"): empty payload"},
		{[]Item{{Payload: make([]byte, 9)}}, "item 0 (\"\"): payload of 9 bytes, over the limit of 8"},
		{[]Item{{Payload: []byte("x"), NotBefore: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}}, "want a year from 1700 to 2200"},
	} {
		err := f.Enqueue(ctx, tc.items...)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Enqueue: %v, want ErrInvalid saying %q", err, tc.want)
		}
	}
	if s := f.Stats(); s.Enqueued != 0 {
		t.Fatalf("a refused batch was half applied: %+v", s)
	}
	for _, lease := range []time.Duration{0, -time.Second} {
		if _, err := f.Claim(ctx, lease); !errors.Is(err, ErrInvalid) {
			t.Errorf("Claim(lease %v): %v, want ErrInvalid", lease, err)
		}
	}
	f.enqueue(item("a"))
	c := f.claim(time.Minute)
	if _, err := f.Extend(ctx, c, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Extend(0): %v", err)
	}
	if err := f.Ack(ctx, Claim{Item: Item{ID: "nobody"}, Token: 99}); !errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), `"nobody"`) {
		t.Errorf("Ack of an unknown claim: %v", err)
	}
	if err := f.Requeue(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Requeue of a live item: %v", err)
	}
	for _, opt := range []Option{
		nil, WithLogger(nil), WithMaxPayload(0),
		WithRetry(Retry{MaxFailures: 0, MaxExpiries: 1}),
		WithRetry(Retry{MaxFailures: 1, MaxExpiries: 0}),
		WithRetry(Retry{MaxFailures: 1, MaxExpiries: 1, Backoff: 2, MaxBackoff: 1}),
		WithRetry(Retry{MaxFailures: 1, MaxExpiries: 1, Jitter: 1.5}),
	} {
		if _, err := NewMemory(opt); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewMemory with a bad option: %v", err)
		}
	}
}

func TestLeaseExpiryFencesTheOldHolder(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	old := f.claim(10 * time.Second)
	f.clk.Advance(10 * time.Second)
	c := f.claim(10 * time.Second)
	if c.ID != "a" || c.Attempt != 2 || c.Expiries != 1 || c.Failures != 0 || c.Token <= old.Token {
		t.Fatalf("reclaimed %+v", c)
	}
	for name, err := range map[string]error{
		"Ack":  f.Ack(context.Background(), old),
		"Nack": f.Nack(context.Background(), old, errors.New("late")),
	} {
		if !errors.Is(err, ErrNotHeld) {
			t.Fatalf("old holder's %s: %v, want ErrNotHeld", name, err)
		}
	}
	if _, err := f.Extend(context.Background(), old, time.Minute); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("old holder's Extend: %v", err)
	}
	f.ack(c)
	if s := f.Stats(); s.LeaseExpiries != 1 || s.Done != 1 || s.Retried != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLateAckBeforeAnyoneElseClaims(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	c := f.claim(time.Second)
	f.clk.Advance(time.Hour)
	// Nobody asked for work, so nobody else can hold it: the ack counts.
	f.ack(c)
	if s := f.Stats(); s.Done != 1 || s.LeaseExpiries != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestExtend(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	c := f.claim(10 * time.Second)
	f.clk.Advance(8 * time.Second)
	c2, err := f.Extend(context.Background(), c, 10*time.Second)
	if err != nil || c2.Deadline != t0.Add(18*time.Second) || c2.Token != c.Token {
		t.Fatalf("Extend: %+v, %v", c2, err)
	}
	f.clk.Advance(9 * time.Second) // past the first deadline, not the second
	if _, ok := f.tryClaim(time.Second); ok {
		t.Fatal("an extended claim was taken back")
	}
	f.ack(c) // the claim from before the extension is the same claim
}

func TestRetryBackoffThenDeadLetter(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	var last Claim
	for i, wait := range []time.Duration{time.Second, 2 * time.Second} {
		c := f.claim(time.Minute)
		if c.Attempt != i+1 || c.Failures != i {
			t.Fatalf("attempt %d: %+v", i+1, c)
		}
		f.nack(c, fmt.Errorf("boom %d", i+1))
		f.clk.Advance(wait - time.Millisecond)
		if _, ok := f.tryClaim(time.Minute); ok {
			t.Fatalf("claimed before the %v backoff ended", wait)
		}
		f.clk.Advance(time.Millisecond)
		last = c
	}
	c := f.claim(time.Minute)
	if c.Token <= last.Token {
		t.Fatal("token did not increase")
	}
	f.nack(c, errors.New("boom 3")) // the third failure of three
	if _, ok := f.tryClaim(time.Minute); ok {
		t.Fatal("a dead letter was claimed")
	}
	ds, err := f.DeadLetters(context.Background())
	if err != nil || len(ds) != 1 || ds[0].ID != "a" || ds[0].Reason != "boom 3" || ds[0].Failures != 3 || !ds[0].At.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("dead letters %+v, %v", ds, err)
	}
	s := f.Stats()
	if s.Retried != 2 || s.DeadLettered != 1 || s.Dead != 1 || s.Depth() != 0 {
		t.Fatalf("stats %+v", s)
	}
	f.enqueue(item("a")) // a dead letter is held: ignored
	if err := f.Requeue(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	c = f.claim(time.Minute)
	if c.ID != "a" || c.Failures != 0 || c.Attempt != 4 {
		t.Fatalf("requeued claim %+v", c)
	}
	f.ack(c)
	if s := f.Stats(); s.Dead != 0 || s.Requeued != 1 || s.Duplicates != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPermanentFailure(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	f.nack(f.claim(time.Minute), fmt.Errorf("parse: %w", Permanent(errors.New("bad input"))))
	ds, _ := f.DeadLetters(context.Background())
	if len(ds) != 1 || ds[0].Failures != 1 || ds[0].Reason != "parse: bad input" {
		t.Fatalf("dead letters %+v", ds)
	}
	if !IsPermanent(Permanent(nil)) || IsPermanent(errors.New("x")) {
		t.Fatal("IsPermanent")
	}
}

func TestExpiriesCountApartFromFailures(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	c := f.claim(time.Second)
	f.nack(c, errors.New("fail"))
	f.clk.Advance(time.Second)
	f.claim(time.Second)
	f.clk.Advance(time.Second)
	c = f.claim(time.Second) // retried at once after an expiry
	if c.Failures != 1 || c.Expiries != 1 || c.Attempt != 3 {
		t.Fatalf("claim %+v", c)
	}
	f.clk.Advance(time.Second) // the second expiry of two
	if _, ok := f.tryClaim(time.Second); ok {
		t.Fatal("claimed after its last expiry")
	}
	ds, _ := f.DeadLetters(context.Background())
	if len(ds) != 1 || ds[0].Expiries != 2 || ds[0].Failures != 1 || !strings.Contains(ds[0].Reason, "lease expired 2 times") {
		t.Fatalf("dead letters %+v", ds)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	r := Retry{MaxFailures: 1, MaxExpiries: 1, Backoff: time.Second, MaxBackoff: 10 * time.Second, Jitter: 0.5}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 9: 10 * time.Second} {
		lo, hi := want, time.Duration(0)
		for range 200 {
			d := r.backoff(n)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < want/2 || hi > want || hi-lo < want/4 {
			t.Errorf("backoff after %d failures: %v..%v, want within [%v, %v] and spread", n, lo, hi, want/2, want)
		}
	}
}

func TestPerKeyOrder(t *testing.T) {
	f := newFixture(t)
	f.enqueue(Item{ID: "a1", Key: "a", Payload: []byte("x")}, Item{ID: "a2", Key: "a", Payload: []byte("x")},
		Item{ID: "b1", Key: "b", Payload: []byte("x")}, Item{ID: "a3", Key: "a", Payload: []byte("x")}, item("free"))
	a1, b1, free := f.claim(time.Minute), f.claim(time.Minute), f.claim(time.Minute)
	if a1.ID != "a1" || b1.ID != "b1" || free.ID != "free" {
		t.Fatalf("claimed %s %s %s", a1.ID, b1.ID, free.ID)
	}
	if _, ok := f.tryClaim(time.Minute); ok {
		t.Fatal("a2 ran beside a1")
	}
	if s := f.Stats(); s.Behind != 2 {
		t.Fatalf("stats %+v", s)
	}
	// a1 backs off: a2 still waits behind it.
	f.nack(a1, errors.New("x"))
	f.clk.Advance(time.Second)
	a1 = f.claim(time.Minute)
	if a1.ID != "a1" {
		t.Fatalf("claimed %s, want a1 again", a1.ID)
	}
	f.ack(a1)
	a2 := f.claim(time.Minute)
	if a2.ID != "a2" {
		t.Fatalf("claimed %s, want a2", a2.ID)
	}
	// a2 dies: a3 goes.
	f.nack(a2, Permanent(errors.New("x")))
	if a3 := f.claim(time.Minute); a3.ID != "a3" {
		t.Fatalf("claimed %s, want a3", a3.ID)
	}
	// Requeued, a2 goes behind a3.
	if err := f.Requeue(context.Background(), "a2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.tryClaim(time.Minute); ok {
		t.Fatal("requeued a2 ran beside a3")
	}
}

func TestNotBefore(t *testing.T) {
	f := newFixture(t)
	f.enqueue(Item{ID: "later", Payload: []byte("x"), NotBefore: t0.Add(time.Minute)}, item("now"))
	if c := f.claim(time.Hour); c.ID != "now" {
		t.Fatalf("claimed %s", c.ID)
	}
	if _, ok := f.tryClaim(time.Hour); ok {
		t.Fatal("claimed before NotBefore")
	}
	// A blocked Claim wakes when the time comes.
	got := make(chan Claim, 1) // a Claim cut short by Close must not block
	go func() {
		c, err := f.Claim(context.Background(), time.Hour)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	waitFor(t, func() bool { return f.clk.Pending() > 0 })
	f.clk.Advance(time.Minute)
	if c := <-got; c.ID != "later" {
		t.Fatalf("claimed %s", c.ID)
	}
}

func TestBlockedClaimWakesOnExpiry(t *testing.T) {
	f := newFixture(t)
	f.enqueue(item("a"))
	f.claim(time.Minute)
	got := make(chan Claim, 1) // a Claim cut short by Close must not block
	go func() {
		c, _ := f.Claim(context.Background(), time.Minute)
		got <- c
	}()
	waitFor(t, func() bool { return f.clk.Pending() > 0 })
	f.clk.Advance(time.Minute)
	if c := <-got; c.ID != "a" || c.Expiries != 1 {
		t.Fatalf("claimed %+v", c)
	}
}

func TestBlockedClaimWakesOnEnqueueCancelAndClose(t *testing.T) {
	f := newFixture(t)
	got := make(chan error, 3)
	claimOne := func(ctx context.Context) {
		c, err := f.Claim(ctx, time.Minute)
		if err == nil && c.ID != "a" {
			err = fmt.Errorf("claimed %s", c.ID)
		}
		got <- err
	}
	go claimOne(context.Background())
	waitFor(t, func() bool { return f.waiting() == 1 })
	f.enqueue(item("a"))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go claimOne(ctx)
	waitFor(t, func() bool { return f.waiting() == 1 })
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Claim: %v", err)
	}
	go claimOne(context.Background())
	waitFor(t, func() bool { return f.waiting() == 1 })
	f.Close()
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("Claim on Close: %v", err)
	}
	if err := f.Enqueue(context.Background(), item("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Close: %v", err)
	}
	if f.Close() != nil {
		t.Fatal("second Close")
	}
}

// waiting reports how many Claims are blocked.
func (q *Memory) waiting() int {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	return q.waiters.len()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConcurrentWorkersLoseNothing: producers and workers at once, on
// the real clock and every shard (half the items have IDs of their own,
// some keys, and go to shard 0; the rest go to their producer's P's
// shard), some failing once: every item is done exactly once, and
// nothing is left.
func TestConcurrentWorkersLoseNothing(t *testing.T) {
	q, err := NewMemory(WithRetry(Retry{MaxFailures: 5, MaxExpiries: 5, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const producers, workers, per = 4, 8, 500
	// Bounded: a lost item would leave the workers waiting for ever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	done := map[string]int{} // by payload, which names the item
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range per {
				it := item(fmt.Sprintf("%d-%d", p, i))
				if p%2 == 1 {
					it.ID = "" // generated, on this P's shard
				} else if i%7 == 0 {
					it.Key = fmt.Sprint("k", i%3)
				}
				if err := q.Enqueue(ctx, it); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var ww sync.WaitGroup
	for range workers {
		ww.Go(func() {
			for {
				c, err := q.Claim(ctx, time.Minute)
				if err != nil {
					return
				}
				if c.Attempt == 1 && c.Payload[len(c.Payload)-1] == '3' {
					q.Nack(ctx, c, errors.New("first try fails"))
					continue
				}
				if err := q.Ack(ctx, c); err != nil {
					t.Error(err)
				}
				mu.Lock()
				done[string(c.Payload)]++
				n := len(done)
				mu.Unlock()
				if n == producers*per {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	ww.Wait()
	if len(done) != producers*per {
		t.Fatalf("%d items done of %d after %v; stats %+v", len(done), producers*per, ctx.Err(), q.Stats())
	}
	for name, n := range done {
		if n != 1 {
			t.Fatalf("%s done %d times", name, n)
		}
	}
	if s := q.Stats(); s.Done != producers*per || s.Depth() != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func (q *Memory) nextIDForTest() string {
	s := q.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextID()
}

func TestLatencyStats(t *testing.T) {
	f := newFixture(t)
	for i := range 10 {
		f.enqueue(item(fmt.Sprint(i)))
	}
	f.clk.Advance(2 * time.Second)
	for range 10 {
		c := f.claim(time.Minute)
		f.clk.Advance(time.Second)
		f.ack(c)
	}
	s := f.Stats()
	in := func(got, lo, hi time.Duration) bool { return got >= lo && got <= hi }
	// Items were done 3 s, 4 s, ... 12 s after they were enqueued, each
	// 1 s after its claim; percentiles are within about 3%.
	if !in(s.Latency.P50, 7*time.Second, 8*time.Second) || !in(s.Latency.P99, 11500*time.Millisecond, 12400*time.Millisecond) ||
		!in(s.Handling.P90, 970*time.Millisecond, 1030*time.Millisecond) {
		t.Fatalf("latency %+v, handling %+v", s.Latency, s.Handling)
	}
}

// Ack samples latencies at random once a shard acks fast: one in two,
// four, and so on, so that 1024 samples span a second; and samples more
// again as soon as acks slow down.
func TestLatencySampling(t *testing.T) {
	f := newFixture(t, WithShards(1))
	s := f.shards[0]
	// One item in five takes 2 ms (on the fake clock), the rest none: 1024
	// acks span 410 ms, 2048 820 ms, 4096 1.6 s, so one in four is kept.
	for range 4000 {
		for j := range 5 {
			f.enqueue(Item{Payload: []byte("x")})
			c := f.claim(time.Minute)
			if j == 0 {
				f.clk.Advance(2 * time.Millisecond)
			}
			f.ack(c)
		}
	}
	if s.sampleMask != 3 {
		t.Fatalf("one ack in %d sampled, want 4", s.sampleMask+1)
	}
	// The sample is not biased towards the slow: 80% took no time.
	if st := f.Stats(); st.Handling.P50 != 0 || st.Handling.P90 < 1900*time.Microsecond || st.Handling.P90 > 2100*time.Microsecond {
		t.Fatalf("handling %+v, want P50 0 and P90 2 ms", st.Handling)
	}
	// A burst with no time passing samples as sparsely as it can...
	cycle := func() {
		f.enqueue(Item{Payload: []byte("x")})
		f.ack(f.claim(time.Minute))
	}
	for range 100 * sampleWindow {
		cycle()
	}
	if s.sampleMask != maxSampleEvery-1 {
		t.Fatalf("one ack in %d sampled in a burst, want %d", s.sampleMask+1, maxSampleEvery)
	}
	// ...and ten acks a second after it are each sampled again within
	// the first sample and four seconds: 64 acks and 40 more.
	for i := range 200 {
		f.clk.Advance(100 * time.Millisecond)
		cycle()
		if s.sampleMask == 0 {
			if i > maxSampleEvery+50 {
				t.Fatalf("each ack sampled again only after %d slow acks", i+1)
			}
			return
		}
	}
	t.Fatalf("one ack in %d sampled after 200 slow acks, want each", s.sampleMask+1)
}

// A quiet spell before an ack does not make it likelier to be recorded.
// (The first ack after each tick of the coarse clock was, once.)
func TestLatencySampleIsNotBiasedByGaps(t *testing.T) {
	q, err := NewMemory(WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	for range 100 {
		for j := range 5 {
			if err := q.Enqueue(ctx, Item{Payload: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			c, err := q.Claim(ctx, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if j == 0 {
				time.Sleep(2 * time.Millisecond)
			}
			if err := q.Ack(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := q.Stats(); st.Handling.P50 >= time.Millisecond {
		t.Fatalf("handling %+v: four in five items took no time, want P50 under 1 ms", st.Handling)
	}
}

// TestShardsDoNotStarve: items in a shard whose own workers are busy, or
// absent, are claimed by the others within about starveAfter, while
// each shard's own items go first, in order, until then.
func TestShardsDoNotStarve(t *testing.T) {
	home := 0
	f := newFixture(t, WithShards(2), withPick(func() int { return home }))
	home = 1
	f.enqueue(Item{Payload: []byte("stranded")})
	home = 0
	for range 3 {
		f.enqueue(Item{Payload: []byte("own")})
	}
	for range 2 { // nothing taken from shard 1 yet, but not for long
		if c := f.claim(time.Minute); string(c.Payload) != "own" {
			t.Fatalf("claimed %q before shard 0's own, with no time passed", c.Payload)
		}
	}
	f.clk.Advance(time.Duration(starveAfter))
	if c := f.claim(time.Minute); string(c.Payload) != "stranded" {
		t.Fatalf("claimed %q after %v, want the item of the starving shard", c.Payload, time.Duration(starveAfter))
	}
	if c := f.claim(time.Minute); string(c.Payload) != "own" {
		t.Fatalf("claimed %q, want the last of shard 0's own", c.Payload)
	}
	if s := f.Stats(); s.Claimed != 4 || s.Ready != 0 {
		t.Fatalf("stats %+v, want 4 claimed, none ready", s)
	}
}

func TestWithShardsBounds(t *testing.T) {
	for _, n := range []int{-1, maxShards + 1} {
		if _, err := NewMemory(WithShards(n)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "WithShards") {
			t.Errorf("WithShards(%d): %v, want ErrInvalid naming it", n, err)
		}
	}
	for _, n := range []int{0, 1, maxShards} {
		q, err := NewMemory(WithShards(n))
		if err != nil {
			t.Fatalf("WithShards(%d): %v", n, err)
		}
		want := n
		if n == 0 {
			want = min(runtime.GOMAXPROCS(0), maxShards)
		}
		if len(q.shards) != want {
			t.Errorf("WithShards(%d): %d shards, want %d", n, len(q.shards), want)
		}
		q.Close()
	}
}

// TestClaimsLookInShardZeroFirstForAWhile: a worker on another P than
// shard 0's, claiming items with IDs of their own (all in shard 0), looks
// there before its own empty shard, but only for zeroFirstRun claims
// after it last found its own shard empty.
func TestClaimsLookInShardZeroFirstForAWhile(t *testing.T) {
	f := newFixture(t, WithShards(2), withPick(func() int { return 1 }))
	for i := range 2 * zeroFirstRun {
		f.enqueue(item(fmt.Sprint("given-", i))) // to shard 0
	}
	f.ack(f.claim(time.Minute)) // its own shard empty: from shard 0
	if n := f.shards[1].zeroFirst.Load(); n != zeroFirstRun {
		t.Fatalf("zeroFirst %d after a claim from shard 0, want %d", n, zeroFirstRun)
	}
	f.enqueue(Item{Payload: []byte("own")}) // to shard 1
	for i := range zeroFirstRun + 1 {
		c := f.claim(time.Minute)
		f.ack(c)
		own := string(c.Payload) == "own"
		if own != (i == zeroFirstRun) {
			t.Fatalf("claim %d after the run began took %q: want shard 0's for %d claims, then its own", i, c.Payload, zeroFirstRun)
		}
	}
}

// Shards and entries are padded so that those of different shards share
// no cache line (see their types): a field added must keep it so.
func TestCacheLinePadding(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the padding is sized for 64-bit platforms")
	}
	if n := unsafe.Sizeof(shard{}); n%64 != 0 {
		t.Errorf("a shard is %d bytes, not a multiple of 64: adjust its padding", n)
	}
	if n := unsafe.Sizeof(entry{}); n <= 192 || n > 256 {
		t.Errorf("an entry is %d bytes, not in (192, 256], the allocator's 256-byte class: adjust its padding", n)
	}
}
