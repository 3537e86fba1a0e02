package scattergather

import (
	"time"

	"go.uber.org/zap"
)

// Option configures a Gatherer; pass options to New.
type Option func(*options) error

type options struct {
	logger      *zap.Logger
	policy      Policy
	limit       int
	leafTimeout time.Duration
	reserve     time.Duration
	hedge       *Hedge
}

func defaultOptions() options {
	return options{logger: zap.NewNop(), policy: All()}
}

// WithLogger logs through l: failed leaves at Debug.
// Default: no logging.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalid("WithLogger: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithPolicy sets what a gather needs to succeed (see Policy).
// Default: All.
func WithPolicy(p Policy) Option {
	return func(o *options) error {
		o.policy = p
		return nil
	}
}

// WithConcurrency runs at most n leaves at a time; the others start as
// running ones finish. Those that never start are reported Skipped if
// the gather had decided, TimedOut or Canceled if its context ended.
// Default: 0, no limit.
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return invalid("WithConcurrency(%d): want 0 (no limit) or more", n)
		}
		o.limit = n
		return nil
	}
}

// WithLeafTimeout gives each request to a leaf or replica at most d, and
// never beyond the gather's own deadline. A leaf that runs out of it is
// reported TimedOut. Default: 0, the gather's deadline only.
func WithLeafTimeout(d time.Duration) Option {
	return func(o *options) error { return setDuration("WithLeafTimeout", d, &o.leafTimeout) }
}

// WithReserve ends the gather d before its context's deadline, so that
// the caller (in a tree, the parent gatherer) has d left to use what it
// returns before its own deadline passes. Leaves get the shortened
// deadline. It has no effect when the context has no deadline.
// Default: 0.
func WithReserve(d time.Duration) Option {
	return func(o *options) error { return setDuration("WithReserve", d, &o.reserve) }
}

func setDuration(option string, d time.Duration, field *time.Duration) error {
	if d < 0 {
		return invalid("%s(%v): want 0 or more", option, d)
	}
	*field = d
	return nil
}

// Hedge says when to send a slow leaf's request to its replicas as well.
// A leaf's request goes to its first replica once it has run After (or the
// observed Percentile of recent leaf latencies, when set) without an
// answer, then to the next replica after as long again, while Budget
// allows; the first answer wins and the other requests are cancelled. A
// leaf that fails goes to its next replica at once, also within the
// budget. Nothing is sent after the gather's deadline.
type Hedge struct {
	// After is the fixed delay before a hedge; with Percentile set, the
	// delay until enough latencies have been observed (20), or 0 to
	// wait for them.
	After time.Duration
	// Percentile, between 0 and 1 exclusive (0.95 for the 95th), hedges
	// after that percentile of the latencies of recent leaf requests
	// that answered, over the last one to two thousand.
	Percentile float64
	// Budget limits hedges and failovers; nil means no limit.
	Budget *Budget
}

// WithHedge hedges slow leaves to their replicas (Target.Replicas) as h
// says. Default: no hedging.
func WithHedge(h Hedge) Option {
	return func(o *options) error {
		switch {
		case h.After < 0:
			return invalid("Hedge.After %v: want 0 or more", h.After)
		case h.Percentile != 0 && !(h.Percentile > 0 && h.Percentile < 1):
			return invalid("Hedge.Percentile %v: want between 0 and 1 exclusive", h.Percentile)
		case h.After == 0 && h.Percentile == 0:
			return invalid("Hedge: set After, Percentile or both")
		}
		o.hedge = &h
		return nil
	}
}
