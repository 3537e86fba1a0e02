package workqueue

import (
	"context"
	"time"
)

// Item is a unit of work.
type Item struct {
	// ID names the item. Enqueue ignores an item whose ID the queue holds
	// (waiting, claimed or dead), so enqueueing is idempotent; an empty
	// ID is replaced by a generated one, unique to the queue.
	ID string
	// Payload is the work, opaque to the queue and not empty. The queue
	// keeps the slice: do not change it after Enqueue.
	Payload []byte
	// Key, if set, makes items with the same key run one at a time, in
	// the order they were enqueued (a later one waits while an earlier
	// one is claimed, backing off, or waiting for its NotBefore).
	Key string
	// NotBefore holds the item back until then; zero means at once.
	NotBefore time.Time
	// Attempt is set by the queue on a claim: 1 for the first claim of
	// the item, 2 for the next, and so on, whatever ended the earlier
	// ones (a failure or an expired lease).
	Attempt int
}

// Claim is an item held by one worker under a lease, until Ack, Nack, or
// the lease's end. Each claim has its own Token, so an Ack from a worker
// whose lease ran out and whose item went to another worker is refused
// with ErrNotHeld rather than counted twice. Pass back the value Claim
// returned (or a copy): it carries the queue's record of the item, and a
// Claim rebuilt from its fields is not held.
type Claim struct {
	Item
	// Token fences this attempt: no other claim in the queue has it, and
	// each claim of an item has a larger one than the item's claims
	// before, so it can also fence what the worker writes elsewhere for
	// the item. (Across items tokens are not in order: each shard counts
	// its own.)
	Token uint64
	// Deadline is when the lease ends, by the queue's clock. Past it, the
	// queue may give the item to another worker (it does so when a claim
	// looks in the item's shard, on Stats, or at once if workers are
	// waiting), after which the claim is not held; Extend moves it.
	Deadline time.Time
	// Failures and Expiries count the earlier attempts that ended in a
	// Nack and in an expired lease.
	Failures, Expiries int

	e *entry // the queue's record, in the queue that granted it
}

// Queue is a work queue: the in-memory [Memory], the durable one, and the
// HTTP client are all one.
type Queue interface {
	// Enqueue adds items, all or none: it checks every one first. Items
	// whose ID the queue holds are ignored.
	Enqueue(ctx context.Context, items ...Item) error
	// Claim takes the next item that may run, leasing it for lease,
	// and blocks until there is one or ctx ends.
	Claim(ctx context.Context, lease time.Duration) (Claim, error)
	// Ack marks a claimed item done.
	Ack(ctx context.Context, c Claim) error
	// Nack reports a failed attempt: the item is tried again after a
	// backoff, or becomes a dead letter once out of attempts or when
	// reason is [Permanent].
	Nack(ctx context.Context, c Claim, reason error) error
	// Extend renews the lease to lease from now, returning the claim with
	// its new Deadline.
	Extend(ctx context.Context, c Claim, lease time.Duration) (Claim, error)
}

// DeadLetter is an item that ran out of attempts.
type DeadLetter struct {
	Item
	// Reason is the last failure's error text, or why the leases expired.
	Reason string
	// Failures and Expiries count how its attempts ended.
	Failures, Expiries int
	// At is when it became a dead letter.
	At time.Time
}

// DeadLetters is what queues with a dead-letter state offer beside Queue.
type DeadLetters interface {
	// DeadLetters lists the dead letters, oldest first.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	// Requeue puts dead letters back in the queue with fresh counts of
	// failures and expiries, all or none: an unknown ID is ErrNotFound.
	Requeue(ctx context.Context, ids ...string) error
}
