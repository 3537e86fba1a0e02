package scattergather

import "time"

// counters only grow; guarded by Gatherer.mu.
type counters struct {
	calls, failures, early                       uint64
	leaves, ok, failed, timedOut, canceled, skip uint64
	hedges, hedgesWon                            uint64
}

// Stats is a snapshot of a Gatherer's counters and recent latencies.
type Stats struct {
	// Calls counts gathers; Failures those that returned an error; Early
	// those that ended before every leaf had answered because their
	// outcome was decided (see Result.Early).
	Calls, Failures, Early uint64
	// Leaves counts the leaves of all gathers, started or not, and the
	// rest their outcomes.
	Leaves, OK, Failed, TimedOut, Canceled, Skipped uint64
	// Hedges counts requests sent to replicas, HedgesWon those that
	// answered first, and BudgetRefusals hedges and failovers the budget
	// refused.
	Hedges, HedgesWon, BudgetRefusals uint64
	// HedgeDelay is how long a leaf may run now before it is hedged
	// (the observed percentile, or Hedge.After); 0 without hedging.
	HedgeDelay time.Duration
	// Percentiles over the last one to two thousand gathers and leaf
	// answers (successful ones).
	CallP50, CallP90, CallP99 time.Duration
	LeafP50, LeafP90, LeafP99 time.Duration
}

// Stats returns a snapshot of the gatherer's counters and latencies.
func (g *Gatherer[Req, Resp, Out]) Stats() Stats {
	g.mu.Lock()
	c := g.c
	g.mu.Unlock()
	s := Stats{
		Calls: c.calls, Failures: c.failures, Early: c.early,
		Leaves: c.leaves, OK: c.ok, Failed: c.failed,
		TimedOut: c.timedOut, Canceled: c.canceled, Skipped: c.skip,
		Hedges: c.hedges, HedgesWon: c.hedgesWon, BudgetRefusals: g.refused.Load(),
	}
	if h := g.o.hedge; h != nil {
		s.HedgeDelay = h.After
		if d := g.delay.Load(); h.Percentile > 0 && d > 0 {
			s.HedgeDelay = time.Duration(d)
		}
	}
	q, _ := g.callLat.Quantiles(0.5, 0.9, 0.99)
	s.CallP50, s.CallP90, s.CallP99 = q[0], q[1], q[2]
	q, _ = g.leafLat.Quantiles(0.5, 0.9, 0.99)
	s.LeafP50, s.LeafP90, s.LeafP99 = q[0], q[1], q[2]
	return s
}

// record adds a finished gather to the counters and latencies, under one
// lock.
func (g *Gatherer[Req, Resp, Out]) record(res *Result[Out], success bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := &g.c
	c.calls++
	if !success {
		c.failures++
	}
	if res.Early {
		c.early++
	}
	c.leaves += uint64(len(res.Leaves))
	c.ok += uint64(res.OK)
	c.failed += uint64(res.Failed)
	c.timedOut += uint64(res.TimedOut)
	c.canceled += uint64(res.Canceled)
	c.skip += uint64(res.Skipped)
	c.hedges += uint64(res.Hedges)
	c.hedgesWon += uint64(res.HedgesWon)
	for i := range res.Leaves {
		// A leaf a replica won for took at least the hedge delay: the
		// replica's own time went in when it answered, instead.
		if l := &res.Leaves[i]; l.Outcome == OK && l.Winner == 0 {
			g.leafLat.AddLocked(l.Latency)
		}
	}
	g.callLat.AddLocked(res.Elapsed)
}
