// Package budget is the one budget type that limits the extra requests
// retries, hedges and failovers add, shared by scattergather and
// ambassador (which wrap or accept it, since pattern packages do not
// import each other).
package budget

import (
	"fmt"
	"sync"
	"time"
)

// Budget allows extra requests, over a sliding window of Slots seconds,
// up to a ratio of the requests made plus a minimum per second, so that
// a quiet service can still retry. It is safe for concurrent use.
type Budget struct {
	ratio  float64
	minSec float64
	// Now tells the time; tests replace it before first use.
	Now func() time.Time

	mu      sync.Mutex
	slots   [Slots]slot
	refused uint64
	spent   uint64
	made    uint64
}

// Slots is the window in seconds, one slot a second.
const Slots = 10

type slot struct {
	sec         int64 // unix second the slot counts
	made, spent int
}

// Stats are a Budget's counters since it was made.
type Stats struct {
	Requests uint64 // requests deposited
	Extra    uint64 // extra requests allowed
	Refused  uint64 // extra requests refused
}

// New returns a budget that allows extra requests up to ratio (0 to 1)
// of the requests made over the window, plus minPerSecond a second. Its
// error names the bad argument, for the caller to wrap.
func New(ratio float64, minPerSecond int) (*Budget, error) {
	if !(ratio >= 0 && ratio <= 1) {
		return nil, fmt.Errorf("budget ratio %v: want 0 to 1", ratio)
	}
	if minPerSecond < 0 {
		return nil, fmt.Errorf("budget minimum %d per second: want 0 or more", minPerSecond)
	}
	return &Budget{ratio: ratio, minSec: float64(minPerSecond), Now: time.Now}, nil
}

// slot returns the slot for the current second, clearing it if it last
// counted an older second. Called with b.mu held.
func (b *Budget) slot() *slot {
	sec := b.Now().Unix()
	s := &b.slots[sec%Slots]
	if s.sec != sec {
		*s = slot{sec: sec}
	}
	return s
}

// Deposit records n requests made.
func (b *Budget) Deposit(n int) {
	b.mu.Lock()
	b.slot().made += n
	b.made += uint64(n)
	b.mu.Unlock()
}

// Withdraw takes one extra request from the budget and reports whether
// it was allowed.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.slot()
	var made, spent int
	for i := range b.slots {
		if s := &b.slots[i]; cur.sec-s.sec < Slots {
			made += s.made
			spent += s.spent
		}
	}
	if float64(spent) >= b.ratio*float64(made)+b.minSec*Slots {
		b.refused++
		return false
	}
	cur.spent++
	b.spent++
	return true
}

// Stats returns the budget's counters.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Requests: b.made, Extra: b.spent, Refused: b.refused}
}
