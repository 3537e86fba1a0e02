package scattergather

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPolicies(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		policy Policy
		leaves []*leaf
		// want
		err                            bool
		value                          int
		okN, failed, timedOut, skipped int
		early                          bool
	}{
		{"all ok", All(), []*leaf{ok(1), ok(2), ok(3)}, false, 6, 3, 0, 0, 0, false},
		{"all fails fast on one failure", All(), []*leaf{ok(1), failAfter(10 * ms), hung()}, true, 1, 1, 1, 0, 1, true},
		{"all at deadline", All(), []*leaf{ok(1), ok(2), hung()}, true, 3, 2, 0, 1, 0, false},
		{"quorum met waits for all", Quorum(2), []*leaf{ok(1), failing(), slow(4, 20*ms)}, false, 5, 2, 1, 0, 0, false},
		{"quorum met at deadline", Quorum(2), []*leaf{ok(1), ok(2), hung()}, false, 3, 2, 0, 1, 0, false},
		{"quorum impossible fails early", Quorum(2), []*leaf{failing(), failing(), hung()}, true, 0, 0, 2, 0, 1, true},
		{"quorum short at deadline", Quorum(2), []*leaf{ok(1), hung(), hung()}, true, 1, 1, 0, 2, 0, false},
		{"first stops early", First(1), []*leaf{ok(1), hung(), hung()}, false, 1, 1, 0, 0, 2, true},
		{"first skips failures", First(2), []*leaf{failing(), ok(1), slow(2, 10*ms), hung()}, false, 3, 2, 1, 0, 1, true},
		{"first impossible", First(2), []*leaf{failAfter(10 * ms), failAfter(10 * ms), ok(1)}, true, 1, 1, 2, 0, 0, false},
		{"best effort at deadline", BestEffort(), []*leaf{ok(1), failing(), hung()}, false, 1, 1, 1, 1, 0, false},
		{"best effort none answered", BestEffort(), []*leaf{failing(), hung()}, false, 0, 0, 1, 1, 0, false},
		{"best effort all answered", BestEffort(), []*leaf{ok(1), ok(2)}, false, 3, 2, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustNew(t, targets(tt.leaves...), Sum[int](), WithPolicy(tt.policy))
			res, err := g.Gather(ctxTimeout(t, 200*ms), 0)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("err = %v, want ErrIncomplete", err)
			}
			got := [...]int{res.Value, res.OK, res.Failed, res.TimedOut, res.Skipped}
			want := [...]int{tt.value, tt.okN, tt.failed, tt.timedOut, tt.skipped}
			if got != want || res.Early != tt.early {
				t.Fatalf("value, ok, failed, timed out, skipped = %v, early %v; want %v, early %v (%+v)", got, res.Early, want, tt.early, res.Leaves)
			}
			for _, l := range tt.leaves {
				if l.hang && l.calls.Load() > 0 && l.canceled.Load() == 0 {
					t.Fatal("a hung leaf was not cancelled")
				}
			}
		})
	}
}

func TestIncompleteError(t *testing.T) {
	g := mustNew(t, targets(ok(1), failing(), hung()), Sum[int](), WithPolicy(Quorum(2)))
	res, err := g.Gather(ctxTimeout(t, 50*time.Millisecond), 0)
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *IncompleteError", err)
	}
	if !errors.Is(err, errLeaf) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v does not match the leaf's error and the deadline", err)
	}
	if ie.OK != 1 || ie.Need != 2 || len(ie.Leaves) != 3 || res.Value != 1 {
		t.Fatalf("IncompleteError %+v, value %d", ie, res.Value)
	}
	for _, want := range []string{"1 of 3", "quorum(2)", "1 failed", "1 timed out", "leaf-1: leaf error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// TestDeadline: the call returns close to its deadline with the leaves that
// answered, and every leaf still running sees its context end.
func TestDeadline(t *testing.T) {
	ls := []*leaf{ok(1), slow(2, 5*time.Millisecond), hung(), hung()}
	g := mustNew(t, targets(ls...), Sum[int](), WithPolicy(BestEffort()))
	const d = 100 * time.Millisecond
	start := time.Now()
	res, err := g.Gather(ctxTimeout(t, d), 0)
	took := time.Since(start)
	if err != nil || res.Value != 3 || res.TimedOut != 2 {
		t.Fatalf("value %d, timed out %d, err %v", res.Value, res.TimedOut, err)
	}
	// A generous margin: this checks that Gather does not wait past the
	// deadline, not how fast it is.
	if took < d || took > d+time.Second {
		t.Fatalf("returned after %v, want just after the %v deadline", took, d)
	}
	for _, l := range ls[2:] {
		if l.canceled.Load() != 1 {
			t.Fatal("a running leaf did not see the deadline")
		}
	}
	for _, r := range res.Leaves[2:] {
		if r.Outcome != TimedOut || !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Fatalf("report %+v, want timed out with the deadline's error", r)
		}
	}
}

