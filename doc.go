// Package distkit is a library of the distributed-system patterns in
// Brendan Burns' Designing Distributed Systems, one package per pattern:
//
//   - [github.com/distkit/distkit/shard]: sharded services (ch. 6) —
//     consistent-hash placement of keys on nodes.
//   - [github.com/distkit/distkit/scattergather]: scatter/gather (ch. 7)
//     — one request fanned out to many leaves under one deadline, with
//     completeness per leaf, budgeted hedging and streaming reducers.
//   - [github.com/distkit/distkit/election]: ownership election (ch. 9) —
//     a leader, and leases with fencing tokens on named resources, on raft.
//   - [github.com/distkit/distkit/discovery]: membership and service
//     discovery — gossip on memberlist, fast failure detection without
//     false alarms, services and health per member.
//
// [github.com/distkit/distkit/faultnet] is not a pattern but a tool for
// tests: an in-memory network that adds latency, drops, resets and
// partitions between named nodes, with transports for raft and memberlist.
//
// Pattern packages never import each other. They meet in user code through
// small interfaces that each package declares for what it consumes; for
// example, anything with a Locate(key string) (string, bool) method can
// route requests by key, and a [github.com/distkit/distkit/shard.Table]
// has one. The examples directory composes them into runnable programs.
//
// This package holds no code; it documents the library and, in its tests,
// enforces the rule above.
package distkit
