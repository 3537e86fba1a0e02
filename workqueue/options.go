package workqueue

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/distkit/distkit/internal/clock"
	"go.uber.org/zap"
)

// Option configures a queue.
type Option func(*options) error

type options struct {
	log        *zap.Logger
	retry      Retry
	maxPayload int
	clock      clock.Clock
	shards     int        // 0: GOMAXPROCS
	pick       func() int // the caller's shard; nil: its P's
}

// Limits on what an item may carry.
const (
	// DefaultMaxPayload is the largest payload accepted by default.
	DefaultMaxPayload = 1 << 20
	// MaxIDLen and MaxKeyLen bound an item's ID and key, in bytes.
	MaxIDLen  = 256
	MaxKeyLen = 256
)

func defaultOptions() options {
	return options{log: zap.NewNop(), retry: DefaultRetry, maxPayload: DefaultMaxPayload, clock: clock.Real}
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return o, invalid("nil Option")
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// WithLogger logs through l (dead letters, expired leases). Default: none.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalid("nil logger")
		}
		o.log = l
		return nil
	}
}

// WithMaxPayload refuses payloads larger than n bytes. Default
// DefaultMaxPayload (1 MiB).
func WithMaxPayload(n int) Option {
	return func(o *options) error {
		if n < 1 || n > maxRecord/2 {
			return invalid("max payload %d: want 1 to %d", n, maxRecord/2)
		}
		o.maxPayload = n
		return nil
	}
}

// Retry says how failed attempts are retried.
//
// A failure (a Nack) and an expired lease (the worker crashed, hung or
// lost its connection) are counted apart: an item that crashes workers
// should not be charged with handler errors, and one whose handler fails
// should not wait for leases to run out. The item becomes a dead letter
// when either count reaches its maximum.
type Retry struct {
	// MaxFailures is how many failed attempts an item gets.
	MaxFailures int
	// MaxExpiries is how many expired leases an item gets.
	MaxExpiries int
	// Backoff is the wait after the first failure; it doubles with each
	// further one, up to MaxBackoff. An item whose lease expired is
	// retried at once.
	Backoff, MaxBackoff time.Duration
	// Jitter, in [0, 1], takes up to that fraction off each wait at
	// random, so that items failing together do not retry together.
	Jitter float64
}

// DefaultRetry: 10 failures, 5 expired leases, backoff from 1 s doubling
// to 5 min, with up to 20% taken off at random.
var DefaultRetry = Retry{MaxFailures: 10, MaxExpiries: 5, Backoff: time.Second, MaxBackoff: 5 * time.Minute, Jitter: 0.2}

// WithRetry sets the retry policy. Default DefaultRetry.
func WithRetry(r Retry) Option {
	return func(o *options) error {
		switch {
		case r.MaxFailures < 1:
			return invalid("Retry.MaxFailures %d: want 1 or more", r.MaxFailures)
		case r.MaxExpiries < 1:
			return invalid("Retry.MaxExpiries %d: want 1 or more", r.MaxExpiries)
		case r.Backoff < 0 || r.MaxBackoff < r.Backoff:
			return invalid("Retry backoff %v up to %v: want 0 ≤ Backoff ≤ MaxBackoff", r.Backoff, r.MaxBackoff)
		case !(r.Jitter >= 0 && r.Jitter <= 1):
			return invalid("Retry.Jitter %v: want between 0 and 1", r.Jitter)
		}
		o.retry = r
		return nil
	}
}

// WithShards spreads the queue's items over n shards, each under its own
// lock, so that workers on different cores seldom wait for each other.
// The default, 0, is one shard per GOMAXPROCS, at most 64. With more than
// one, order is first in, first out within a shard and only roughly
// across them (see [Memory]); WithShards(1) keeps one strict FIFO, at the
// cost of one lock for all.
func WithShards(n int) Option {
	return func(o *options) error {
		if n < 0 || n > maxShards {
			return invalid("WithShards(%d): want 0 (one per GOMAXPROCS) to %d", n, maxShards)
		}
		o.shards = n
		return nil
	}
}

// withPick picks the caller's shard with pick rather than by its P
// (tests drive which shard an enqueue or claim starts at).
func withPick(pick func() int) Option {
	return func(o *options) error {
		o.pick = pick
		return nil
	}
}

// withClock runs the queue on c (tests drive a fake one).
func withClock(c clock.Clock) Option {
	return func(o *options) error {
		o.clock = c
		return nil
	}
}

// backoff returns the wait after the n-th failure (n ≥ 1).
func (r Retry) backoff(n int) time.Duration {
	d := float64(r.Backoff) * math.Pow(2, float64(n-1))
	d = min(d, float64(r.MaxBackoff))
	d -= d * r.Jitter * rand.Float64()
	return time.Duration(d)
}

// check validates an item against the limits.
func (o *options) check(i int, it *Item) error {
	switch {
	case len(it.Payload) == 0:
		return invalid("item %d (%q): empty payload", i, it.ID)
	case len(it.Payload) > o.maxPayload:
		return invalid("item %d (%q): payload of %d bytes, over the limit of %d", i, it.ID, len(it.Payload), o.maxPayload)
	case len(it.ID) > MaxIDLen:
		return invalid("item %d: ID of %d bytes, over the limit of %d", i, len(it.ID), MaxIDLen)
	case len(it.Key) > MaxKeyLen:
		return invalid("item %d (%q): key of %d bytes, over the limit of %d", i, it.ID, len(it.Key), MaxKeyLen)
	case !it.NotBefore.IsZero() && (it.NotBefore.Year() < 1700 || it.NotBefore.Year() > 2200):
		return invalid("item %d (%q): not before %v, want a year from 1700 to 2200", i, it.ID, it.NotBefore)
	}
	return nil
}

// logSize bounds what the item takes in the log. In an int64: a batch of
// items that share one payload could overflow a 32-bit int.
func (it *Item) logSize() int64 {
	return int64(len(it.Payload)) + int64(len(it.ID)) + int64(len(it.Key)) + 64
}

// checkBatchSize bounds what one operation logs, n items of total
// logSize: a record over limit (maxRecord) would read back as a torn tail.
func checkBatchSize(n int, total int64, limit int) error {
	if total > int64(limit) {
		return invalid("%d items of %d bytes in all, over the %d one call may add: split the batch", n, total, limit)
	}
	return nil
}
