package scattergather

import (
	"sync"
	"time"
)

// Budget limits the extra requests that hedges (and failovers to replicas)
// add, so that they cannot multiply the load on leaves that are slow
// because they are overloaded. Over a sliding 10 s window it allows extra
// requests up to Ratio of the requests made, plus MinPerSecond each second
// so that a quiet service can still hedge. A Budget is safe for concurrent
// use and may be shared by several Gatherers (and by anything else that
// retries or hedges).
type Budget struct {
	ratio  float64
	minSec float64
	now    func() time.Time

	mu      sync.Mutex
	slots   [budgetSlots]budgetSlot
	refused uint64
	spent   uint64
	made    uint64
}

const (
	budgetSlots  = 10
	budgetWindow = budgetSlots * time.Second
)

type budgetSlot struct {
	sec         int64 // unix second the slot counts
	made, spent int
}

// BudgetStats are a Budget's counters since it was made.
type BudgetStats struct {
	Requests uint64 // requests deposited
	Extra    uint64 // extra requests allowed
	Refused  uint64 // extra requests refused
}

// NewBudget returns a budget that allows extra requests up to ratio of the
// requests made (0.05 for 5%) over a 10 s window, plus minPerSecond extra
// requests per second.
func NewBudget(ratio float64, minPerSecond int) (*Budget, error) {
	if !(ratio >= 0 && ratio <= 1) {
		return nil, invalid("budget ratio %v: want 0 to 1", ratio)
	}
	if minPerSecond < 0 {
		return nil, invalid("budget minimum %d per second: want 0 or more", minPerSecond)
	}
	return &Budget{ratio: ratio, minSec: float64(minPerSecond), now: time.Now}, nil
}

// slot returns the slot for the current second, clearing it if it last
// counted an older second. Called with b.mu held.
func (b *Budget) slot() *budgetSlot {
	sec := b.now().Unix()
	s := &b.slots[sec%budgetSlots]
	if s.sec != sec {
		*s = budgetSlot{sec: sec}
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
		if s := &b.slots[i]; cur.sec-s.sec < budgetSlots {
			made += s.made
			spent += s.spent
		}
	}
	if float64(spent) >= b.ratio*float64(made)+b.minSec*budgetSlots {
		b.refused++
		return false
	}
	cur.spent++
	b.spent++
	return true
}

// Stats returns the budget's counters.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetStats{Requests: b.made, Extra: b.spent, Refused: b.refused}
}
