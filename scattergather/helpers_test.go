package scattergather

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var errLeaf = errors.New("leaf error")

// leaf is a scripted leaf: it answers val after delay, fails, or hangs
// until its context ends. It counts calls and how many saw their context
// end.
type leaf struct {
	val      int
	delay    time.Duration
	fail     bool
	hang     bool
	calls    atomic.Int32
	canceled atomic.Int32
	running  *atomic.Int32 // shared gauge of concurrent calls, if set
	peak     *atomic.Int32
}

func (l *leaf) Do(ctx context.Context, _ int) (int, error) {
	l.calls.Add(1)
	if l.running != nil {
		r := l.running.Add(1)
		defer l.running.Add(-1)
		for {
			p := l.peak.Load()
			if r <= p || l.peak.CompareAndSwap(p, r) {
				break
			}
		}
	}
	var wait <-chan time.Time
	if !l.hang {
		t := time.NewTimer(l.delay)
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-wait:
	case <-ctx.Done():
		l.canceled.Add(1)
		return 0, ctx.Err()
	}
	if l.fail {
		return 0, errLeaf
	}
	return l.val, nil
}

func targets(ls ...*leaf) []Target[int, int] {
	ts := make([]Target[int, int], len(ls))
	for i, l := range ls {
		ts[i] = Target[int, int]{Leaf: l}
	}
	return ts
}

func ok(v int) *leaf                    { return &leaf{val: v} }
func slow(v int, d time.Duration) *leaf { return &leaf{val: v, delay: d} }
func failing() *leaf                    { return &leaf{fail: true} }
func hung() *leaf                       { return &leaf{hang: true} }
func failAfter(d time.Duration) *leaf   { return &leaf{fail: true, delay: d} }
func mustNew[Out any](t testing.TB, ts []Target[int, int], r Reducer[int, Out], opts ...Option) *Gatherer[int, int, Out] {
	t.Helper()
	g, err := New(ts, r, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
