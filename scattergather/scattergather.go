package scattergather

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Leaf answers one part of a scattered request: typically one shard of
// the data. Do is called from many goroutines at once and must return
// promptly once ctx is done: Gather waits for every Do it started before
// it returns, so that no goroutine outlives the call.
type Leaf[Req, Resp any] interface {
	Do(ctx context.Context, req Req) (Resp, error)
}

// LeafFunc adapts a function to a Leaf.
type LeafFunc[Req, Resp any] func(ctx context.Context, req Req) (Resp, error)

// Do calls f(ctx, req).
func (f LeafFunc[Req, Resp]) Do(ctx context.Context, req Req) (Resp, error) { return f(ctx, req) }

var _ Leaf[int, int] = LeafFunc[int, int](nil)

// Target is one leaf of a gather, with the replicas its request may be
// hedged or failed over to (see WithHedge).
type Target[Req, Resp any] struct {
	// Name identifies the leaf in reports; unique within a Gatherer.
	// Default: "leaf-<index>".
	Name     string
	Leaf     Leaf[Req, Resp]
	Replicas []Leaf[Req, Resp]
}

// Outcome is how a leaf's part of a gather ended.
type Outcome uint8

// Outcomes.
const (
	// OK leaves answered, and their answer was merged.
	OK Outcome = iota
	// Failed leaves returned an error (Err), replicas included.
	Failed
	// TimedOut leaves had not answered by the gather's deadline, or ran
	// out of their own (WithLeafTimeout).
	TimedOut
	// Canceled leaves were running when the caller cancelled the gather.
	Canceled
	// Skipped leaves were not needed: the gather had decided before they
	// answered or before they started.
	Skipped
	numOutcomes
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case TimedOut:
		return "timed out"
	case Canceled:
		return "canceled"
	case Skipped:
		return "skipped"
	}
	return "unknown"
}

// LeafReport is how one leaf's part of a gather went.
type LeafReport struct {
	Name    string
	Outcome Outcome
	// Err is the leaf's error when Failed, or the context's when
	// TimedOut or Canceled.
	Err error
	// Latency runs from the leaf's start to its answer (or to when it
	// returned after being cut off); 0 if it never started.
	Latency time.Duration
	// Hedges is how many requests went to its replicas; Winner which
	// request answered: 0 the leaf itself, i its i-th replica.
	Hedges, Winner int
}

// Result is what a gather merged and how complete it is.
type Result[Out any] struct {
	// Value is the reducer's result over the leaves that answered; also
	// set, partly merged, when Gather returns an error.
	Value Out
	// Leaves reports every leaf, in the order of the targets.
	Leaves []LeafReport
	// Counts of Leaves by outcome.
	OK, Failed, TimedOut, Canceled, Skipped int
	// Hedges counts requests sent to replicas; HedgesWon the answers
	// merged that came from a replica.
	Hedges, HedgesWon int
	// Early is set when the gather ended before every leaf had answered
	// or failed because its outcome was decided: the policy or the
	// reducer had enough, or the policy could no longer be met.
	Early   bool
	Elapsed time.Duration
}

// Gatherer sends one request to many leaves and merges their answers
// under the caller's deadline. It is safe for concurrent use; it starts
// no goroutine of its own, so it needs no Close.
type Gatherer[Req, Resp, Out any] struct {
	targets []Target[Req, Resp]
	reduce  Reducer[Resp, Out]
	o       options
	log     *zap.Logger

	leafLat, callLat *latencies
	delay            atomic.Int64 // cached percentile hedge delay, ns
	c                counters
}

var _ Leaf[int, int] = (*Gatherer[int, int, int])(nil)

// New returns a Gatherer over targets that merges answers with reduce.
func New[Req, Resp, Out any](targets []Target[Req, Resp], reduce Reducer[Resp, Out], opts ...Option) (*Gatherer[Req, Resp, Out], error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return nil, invalid("nil Option")
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(targets) == 0 {
		return nil, invalid("no leaves")
	}
	if reduce == nil {
		return nil, invalid("nil Reducer")
	}
	if err := o.policy.validate(len(targets)); err != nil {
		return nil, err
	}
	g := &Gatherer[Req, Resp, Out]{
		targets: make([]Target[Req, Resp], len(targets)),
		reduce:  reduce,
		o:       o,
		log:     o.logger.Named("scattergather"),
		leafLat: newLatencies(),
		callLat: newLatencies(),
	}
	seen := make(map[string]int, len(targets))
	for i, t := range targets {
		if t.Name == "" {
			t.Name = fmt.Sprintf("leaf-%d", i)
		}
		if j, dup := seen[t.Name]; dup {
			return nil, invalid("targets %d and %d are both named %q", j, i, t.Name)
		}
		seen[t.Name] = i
		if t.Leaf == nil {
			return nil, invalid("target %d (%s): nil Leaf", i, t.Name)
		}
		for r, l := range t.Replicas {
			if l == nil {
				return nil, invalid("target %d (%s): replica %d is nil", i, t.Name, r)
			}
		}
		t.Replicas = append([]Leaf[Req, Resp](nil), t.Replicas...)
		g.targets[i] = t
	}
	return g, nil
}

// answer is what one leaf's goroutine sends back.
type answer[Resp any] struct {
	i              int
	resp           Resp
	err            error
	lat            time.Duration
	hedges, winner int
}

