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
// unique in the queue and larger than any granted before for its item,
// to fence the worker's own writes.
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
// A queue keeps its items in shards, one per GOMAXPROCS, so that workers
// on different cores do not wait for one lock. Items with no ID and no
// Key go to the shard of the core that enqueued them, and a Claim takes
// from its own core's shard first, then from the others; a shard that
// has had nothing taken for about a millisecond is looked at first by
// the others, so none is left behind. Within a shard, items come out in
// the order they went in, except that an item waits for its NotBefore
// and, after a failure, for its backoff. Across shards the order is only
// rough. Items with an ID or a Key of their own share one shard, and so
// keep their order among themselves; so do the other items of a batch
// that has one, and every item a durable queue restores on open. WithShards(1) keeps one strict
// order for all, at the cost of one lock.
//
// Items with the same Key run one at a time, in the order they were
// enqueued: a later one waits while an earlier one runs, backs off or is
// delayed, and goes once that one is done or dead.
//
// # Durability
//
// OpenDisk opens a queue that logs every change to a write-ahead log in
// its directory and restores it on open; Enqueue, Ack, Nack and Requeue
// return once their change is fsynced, and callers that change the queue
// at the same time share one fsync. A process killed at any moment loses
// nothing acknowledged. Claims are not logged: after a restart, claimed
// items are claimable again. The log is compacted as it grows.
//
// # Workers
//
// NewPool runs a Handler over any Queue with between a minimum and a
// maximum of workers, adding them while all are busy and work waits and
// retiring them when idle. It extends each claim's lease while its
// handler runs, turns panics into Nacks, and drains on Close.
//
// # Over HTTP
//
// Server serves a Queue over HTTP and Client is a Queue served by one, so
// that workers on other machines share one queue; errors travel as status
// codes and come back as the same sentinels.
//
// # Batch stages
//
// Copy, Merge, Filter, Split and Shard are Handlers that pass items from
// one queue to others, as the event-driven batch stages of chapter 11 do.
// Join and Reduce are the coordinated batch of chapter 12: they gather a
// group's items in the output queue and fire its result once, even across
// crashes and restarts of a durable queue.
package workqueue
