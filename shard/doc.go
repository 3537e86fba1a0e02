// Package shard places keys on nodes by consistent hashing: the sharded
// services pattern of Designing Distributed Systems (chapter 6).
//
// A sharded service splits its state across nodes so that each node holds
// and serves only part of it: caches too big for one machine, stores whose
// write rate one machine cannot take, or queues that one leader would
// bottleneck. Every client, proxy or peer then needs the same answer to
// "which node owns this key?", and when nodes join or leave, as few keys as
// possible should change owner, because each moved key is data to copy or a
// cache miss to pay for.
//
// # Use
//
//	t, err := shard.New(shard.Nodes("cache-a", "cache-b", "cache-c"))
//	if err != nil {
//		return err
//	}
//	node, ok := t.Locate("user:42")            // the owner; ok=false when empty
//	replicas := t.LocateN("user:42", 3, nil)    // three distinct owners, primary first
//	err = t.Update(members)                     // a membership service reported a change
//
// Feed [Table.Update] the full member list whenever it changes. Placement is
// a function of the algorithm and the member set only: every process that
// sees the same members computes the same placement, whatever order it
// learned them in, and [Snapshot.Checksum] lets processes check that they
// do before forwarding a request. Across releases the placement of a given
// set never changes (a golden test pins it), so an upgrade never moves data.
//
// To plan a resharding, take [Table.Snapshot] before and after a change and
// call [Diff]: it lists the ranges of [KeyHash] values that change owner.
//
// # When not to shard by hash
//
// If the state fits on one node, replicate it instead (every replica can
// answer every key, and nothing moves when replicas come and go). Hashing
// destroys key order, so range scans need range partitioning. Hashing
// spreads keys, not load: a hot key stays on one node — give hot keys
// replicas with LocateN, or cache them in front. And a node that learns of
// membership changes late will route to the old owner; check checksums or
// let the old owner forward.
//
// # Choosing an algorithm
//
// The default, [Stratified], is a 2^19-slot table built by weighted
// rendezvous hashing in which every node ranks the slots by its own
// pseudo-random permutation. It does well on every count at once: a lookup
// is one hash and one table read; balance is within a few percent of fair;
// a change moves only the keys that must move; and from a dozen or so
// nodes up, a one-node change updates the table incrementally, in under a
// millisecond at 512 nodes (with fewer nodes the table is rebuilt, in tens
// of milliseconds). The others are there for their special cases,
// for study, and for comparison. Figures are from the bench module
// (bench/README.md) on a 2-core AMD EPYC VM, for nodes of equal weight:
// lookups in nanoseconds at 8 / 64 / 512 nodes; peak/mean load on 64 nodes
// over a million keys; keys moved when a node joins / leaves, against the
// minimum; time for a one-node change at 512 nodes, and for a build from
// scratch at 512 nodes.
//
//	algorithm               lookup (ns)      balance  moved        change   build    use it for
//	Stratified(19)          19 / 20 / 20     1.029    1.02 / 1.02  0.7 ms   220 ms   everything, by default
//	Ring(160)               70 / 93 / 147    1.172    1.03 / 1.17  12 ms    12 ms    compatibility with ketama-style rings
//	Rendezvous              36 / 122 / 820   1.016    1.01 / 1.01  77 µs    67 µs    a few nodes, no memory for a table
//	Maglev(65537)           15 / 13 / 14     1.023    1.30 / 1.32  2.9 ms   2.8 ms   even tables where movement matters less
//	Jump                    42 / 57 / 72     1.017    1.00 / 64    0.2 ms   0.2 ms   numbered shards that grow and shrink at the end
//	Bounded(1.25, 16384)    18 / 16 / 15     1.244    1.14 / 1.24  14 ms    13 ms    a hard cap on any node's share
//
// For scale, on the same machine: buraksezer/consistent looks up in
// 87–101 ns with one allocation, balances 1.254, moves 2.27 / 1.67 times
// the minimum and takes 3.5 ms for a one-node change at 512 nodes;
// dgryski/go-maglev looks up in 18–20 ns and takes 5.2 ms for that change.
// Jump moves the minimum only when the last-numbered node joins or leaves
// (64 is a middle node leaving).
//
// Stratified tables need at least as many slots as nodes; for more than a
// few thousand nodes choose more slot bits. A snapshot holds 2 bytes per
// slot for lookups and as much again for incremental changes (2 MiB at the
// default size, 3 MiB when the share floor lifts a node); a build from
// scratch allocates about 25 bytes per slot. It takes 60–220 ms at 8–512 nodes of equal weight, and two to five
// times as long with unequal weights, whose scores need logarithms.
//
// # Weights
//
// A [Node]'s Weight is its capacity relative to the others. Every algorithm
// but [Jump] honours weights, and in every table-based algorithm a node of
// any valid weight, however small, owns part of the key space.
//
// # Concurrency
//
// A [Snapshot] is immutable and safe for concurrent use; its lookups never
// lock or allocate (LocateN allocates only if dst lacks capacity). A
// [Table] swaps snapshots atomically: lookups stay lock-free while writes
// are serialised, and a failed write changes nothing. The package starts no
// goroutines and holds no resources, so there is nothing to close.
package shard