func TestCancelReachesEveryLeaf(t *testing.T) {
	ls := []*leaf{hung(), hung(), hung(), ok(1)}
	// Cancel only once the quick leaf's answer is merged (its outcome is
	// recorded under the same lock, before Add), so that it counts as ok
	// however the goroutines are scheduled.
	merged := make(chan struct{})
	sum := func() Merger[int, int] { return &signalMerger{Merger: Sum[int]()(), added: merged} }
	g := mustNew(t, targets(ls...), sum, WithPolicy(BestEffort()))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-merged
		for ls[0].calls.Load()+ls[1].calls.Load()+ls[2].calls.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	res, err := g.Gather(ctx, 0)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want incomplete and cancelled (even for best effort)", err)
	}
	if res.Canceled != 3 || res.OK != 1 {
		t.Fatalf("canceled %d, ok %d: %+v", res.Canceled, res.OK, res.Leaves)
	}
	for _, l := range ls[:3] {
		if l.canceled.Load() != 1 {
			t.Fatal("a leaf did not see the cancellation")
		}
	}
}

func TestContextDoneBeforeStart(t *testing.T) {
	l := ok(1)
	g := mustNew(t, targets(l), Sum[int](), WithPolicy(BestEffort()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := g.Gather(ctx, 0)
	if !errors.Is(err, context.Canceled) || res.Canceled != 1 || l.calls.Load() != 0 {
		t.Fatalf("err %v, canceled %d, calls %d", err, res.Canceled, l.calls.Load())
	}
}

func TestConcurrencyLimit(t *testing.T) {
	var running, peak atomic.Int32
	ls := make([]*leaf, 20)
	for i := range ls {
		ls[i] = &leaf{val: 1, delay: time.Millisecond, running: &running, peak: &peak}
	}
	g := mustNew(t, targets(ls...), Sum[int](), WithConcurrency(3))
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.Value != 20 {
		t.Fatalf("value %d, err %v", res.Value, err)
	}
	if p := peak.Load(); p > 3 || p < 1 {
		t.Fatalf("peak concurrency %d, want 1 to 3", p)
	}

	// Leaves that never start because the gather had enough are skipped.
	first := mustNew(t, targets(ok(1), ok(2), ok(3), ok(4)), Sum[int](), WithConcurrency(1), WithPolicy(First(1)))
	res, err = first.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.OK != 1 || res.Skipped != 3 || res.Leaves[3].Latency != 0 {
		t.Fatalf("ok %d skipped %d err %v: %+v", res.OK, res.Skipped, err, res.Leaves)
	}
}

func TestLeafTimeout(t *testing.T) {
	g := mustNew(t, targets(ok(1), hung()), Sum[int](), WithLeafTimeout(20*time.Millisecond), WithPolicy(Quorum(1)))
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.TimedOut != 1 || res.Value != 1 {
		t.Fatalf("timed out %d, value %d, err %v", res.TimedOut, res.Value, err)
	}
	if r := res.Leaves[1]; !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("report %+v", r)
	}
}

func TestPanickingLeaf(t *testing.T) {
	boom := LeafFunc[int, int](func(context.Context, int) (int, error) { panic("boom") })
	g := mustNew(t, []Target[int, int]{{Leaf: boom}, {Leaf: ok(2)}}, Sum[int](), WithPolicy(Quorum(1)))
	res, err := g.Gather(context.Background(), 0)
	if err != nil || res.Failed != 1 || !strings.Contains(res.Leaves[0].Err.Error(), "panicked: boom") {
		t.Fatalf("err %v, %+v", err, res.Leaves)
	}
}

// TestTree: gatherers are leaves of a gatherer. The inner ones reserve
// time, so the root gets their partial sums before its own deadline.
func TestTree(t *testing.T) {
	inner := func(ls ...*leaf) Target[int, int] {
		g := mustNew(t, targets(ls...), Sum[int](), WithPolicy(BestEffort()), WithReserve(50*time.Millisecond))
		return Target[int, int]{Leaf: g}
	}
	root := mustNew(t, []Target[int, int]{
		inner(ok(1), ok(2)),
		inner(ok(10), hung()),
		inner(ok(100), slow(200, time.Millisecond)),
	}, Sum[int]())
	res, err := root.Gather(ctxTimeout(t, 200*time.Millisecond), 0)
	if err != nil || res.Value != 313 {
		t.Fatalf("value %d, err %v: %+v", res.Value, err, res.Leaves)
	}
}

func TestStats(t *testing.T) {
	g := mustNew(t, targets(ok(1), failing(), slow(3, time.Millisecond)), Sum[int](), WithPolicy(Quorum(1)))
	for range 10 {
		if _, err := g.Gather(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	s := g.Stats()
	if s.Calls != 10 || s.Failures != 0 || s.Leaves != 30 || s.OK != 20 || s.Failed != 10 {
		t.Fatalf("%+v", s)
	}
	if s.LeafP99 < time.Millisecond/2 || s.CallP50 < time.Millisecond/2 || s.LeafP50 > s.LeafP99 {
		t.Fatalf("latencies %+v", s)
	}
}

func TestInvalid(t *testing.T) {
	one := targets(ok(1))
	tests := []struct {
		name string
		ts   []Target[int, int]
		r    Reducer[int, int]
		opts []Option
		want string
	}{
		{"no leaves", nil, Sum[int](), nil, "no leaves"},
		{"nil reducer", one, nil, nil, "nil Reducer"},
		{"nil leaf", []Target[int, int]{{Name: "a"}}, Sum[int](), nil, "target 0 (a): nil Leaf"},
		{"nil replica", []Target[int, int]{{Leaf: ok(1), Replicas: []Leaf[int, int]{nil}}}, Sum[int](), nil, "replica 0 is nil"},
		{"duplicate names", []Target[int, int]{{Name: "a", Leaf: ok(1)}, {Name: "a", Leaf: ok(1)}}, Sum[int](), nil, `both named "a"`},
		{"k > n", one, Sum[int](), []Option{WithPolicy(Quorum(2))}, "between 1 and the number of leaves, 1"},
		{"k < 1", one, Sum[int](), []Option{WithPolicy(First(0))}, "first(0)"},
		{"negative limit", one, Sum[int](), []Option{WithConcurrency(-1)}, "WithConcurrency(-1)"},
		{"negative leaf timeout", one, Sum[int](), []Option{WithLeafTimeout(-1)}, "WithLeafTimeout"},
		{"negative reserve", one, Sum[int](), []Option{WithReserve(-1)}, "WithReserve"},
		{"empty hedge", one, Sum[int](), []Option{WithHedge(Hedge{})}, "set After, Percentile or both"},
		{"bad percentile", one, Sum[int](), []Option{WithHedge(Hedge{Percentile: 1})}, "Percentile 1"},
		{"nil option", one, Sum[int](), []Option{nil}, "nil Option"},
		{"nil logger", one, Sum[int](), []Option{WithLogger(nil)}, "nil logger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.ts, tt.r, tt.opts...)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
	for _, b := range []struct {
		ratio float64
		min   int
	}{{-0.1, 0}, {1.5, 0}, {0.1, -1}} {
		if _, err := NewBudget(b.ratio, b.min); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewBudget(%v, %d) = %v, want ErrInvalid", b.ratio, b.min, err)
		}
	}
}

// TestDeadlineSeenAsFailure: a leaf that enforces the deadline itself
// fails a moment before the context's timer fires; that is the deadline's
// doing, not an early policy failure.
func TestDeadlineSeenAsFailure(t *testing.T) {
	own := LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
		dl, _ := ctx.Deadline()
		for time.Now().Before(dl) {
			time.Sleep(100 * time.Microsecond)
		}
		return 0, errors.New("i/o timeout")
	})
	for range 20 {
		g := mustNew(t, []Target[int, int]{{Leaf: own}, {Leaf: hung()}}, Sum[int]())
		res, err := g.Gather(ctxTimeout(t, 5*time.Millisecond), 0)
		var ie *IncompleteError
		if !errors.As(err, &ie) || !errors.Is(ie.Cause, context.DeadlineExceeded) || res.Early || res.TimedOut != 2 {
			t.Fatalf("err %v, early %v, %+v", err, res.Early, res.Leaves)
		}
	}
}

// TestNotStartedAtDeadline: leaves still waiting for a slot when the
// deadline passes timed out; they were needed.
func TestNotStartedAtDeadline(t *testing.T) {
	g := mustNew(t, targets(hung(), hung(), hung()), Sum[int](), WithConcurrency(1))
	res, err := g.Gather(ctxTimeout(t, 20*time.Millisecond), 0)
	if !errors.Is(err, context.DeadlineExceeded) || res.TimedOut != 3 || res.Skipped != 0 {
		t.Fatalf("err %v, %+v", err, res.Leaves)
	}
	for _, l := range res.Leaves {
		if !errors.Is(l.Err, context.DeadlineExceeded) {
			t.Fatalf("%+v", l)
		}
	}
}

// signalMerger closes added after its first Add.
type signalMerger struct {
	Merger[int, int]
	added chan struct{}
	once  sync.Once
}

func (m *signalMerger) Add(leaf int, r int) bool {
	done := m.Merger.Add(leaf, r)
	m.once.Do(func() { close(m.added) })
	return done
}
