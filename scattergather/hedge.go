package scattergather

import (
	"context"
	"time"
)

// hedgeDelay returns how long a leaf may run before its request is
// hedged, or 0 for no hedging timer (failover on errors still applies).
// A percentile delay is recomputed every delayEvery calls, since reading
// the histogram costs about a microsecond.
func (g *Gatherer[Req, Resp, Out]) hedgeDelay() time.Duration {
	h := g.o.hedge
	if h == nil {
		return 0
	}
	if h.Percentile == 0 {
		return h.After
	}
	if g.c.calls.Load()%delayEvery == 0 || g.delay.Load() == 0 {
		qs, n := g.leafLat.quantiles(h.Percentile)
		d := h.After
		if n >= minSamples {
			d = max(qs[0], time.Microsecond)
		}
		g.delay.Store(int64(d))
	}
	return time.Duration(g.delay.Load())
}

const (
	delayEvery = 16  // calls between recomputed percentile delays
	minSamples = 100 // latencies needed before a percentile delay is used
)

// hedged asks leaf i, then its replicas as Hedge says, and returns the
// first answer, or the last error if none answered. The requests it
// started have all returned when it returns.
func (g *Gatherer[Req, Resp, Out]) hedged(ctx context.Context, i int, req Req, delay time.Duration) answer[Resp] {
	t := &g.targets[i]
	budget := g.o.hedge.Budget
	type attempt struct {
		k    int
		resp Resp
		err  error
	}
	total := 1 + len(t.Replicas)
	ch := make(chan attempt, total)
	cancels := make([]context.CancelFunc, 0, total)
	send := func(k int) {
		actx, cancel := g.leafContext(ctx)
		if g.o.leafTimeout == 0 {
			actx, cancel = context.WithCancel(ctx)
		}
		cancels = append(cancels, cancel)
		leaf := t.Leaf
		if k > 0 {
			leaf = t.Replicas[k-1]
		}
		go func() {
			var a attempt
			a.k = k
			a.resp, a.err = call(actx, leaf, req)
			ch <- a
		}()
	}
	// another reports whether one more request may go to a replica.
	another := func(next int) bool {
		if next >= total || ctx.Err() != nil {
			return false
		}
		if budget != nil && !budget.Withdraw() {
			g.c.refused.Add(1)
			return false
		}
		return true
	}

	send(0)
	running, next := 1, 1
	var timeout <-chan time.Time
	var timer *time.Timer
	if delay > 0 {
		timer = time.NewTimer(delay)
		defer timer.Stop()
		timeout = timer.C
	}
	done := ctx.Done()
	var last attempt
	won := false
	for running > 0 && !won {
		select {
		case a := <-ch:
			running--
			last = a
			if a.err == nil {
				won = true
			} else if running == 0 && another(next) {
				send(next) // fail over at once
				next++
				running++
			}
		case <-timeout:
			if another(next) {
				send(next)
				next++
				running++
				timer.Reset(delay)
			}
		case <-done:
			// No more hedges; the requests running see ctx end too.
			done, timeout = nil, nil
		}
	}
	for _, cancel := range cancels {
		cancel()
	}
	for ; running > 0; running-- {
		<-ch
	}
	return answer[Resp]{resp: last.resp, err: last.err, hedges: next - 1, winner: last.k}
}
