package scattergather

import (
	"sync/atomic"
	"time"
)

// counters only grow.
type counters struct {
	calls, failures, early                       atomic.Uint64
	leaves, ok, failed, timedOut, canceled, skip atomic.Uint64
	hedges, hedgesWon, refused                   atomic.Uint64
}

// Stats is a snapshot of a Gatherer's counters and recent latencies.
type Stats struct {
	// Calls counts gathers; Failures those that returned an error; Early
	// those that ended before every leaf had answered because their
	// outcome was decided (see Result.Early).
	Calls, Failures, Early uint64
	// Leaves counts leaf requests (replicas not included) and the rest
	// their outcomes.
	Leaves, OK, Failed, TimedOut, Canceled, Skipped uint64
	// Hedges counts requests sent to replicas, HedgesWon those that
	// answered first, and BudgetRefusals hedges and failovers the budget
	// refused.
	Hedges, HedgesWon, BudgetRefusals uint64
	// Percentiles over the last one to two thousand gathers and leaf
	// answers (successful ones).
	CallP50, CallP90, CallP99 time.Duration
	LeafP50, LeafP90, LeafP99 time.Duration
}

// Stats returns a snapshot of the gatherer's counters and latencies.
func (g *Gatherer[Req, Resp, Out]) Stats() Stats {
	c := &g.c
	s := Stats{
		Calls: c.calls.Load(), Failures: c.failures.Load(), Early: c.early.Load(),
		Leaves: c.leaves.Load(), OK: c.ok.Load(), Failed: c.failed.Load(),
		TimedOut: c.timedOut.Load(), Canceled: c.canceled.Load(), Skipped: c.skip.Load(),
		Hedges: c.hedges.Load(), HedgesWon: c.hedgesWon.Load(), BudgetRefusals: c.refused.Load(),
	}
	q, _ := g.callLat.quantiles(0.5, 0.9, 0.99)
	s.CallP50, s.CallP90, s.CallP99 = q[0], q[1], q[2]
	q, _ = g.leafLat.quantiles(0.5, 0.9, 0.99)
	s.LeafP50, s.LeafP90, s.LeafP99 = q[0], q[1], q[2]
	return s
}

// record adds a finished gather to the counters.
func (g *Gatherer[Req, Resp, Out]) record(res *Result[Out], lats []time.Duration, success bool) {
	c := &g.c
	c.calls.Add(1)
	if !success {
		c.failures.Add(1)
	}
	if res.Early {
		c.early.Add(1)
	}
	c.leaves.Add(uint64(len(res.Leaves)))
	c.ok.Add(uint64(res.OK))
	c.failed.Add(uint64(res.Failed))
	c.timedOut.Add(uint64(res.TimedOut))
	c.canceled.Add(uint64(res.Canceled))
	c.skip.Add(uint64(res.Skipped))
	c.hedges.Add(uint64(res.Hedges))
	c.hedgesWon.Add(uint64(res.HedgesWon))
	g.leafLat.merge(lats)
	g.callLat.add(res.Elapsed)
}
