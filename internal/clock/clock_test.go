package clock

import (
	"testing"
	"time"
)

func TestFakeRunsDueFunctionsInOrder(t *testing.T) {
	start := time.Unix(1000, 0)
	c := NewFake(start)
	var got []time.Duration
	at := func(d time.Duration) func() {
		return func() { got = append(got, c.Now().Sub(start)) }
	}
	c.AfterFunc(3*time.Second, at(3*time.Second))
	c.AfterFunc(time.Second, at(time.Second))
	stopped := c.AfterFunc(2*time.Second, at(2*time.Second))
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	c.Advance(1500 * time.Millisecond)
	if len(got) != 1 || got[0] != time.Second {
		t.Fatalf("after 1.5 s ran %v, want [1s]", got)
	}
	// A function may schedule another, which runs in the same Advance if
	// it falls due.
	c.AfterFunc(time.Second, func() {
		got = append(got, c.Now().Sub(start))
		c.AfterFunc(100*time.Millisecond, at(0))
	})
	c.Advance(10 * time.Second)
	want := []time.Duration{time.Second, 2500 * time.Millisecond, 2600 * time.Millisecond, 3 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("ran at %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ran at %v, want %v", got, want)
		}
	}
	if c.Now() != start.Add(11500*time.Millisecond) || c.Pending() != 0 {
		t.Fatalf("now %v, pending %d", c.Now().Sub(start), c.Pending())
	}
}

func TestReal(t *testing.T) {
	start := Real.Now()
	done := make(chan struct{})
	Real.AfterFunc(time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterFunc never ran")
	}
	if d := Real.Now().Sub(start); d < time.Millisecond {
		t.Fatalf("ran after %v, want 1ms or more", d)
	}
}
