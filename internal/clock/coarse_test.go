package clock

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestCoarseNeverAheadAndRefreshes(t *testing.T) {
	defer goleak.VerifyNone(t)
	base := time.Now()
	c := NewCoarse(base)
	defer c.Close()
	var last time.Duration
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
		got := c.Since()
		if real := time.Since(base); got > real {
			t.Fatalf("coarse reading %v is ahead of the clock, %v", got, real)
		}
		if got < last {
			t.Fatalf("coarse reading went back from %v to %v", last, got)
		}
		last = got
	}
	// It moved on with the clock, so the goroutine refreshed it.
	if last < 20*time.Millisecond {
		t.Fatalf("after 50 ms of readings the coarse clock reads %v", last)
	}
}

func TestCoarseStopsWhenIdleAndOnClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := NewCoarse(time.Now())
	c.Since()
	if !c.on.Load() {
		t.Fatal("no refreshing goroutine after a reading")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.on.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the refreshing goroutine did not stop when idle")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.wg.Wait()
	c.Since() // starts it again
	c.Close()
	c.Close()
	if c.on.Load() {
		t.Fatal("running after Close")
	}
	if d := c.Since(); d <= 0 {
		t.Fatalf("reading after Close: %v", d)
	}
}