// Gather sends req to every leaf and merges the answers, until the policy
// or the reducer has enough, every leaf has answered or failed, or ctx
// ends; then it cancels the leaves still running and waits for them to
// return. It returns an *IncompleteError when the policy's needs were not
// met or ctx was cancelled; the Result is filled in either way.
func (g *Gatherer[Req, Resp, Out]) Gather(ctx context.Context, req Req) (Result[Out], error) {
	start := time.Now()
	n := len(g.targets)
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok && g.o.reserve > 0 {
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-g.o.reserve))
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	res := Result[Out]{Leaves: make([]LeafReport, n)}
	for i := range res.Leaves {
		res.Leaves[i] = LeafReport{Name: g.targets[i].Name, Outcome: Skipped}
	}
	m := g.reduce()
	ch := make(chan answer[Resp], n) // a leaf never waits to hand in its answer
	delay := g.hedgeDelay()
	if h := g.o.hedge; h != nil && h.Budget != nil {
		h.Budget.Deposit(n)
	}

	next, running := 0, 0
	if ctx.Err() == nil {
		limit := n
		if g.o.limit > 0 {
			limit = min(g.o.limit, n)
		}
		for ; next < limit; next++ {
			go g.run(ctx, next, req, delay, ch)
		}
		running = next
	}
	var (
		ok, failed    int
		stop, success bool
		cause         error
		lats          = make([]time.Duration, 0, n)
	)
	byCtx := running == 0 // ctx ended before any leaf started
	for running > 0 && !stop {
		select {
		case a := <-ch:
			running--
			rep := g.report(&res, a)
			if a.err == nil {
				rep.Outcome = OK
				ok++
				if a.winner > 0 {
					res.HedgesWon++
				}
				lats = append(lats, a.lat)
				if m.Add(a.i, a.resp) {
					stop, success = true, true
					break
				}
			} else {
				rep.Outcome, rep.Err = Failed, a.err
				if errors.Is(a.err, context.DeadlineExceeded) {
					rep.Outcome = TimedOut
				}
				failed++
				g.log.Debug("leaf failed", zap.String("leaf", rep.Name), zap.Error(a.err))
			}
			if stop, success = g.o.policy.verdict(ok, failed, n); !stop && next < n && ctx.Err() == nil {
				go g.run(ctx, next, req, delay, ch)
				next++
				running++
			}
		case <-ctx.Done():
			stop, byCtx = true, true
		}
	}
	if byCtx {
		// Only a deadline can leave enough for success: a cancelled
		// caller wants nothing more.
		cause = ctx.Err()
		success = errors.Is(cause, context.DeadlineExceeded) && g.o.policy.atDeadline(ok, n)
	}
	res.Early = ok+failed < n && cause == nil

	// Cut off what still runs, and wait for it: no goroutine outlives the
	// call.
	cancel()
	cut := Skipped
	switch {
	case errors.Is(cause, context.DeadlineExceeded):
		cut = TimedOut
	case cause != nil:
		cut = Canceled
	}
	for ; running > 0; running-- {
		rep := g.report(&res, <-ch)
		rep.Outcome = cut
		if cut != Skipped {
			rep.Err = cause
		}
	}
	res.Value = m.Result()
	res.Elapsed = time.Since(start)
	for _, l := range res.Leaves {
		switch l.Outcome {
		case OK:
			res.OK++
		case Failed:
			res.Failed++
		case TimedOut:
			res.TimedOut++
		case Canceled:
			res.Canceled++
		case Skipped:
			res.Skipped++
		}
	}
	g.record(&res, lats, success)
	if success {
		return res, nil
	}
	return res, &IncompleteError{Policy: g.o.policy, OK: res.OK, Need: g.o.policy.need(n), Leaves: res.Leaves, Cause: cause}
}

// report fills in the report of the leaf an answer is from.
func (g *Gatherer[Req, Resp, Out]) report(res *Result[Out], a answer[Resp]) *LeafReport {
	rep := &res.Leaves[a.i]
	rep.Latency, rep.Hedges, rep.Winner = a.lat, a.hedges, a.winner
	res.Hedges += a.hedges
	return rep
}

// Do gathers req and returns the merged value, so that a Gatherer is
// itself a Leaf of a larger tree.
func (g *Gatherer[Req, Resp, Out]) Do(ctx context.Context, req Req) (Out, error) {
	res, err := g.Gather(ctx, req)
	return res.Value, err
}

// run asks leaf i and hands in its answer.
func (g *Gatherer[Req, Resp, Out]) run(ctx context.Context, i int, req Req, delay time.Duration, ch chan<- answer[Resp]) {
	start := time.Now()
	var a answer[Resp]
	if g.o.hedge != nil && len(g.targets[i].Replicas) > 0 {
		a = g.hedged(ctx, i, req, delay)
	} else {
		lctx, cancel := g.leafContext(ctx)
		a.resp, a.err = call(lctx, g.targets[i].Leaf, req)
		cancel()
	}
	a.i, a.lat = i, time.Since(start)
	ch <- a
}

// call asks one leaf, turning a panic into an error: one broken leaf must
// not take the whole process down, nor leave the gather waiting.
func call[Req, Resp any](ctx context.Context, l Leaf[Req, Resp], req Req) (resp Resp, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("scattergather: leaf panicked: %v", p)
		}
	}()
	return l.Do(ctx, req)
}

func (g *Gatherer[Req, Resp, Out]) leafContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.o.leafTimeout > 0 {
		return context.WithTimeout(ctx, g.o.leafTimeout)
	}
	return ctx, func() {}
}
