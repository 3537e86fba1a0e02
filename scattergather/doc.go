// Package scattergather sends one request to many leaves and merges their
// answers under one deadline: the scatter/gather pattern of Designing
// Distributed Systems, chapter 7. A root splits work across leaves (each
// holding a shard of the data, say), and merges what comes back. Its
// latency is the slowest leaf's, so stragglers decide everything; this
// package bounds them with the caller's deadline, finishes as soon as it
// has enough, and hedges slow leaves to replicas within a budget.
//
//	g, err := scattergather.New(targets, scattergather.Sum[int](),
//		scattergather.WithPolicy(scattergather.Quorum(3)),
//		scattergather.WithHedge(scattergather.Hedge{Percentile: 0.95, Budget: budget}))
//	res, err := g.Gather(ctx, query) // res.Value, res.Leaves, res.OK…
//
// # Completeness
//
// Every Result reports each leaf (OK, Failed, TimedOut, Canceled or
// Skipped) and the counts. Gather fails closed: unless the Policy allows
// partial results (Quorum, First, BestEffort), one missing leaf makes it
// return an *IncompleteError, which carries every leaf's report while the
// Result beside it carries the partly merged value.
//
// # Deadlines and goroutines
//
// The caller's context bounds everything: leaves get it (shortened by
// WithReserve, or per request by WithLeafTimeout), no hedge or failover is
// sent after it ends, and Gather returns when it ends with what has
// arrived. Gather starts one goroutine per leaf (two or more while a leaf
// is hedged) and returns only after all of them have: a Leaf must return
// promptly once its context is done. A panicking leaf is reported Failed.
//
// # Hedging
//
// With WithHedge, a leaf that has not answered within a fixed delay, or
// within an observed percentile of recent leaf latencies, is also asked of
// its first replica, then the next; the first answer wins and the rest are
// cancelled. A leaf that fails goes to its next replica at once. A Budget
// caps these extra requests at a fraction of all requests, so that hedging
// cannot multiply the load on leaves that are slow because they are
// overloaded. A Budget may be shared.
//
// Go's timers can be up to a millisecond late when the process is idle,
// which at the few-millisecond delays hedging uses both sends hedges late
// (raising the tail) and makes the extra load hard to predict. On Linux
// the hedge timer fires a millisecond early and waits out the rest on a
// timerfd, which wakes within tens of microseconds, so hedges go out that
// close to their delay unless the timer was late by more than the
// millisecond (a busy machine). Delays of 2 ms or less, and other
// platforms, make do with Go's timers.
//
// # Trees
//
// A Gatherer is itself a Leaf (Do returns the merged value), so roots can
// fan out to gatherers that fan out to leaves. Give inner gatherers
// WithReserve so that they answer before the outer deadline passes.
//
// # When not to use it
//
// When one leaf can answer alone, send it the request: a fan-out's latency
// is the maximum of its leaves'. When the leaves must agree, use a
// consensus protocol (see package election), not a merge.
package scattergather
