// Package workqueue is the work queue of chapters 10–12 of Designing
// Distributed Systems: items go in, workers claim them under a lease,
// and whatever happens to a worker — its handler fails, it crashes, it
// hangs — no item is lost, and none is done twice by accident.
//
//	q, err := workqueue.NewMemory()
//	...
//	err = q.Enqueue(ctx, workqueue.Item{ID: "thumb/42", Payload: []byte("img/42.png")})
//	c, err := q.Claim(ctx, 30*time.Second) // blocks until there is work
//	if err := resize(c.Payload); err != nil {
//		q.Nack(ctx, c, err) // retried after a backoff, or a dead letter
//	} else {
//		q.Ack(ctx, c)
//	}
//
// # Leases and fencing
//
// A claim holds its item until its Deadline. A worker that needs longer
// calls Extend. Past the deadline the queue takes the item back — when a
// worker next asks for work, or at once if workers are waiting — and
// from then on the old claim is not held: its Ack, Nack or Extend fails
// with ErrNotHeld, so a worker that stalled and came back cannot mark
// done an item another worker is doing. Every claim carries a Token
// larger than any granted before it, to fence the worker's own writes.
//
// # Retries and dead letters
//
// A Nack retries the item after an exponential backoff with jitter
// (Retry). Failed attempts and expired leases are counted apart: a crash
// is not the item's fault, so it does not use up the item's failures,
// and an item whose lease has run out is retried at once. When either
// count reaches its maximum, or a Nack's reason is Permanent, the item
// becomes a dead letter, which DeadLetters lists and Requeue puts back.
//
// # Order
//
// Items come out in the order they went in, except that an item waits
// for its NotBefore and, after a failure, for its backoff. Items with the
// same Key run one at a time, in the order they were enqueued: a later
// one waits while an earlier one runs, backs off or is delayed, and goes
// once that one is done or dead.
package workqueue
