package budget

import (
	"math"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b, err := New(0.1, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	b.Now = func() time.Time { return now }
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
	now = now.Add(Slots * time.Second)
	if b.Withdraw() {
		t.Fatal("allowed with no requests in the window")
	}
	if s := b.Stats(); s.Requests != 110 || s.Extra != 11 || s.Refused != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBudgetMinimum(t *testing.T) {
	b, _ := New(0, 2)
	now := time.Unix(1000, 0)
	b.Now = func() time.Time { return now }
	n := 0
	for b.Withdraw() {
		n++
	}
	if n != 2*Slots {
		t.Fatalf("allowed %d with no requests, want %d (2 a second over the window)", n, 2*Slots)
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []struct {
		ratio float64
		min   int
	}{{-0.1, 0}, {1.1, 0}, {math.NaN(), 0}, {0.1, -1}} {
		if _, err := New(c.ratio, c.min); err == nil {
			t.Errorf("New(%v, %d) = nil error", c.ratio, c.min)
		}
	}
}
