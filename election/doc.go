// Package election is ownership election (Designing Distributed Systems,
// ch. 9) on hashicorp/raft: one leader for singleton work, and owners for
// any number of named resources — shards, jobs, locks — each protected by
// a fencing token, so that a paused or partitioned ex-owner can do no harm.
//
// # When to use it, and when not
//
// Use it when a few to a few dozen processes must agree, without an
// external coordinator, on who does what, and must fail over in well
// under a second. If you already run etcd, ZooKeeper or Consul, their
// locks may serve; if the work is idempotent and duplicates are cheap, you
// may not need election at all. A raft cluster needs a majority of its
// voters up: three voters survive one failure, five survive two.
//
// # Shape
//
//	n, _ := election.New("a", election.WithTCP("10.0.0.1:7000"))
//	defer n.Close()
//	_ = n.Bootstrap(ctx, peers)            // or n.Join(ctx, "10.0.0.2:7000")
//	go n.Run(ctx, func(leaderCtx context.Context) { /* singleton work */ })
//	lease, _ := n.Acquire(ctx, "shard-7", 2*time.Second)
//	store.Write(lease.Token(), data)      // the store checks tokens with a Fence
//	_ = lease.Renew(ctx)                  // before Deadline; watch lease.Lost()
//
// # Guarantees
//
//   - Leases are decided in the raft log. Lease time is the leader's,
//     written into each command, and never read from a replica's clock in
//     Apply. The log clock never runs ahead of real time across leader
//     changes, so a new leader honours every earlier lease for at least
//     its remaining time.
//   - A holder's view ends first: its timer starts when it sends the
//     request, before the leader stamps the grant. Lost closes when that
//     timer runs out, when a renewal finds the lease gone, on Release and
//     on Close.
//   - Fencing tokens grow with every grant, across resources and leader
//     changes; a renewal keeps its token. Fence rejects a stale one.
//   - Run's leaderCtx ends before another node can lead: the leader
//     re-confirms a quorum every quarter heartbeat timeout and ends the
//     context when its last confirmation is 0.8 of a heartbeat timeout
//     old, before any follower that confirmed it would vote for another
//     candidate. This assumes timers fire roughly on time; protect stores
//     with the term (Term) as a fencing token as well.
//   - Writes made on a follower are forwarded to the leader; callers never
//     see raft's ErrNotLeader. Requests are idempotent, so they are
//     retried while leadership moves, until their context ends.
//
// # Defaults
//
// The heartbeat and election timeouts are 100 ms (raft's are 1 s), which
// gives a new leader about 150–300 ms after a crash on a LAN. Logs, raft's
// included, go to the zap logger given with WithLogger (none by default).
// State is in memory unless WithDir is given.
//
// # Concurrency and lifecycle
//
// Every method is safe for concurrent use. New starts the raft peer and
// listens, but talks to nobody until Bootstrap or Join. Close is
// idempotent; it marks this node's leases lost and closes the transport.
// Watch channels close when their context ends or the node closes.
package election
