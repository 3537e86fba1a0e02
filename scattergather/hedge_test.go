package scattergather

import (
	"context"
	"testing"
	"time"
)

func replicated(primary *leaf, replicas ...*leaf) []Target[int, int] {
	t := Target[int, int]{Leaf: primary}
	for _, r := range replicas {
		t.Replicas = append(t.Replicas, r)
	}
	return []Target[int, int]{t}
}

func TestHedgeWinsWhenLeafStalls(t *testing.T) {
	primary, replica := hung(), ok(7)
	g := mustNew(t, replicated(primary, replica), Sum[int](), WithHedge(Hedge{After: 10 * time.Millisecond}))
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.Value != 7 {
		t.Fatalf("value %d, err %v", res.Value, err)
	}
	if r := res.Leaves[0]; r.Hedges != 1 || r.Winner != 1 || res.Hedges != 1 || res.HedgesWon != 1 {
		t.Fatalf("report %+v, result hedges %d won %d", r, res.Hedges, res.HedgesWon)
	}
	if primary.canceled.Load() != 1 {
		t.Fatal("the losing request was not cancelled")
	}
	if s := g.Stats(); s.Hedges != 1 || s.HedgesWon != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNoHedgeForFastLeaf(t *testing.T) {
	replica := ok(7)
	g := mustNew(t, replicated(ok(1), replica), Sum[int](), WithHedge(Hedge{After: time.Second}))
	res, err := g.Gather(context.Background(), 0)
	if err != nil || res.Value != 1 || res.Hedges != 0 || replica.calls.Load() != 0 {
		t.Fatalf("value %d hedges %d replica calls %d err %v", res.Value, res.Hedges, replica.calls.Load(), err)
	}
}

func TestFailoverOnError(t *testing.T) {
	g := mustNew(t, replicated(failing(), failing(), ok(9)), Sum[int](), WithHedge(Hedge{After: time.Hour}))
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.Value != 9 || res.Leaves[0].Winner != 2 || res.Leaves[0].Hedges != 2 {
		t.Fatalf("value %d, %+v, err %v", res.Value, res.Leaves[0], err)
	}
	// All fail: the last error is reported.
	g = mustNew(t, replicated(failing(), failing()), Sum[int](), WithHedge(Hedge{After: time.Hour}))
	res, err = g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err == nil || res.Failed != 1 || res.HedgesWon != 0 || res.Leaves[0].Hedges != 1 || res.Leaves[0].Winner != 0 {
		t.Fatalf("err %v, %+v", err, res)
	}
}

func TestHedgeBudgetRefuses(t *testing.T) {
	b, err := NewBudget(0, 0) // no extra request allowed
	if err != nil {
		t.Fatal(err)
	}
	replica := ok(7)
	g := mustNew(t, replicated(hung(), replica), Sum[int](),
		WithHedge(Hedge{After: 5 * time.Millisecond, Budget: b}), WithPolicy(BestEffort()))
	res, err := g.Gather(ctxTimeout(t, 60*time.Millisecond), 0)
	if err != nil || res.TimedOut != 1 || res.Hedges != 0 || replica.calls.Load() != 0 {
		t.Fatalf("err %v, %+v, replica calls %d", err, res, replica.calls.Load())
	}
	if s := g.Stats(); s.BudgetRefusals != 1 {
		t.Fatalf("refusals %d, want 1", s.BudgetRefusals)
	}
	if s := b.Stats(); s.Refused != 1 || s.Requests != 1 || s.Extra != 0 {
		t.Fatalf("budget stats %+v", s)
	}
}

// TestNoHedgeAfterDeadline: a hedge due after the deadline is never sent.
func TestNoHedgeAfterDeadline(t *testing.T) {
	replica := ok(7)
	g := mustNew(t, replicated(hung(), replica), Sum[int](), WithHedge(Hedge{After: 100 * time.Millisecond}), WithPolicy(BestEffort()))
	res, err := g.Gather(ctxTimeout(t, 30*time.Millisecond), 0)
	if err != nil || res.Hedges != 0 || replica.calls.Load() != 0 {
		t.Fatalf("err %v hedges %d replica calls %d", err, res.Hedges, replica.calls.Load())
	}
	// Nor a failover.
	replica = ok(7)
	g = mustNew(t, replicated(failAfter(50*time.Millisecond), replica), Sum[int](), WithHedge(Hedge{After: time.Hour}), WithLeafTimeout(20*time.Millisecond), WithPolicy(BestEffort()))
	res, err = g.Gather(ctxTimeout(t, 10*time.Millisecond), 0)
	if err != nil || res.Hedges != 0 || replica.calls.Load() != 0 {
		t.Fatalf("err %v hedges %d replica calls %d", err, res.Hedges, replica.calls.Load())
	}
}

// TestPercentileHedge: with a percentile, the delay follows the observed
// latencies: leaves that answer in about 2 ms are hedged once a request
// has run a few milliseconds, not after the fixed fallback.
func TestPercentileHedge(t *testing.T) {
	primary := slow(1, 2*time.Millisecond)
	g := mustNew(t, replicated(primary, ok(2)), Sum[int](), WithHedge(Hedge{After: time.Hour, Percentile: 0.9}))
	// Until minSamples latencies are in, and the delay is next
	// recomputed, the fixed delay applies.
	for range (minSamples + delayEvery - 1) / delayEvery * delayEvery {
		if _, err := g.Gather(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if g.Stats().Hedges != 0 {
		t.Fatalf("hedged %d times while warming up with a fixed delay of an hour", g.Stats().Hedges)
	}
	d := g.hedgeDelay()
	if d < time.Millisecond || d > time.Second {
		t.Fatalf("percentile delay %v, want near the 2 ms the leaf takes", d)
	}
	primary.hang = true
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.Value != 2 || res.HedgesWon != 1 {
		t.Fatalf("value %d, %+v, err %v", res.Value, res.Leaves[0], err)
	}
}
