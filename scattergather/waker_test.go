package scattergather

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// wakers returns a constructor per kind of waker this platform has.
func wakers(t *testing.T) map[string]func(time.Duration) waker {
	ks := map[string]func(time.Duration) waker{"timer": newTimerWaker}
	if w, err := newPreciseWaker(time.Nanosecond); err == nil {
		w.stop()
		ks["precise"] = func(d time.Duration) waker {
			w, err := newPreciseWaker(d)
			if err != nil {
				t.Fatalf("newPreciseWaker: %v", err)
			}
			return w
		}
	} else if runtime.GOOS == "linux" {
		t.Errorf("no precise waker on linux: %v", err)
	}
	return ks
}

func TestWakerWaitsItsTime(t *testing.T) {
	for name, newW := range wakers(t) {
		for _, d := range []time.Duration{0, 50 * time.Microsecond, 2 * time.Millisecond} {
			start := time.Now()
			newW(d).wait()
			if took := time.Since(start); took < d {
				t.Errorf("%s waker of %v woke after %v", name, d, took)
			}
		}
	}
}

func TestWakerStop(t *testing.T) {
	for name, newW := range wakers(t) {
		w := newW(time.Hour)
		done := make(chan struct{})
		go func() {
			w.wait()
			close(done)
		}()
		time.Sleep(time.Millisecond) // most likely waiting by now; either way it must end
		w.stop()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s waker: wait did not end on stop", name)
		}
		w.stop() // again: harmless
		// Stopped before waiting: the wait ends at once.
		w = newW(time.Hour)
		w.stop()
		w.wait()
	}
}

// TestWakerKeepsNoFiles checks that wakers close what they open, whether
// waited out, stopped while waiting or stopped first.
func TestWakerKeepsNoFiles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	// No finalizer may close a file the waker forgot.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	open := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	before := open()
	var wg sync.WaitGroup
	for i := range 300 {
		switch w := newWaker(time.Duration(i%3) * time.Millisecond); i % 3 {
		case 0, 1:
			wg.Go(w.wait) // waited out
		default:
			wg.Go(w.wait)
			w.stop()
		}
	}
	for range 100 {
		w := newWaker(time.Hour)
		w.stop()
		wg.Go(w.wait)
	}
	wg.Wait()
	if after := open(); after > before {
		t.Fatalf("%d files open before, %d after", before, after)
	}
}

// TestHedgeNeverEarly checks that firing the timer early to wait out the
// rest precisely never sends a hedge before its delay, even when the
// precise waker returns at once (as a timerfd the poller could not take
// would).
func TestHedgeNeverEarly(t *testing.T) {
	t.Run("waker", testHedgeNeverEarly)
	defer func(f func(time.Duration) waker) { newWaker = f }(newWaker)
	newWaker = func(time.Duration) waker { return brokenWaker{} }
	t.Run("broken-waker", testHedgeNeverEarly)
}

// brokenWaker's wait returns at once.
type brokenWaker struct{}

func (brokenWaker) wait() {}
func (brokenWaker) stop() {}

func testHedgeNeverEarly(t *testing.T) {
	for _, d := range []time.Duration{300 * time.Microsecond, 1500 * time.Microsecond, 3 * time.Millisecond} {
		for range 5 {
			var start time.Time
			var sent time.Duration
			replica := LeafFunc[int, int](func(context.Context, int) (int, error) {
				sent = time.Since(start) // read after Gather returns
				return 7, nil
			})
			ts := []Target[int, int]{{Leaf: hung(), Replicas: []Leaf[int, int]{replica}}}
			g := mustNew(t, ts, Sum[int](), WithHedge(Hedge{After: d}))
			ctx := ctxTimeout(t, 10*time.Second)
			start = time.Now()
			res, err := g.Gather(ctx, 0)
			if err != nil || res.Value != 7 {
				t.Fatalf("value %d, err %v", res.Value, err)
			}
			if sent < d {
				t.Fatalf("hedge after %v sent at %v", d, sent)
			}
		}
	}
}

// fakeWaker waits until stopped, and says when it waits.
type fakeWaker struct {
	waiting, stopped chan struct{}
	once             sync.Once
}

func (w *fakeWaker) wait() {
	close(w.waiting)
	<-w.stopped
}

func (w *fakeWaker) stop() { w.once.Do(func() { close(w.stopped) }) }

// TestAnswerStopsHedgeWait checks that a leaf answering while the hedge
// timer waits out its last stretch ends the wait, and no hedge is sent.
func TestAnswerStopsHedgeWait(t *testing.T) {
	if wakeEarly == 0 {
		t.Skip("the hedge timer does not fire early on this platform")
	}
	w := &fakeWaker{waiting: make(chan struct{}), stopped: make(chan struct{})}
	defer func(f func(time.Duration) waker, early time.Duration) { newWaker, wakeEarly = f, early }(newWaker, wakeEarly)
	newWaker = func(time.Duration) waker { return w }
	// The timer fires 100 ms in and waits on the fake waker, which waits
	// until stopped: the leaf answers then, however slow the machine.
	wakeEarly = 90 * time.Millisecond
	primary := LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
		select {
		case <-w.waiting:
			return 1, nil
		case <-ctx.Done(): // the hedge went out: fail, don't hang
			return 0, ctx.Err()
		}
	})
	replica := ok(7)
	ts := []Target[int, int]{{Leaf: primary, Replicas: []Leaf[int, int]{replica}}}
	g := mustNew(t, ts, Sum[int](), WithHedge(Hedge{After: 190 * time.Millisecond}))
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.Value != 1 || res.Hedges != 0 || replica.calls.Load() != 0 {
		t.Fatalf("value %d, hedges %d, replica calls %d, err %v", res.Value, res.Hedges, replica.calls.Load(), err)
	}
	select {
	case <-w.stopped:
	default:
		t.Fatal("the wait was not stopped")
	}
}
