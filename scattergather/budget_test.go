package scattergather

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b, err := NewBudget(0.1, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	b.Deposit(100)
	for i := range 10 {
		if !b.Withdraw() {
			t.Fatalf("withdrawal %d refused; 10%% of 100 is 10", i)
		}
	}
	if b.Withdraw() {
		t.Fatal("11th withdrawal allowed")
	}
	// Within the window, old deposits still count.
	now = now.Add(5 * time.Second)
	if b.Withdraw() {
		t.Fatal("allowed after 5 s without new requests")
	}
	b.Deposit(10)
	if !b.Withdraw() || b.Withdraw() {
		t.Fatal("10 more requests should allow exactly one more")
	}
	// Past the window, everything is forgotten.
	now = now.Add(budgetWindow)
	if b.Withdraw() {
		t.Fatal("allowed with no requests in the window")
	}
	if s := b.Stats(); s.Requests != 110 || s.Extra != 11 || s.Refused != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBudgetMinimum(t *testing.T) {
	b, _ := NewBudget(0, 2)
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	n := 0
	for b.Withdraw() {
		n++
	}
	if n != 2*budgetSlots {
		t.Fatalf("allowed %d with no requests, want %d (2 a second over the window)", n, 2*budgetSlots)
	}
}

func TestLatencyQuantiles(t *testing.T) {
	l := newLatencies(new(sync.Mutex))
	var ds []time.Duration
	for i := 1; i <= 1000; i++ {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	for _, d := range ds {
		l.add(d)
	}
	qs, n := l.quantiles(0.5, 0.9, 0.99)
	if n != 1000 {
		t.Fatalf("n = %d", n)
	}
	for i, want := range []time.Duration{500 * time.Microsecond, 900 * time.Microsecond, 990 * time.Microsecond} {
		if rel := math.Abs(float64(qs[i]-want)) / float64(want); rel > 0.035 {
			t.Errorf("quantile %d = %v, want %v within 3.5%%", i, qs[i], want)
		}
	}
	// Old windows age out.
	for range 2 * windowSize {
		l.add(time.Second)
	}
	if qs, _ := l.quantiles(0.01); qs[0] < 900*time.Millisecond {
		t.Fatalf("p1 = %v after the old samples should have aged out", qs[0])
	}
	// Every bucket's bounds contain what maps to it.
	for _, ns := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 123456789, math.MaxInt64} {
		lo, hi := bounds(bucket(ns))
		if ns < lo || ns > hi {
			t.Errorf("%d maps to bucket %d = [%d, %d]", ns, bucket(ns), lo, hi)
		}
	}
}
