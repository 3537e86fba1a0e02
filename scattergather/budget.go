package scattergather

import "github.com/distkit/distkit/internal/budget"

// Budget limits the extra requests that hedges (and failovers to replicas)
// add, so that they cannot multiply the load on leaves that are slow
// because they are overloaded. Over a sliding 10 s window it allows extra
// requests up to Ratio of the requests made, plus MinPerSecond each second
// so that a quiet service can still hedge. A Budget is safe for concurrent
// use and may be shared by several Gatherers and by anything else that
// retries or hedges: an ambassador.Router takes one through
// ambassador.WithBudget.
type Budget struct{ b *budget.Budget }

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
	b, err := budget.New(ratio, minPerSecond)
	if err != nil {
		return nil, invalid("%v", err)
	}
	return &Budget{b}, nil
}

// Deposit records n requests made.
func (b *Budget) Deposit(n int) { b.b.Deposit(n) }

// Withdraw takes one extra request from the budget and reports whether
// it was allowed.
func (b *Budget) Withdraw() bool { return b.b.Withdraw() }

// Stats returns the budget's counters.
func (b *Budget) Stats() BudgetStats { return BudgetStats(b.b.Stats()) }
