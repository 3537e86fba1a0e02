package scattergather

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/distkit/distkit/internal/latency"
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
	// TimedOut leaves had not answered by the gather's deadline (or had
	// not started), or ran out of their own time (WithLeafTimeout).
	TimedOut
	// Canceled leaves were running, or waiting to start, when the caller
	// cancelled the gather.
	Canceled
	// Skipped leaves were not needed: the gather had decided before they
	// answered or before they started. (Leaves that never started because
	// the context ended are TimedOut or Canceled.)
	Skipped
	numOutcomes
)

// String names the outcome, as in "timed out".
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

	delay      atomic.Int64  // cached percentile hedge delay, ns
	hedgeCalls atomic.Uint64 // calls to hedgeDelay
	refused    atomic.Uint64 // budget refusals, counted as they happen

	mu               sync.Mutex
	c                counters
	leafLat, callLat *latency.Window
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
	}
	g.leafLat, g.callLat = latency.New(&g.mu), latency.New(&g.mu)
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

// answer is what one request to a leaf (and its replicas) came to.
type answer[Resp any] struct {
	resp           Resp
	err            error
	lat            time.Duration
	hedges, winner int
}

// inFlight marks, in a LeafReport during a gather, a leaf that started
// and has not been accounted for; none is left when Gather returns.
const inFlight = numOutcomes + 1

// gather is one call's state. Leaves hand in their answers under mu, in
// their own goroutines: the caller's goroutine sleeps until the outcome
// is decided, rather than waking for every answer.
type gather[Req, Resp, Out any] struct {
	g     *Gatherer[Req, Resp, Out]
	ctx   context.Context
	req   Req
	delay time.Duration
	m     Merger[Resp, Out]
	wg    sync.WaitGroup
	// decided is closed when the outcome is decided, by the goroutine
	// that decided it once it is done with the gather (mu released, and
	// for a plain leaf wg.Done called), so that the caller, woken, finds
	// neither the lock held nor a leaf still to wait for. The caller's
	// goroutine then cancels ctx: cancelling takes a deep stack, which
	// would grow a leaf's small one.
	decided chan struct{}

	mu         sync.Mutex
	res        Result[Out]
	next       int // the next leaf to start
	ok, failed int
	over       bool // decided: later answers are not merged
	success    bool
}

// Gather sends req to every leaf and merges the answers, until the policy
// or the reducer has enough, every leaf has answered or failed, or ctx
// ends; then it cancels the leaves still running and waits for them to
// return. It returns an *IncompleteError when the policy's needs were not
// met or ctx was cancelled; the Result is filled in either way.
func (g *Gatherer[Req, Resp, Out]) Gather(ctx context.Context, req Req) (Result[Out], error) {
	start := time.Now()
	n := len(g.targets)
	if dl, ok := ctx.Deadline(); ok && g.o.reserve > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-g.o.reserve))
		defer cancel()
	}
	// The caller's context (shortened by the reserve) is watched
	// directly: its children learn that it ended a moment after it does.
	caller := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	st := &gather[Req, Resp, Out]{g: g, ctx: ctx, req: req, delay: g.hedgeDelay(), m: g.reduce(), decided: make(chan struct{})}
	st.res.Leaves = make([]LeafReport, n)
	for i := range st.res.Leaves {
		st.res.Leaves[i] = LeafReport{Name: g.targets[i].Name, Outcome: Skipped}
	}
	if ctx.Err() == nil {
		limit := n
		if g.o.limit > 0 {
			limit = min(g.o.limit, n)
		}
		// Leaves already running touch only their own report until they
		// take mu, and start others only under it, beyond limit.
		st.next = limit
		st.wg.Add(limit)
		g.deposit(limit)
		if n == 1 {
			// One leaf (a hedged request, say) runs in the caller's
			// goroutine: no hand-off, no wait to be scheduled.
			st.res.Leaves[0].Outcome = inFlight
			st.run(0, start)
		} else {
			for i := range limit {
				st.res.Leaves[i].Outcome = inFlight
				go st.run(i, start)
			}
		}
	}
	select {
	case <-st.decided:
	case <-caller.Done():
	}

	st.mu.Lock()
	var cause error
	byLeaf := st.over // the decider closes decided as its last act
	if !st.over {
		// The caller's context ended the gather. Only a deadline can leave
		// enough for success: a cancelled caller wants nothing more.
		st.over = true
		cause = caller.Err()
		st.success = errors.Is(cause, context.DeadlineExceeded) && g.o.policy.atDeadline(st.ok, n)
	}
	res := &st.res
	res.Early = st.ok+st.failed < n && cause == nil
	st.mu.Unlock()

	// Cut off what still runs, and wait for it: no goroutine outlives the
	// call.
	cancel()
	st.wg.Wait()
	if byLeaf {
		<-st.decided
	}
	cut := Skipped
	switch {
	case errors.Is(cause, context.DeadlineExceeded):
		cut = TimedOut
	case cause != nil:
		cut = Canceled
	}
	for i := range res.Leaves {
		l := &res.Leaves[i]
		// Leaves still running, and, when the context ended the gather,
		// those still waiting for a slot, were cut off by it.
		if l.Outcome == inFlight || (l.Outcome == Skipped && cause != nil) {
			l.Outcome = cut
			if cut != Skipped {
				l.Err = cause
			}
		}
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
	res.Value = st.m.Result()
	res.Elapsed = time.Since(start)
	g.record(res, st.success)
	if st.success {
		return *res, nil
	}
	return *res, &IncompleteError{Policy: g.o.policy, OK: res.OK, Need: g.o.policy.need(n), Leaves: res.Leaves, Cause: cause}
}

// run asks leaf i and hands in its answer.
func (st *gather[Req, Resp, Out]) run(i int, start time.Time) {
	g := st.g
	if g.o.hedge != nil && len(g.targets[i].Replicas) > 0 {
		defer st.wg.Done()
		g.hedged(st.ctx, i, st.req, st.delay, start, func(a answer[Resp]) {
			if st.hand(i, a) {
				close(st.decided)
			}
		})
		return
	}
	var a answer[Resp]
	if g.o.leafTimeout > 0 {
		lctx, cancel := context.WithTimeout(st.ctx, g.o.leafTimeout)
		a.resp, a.err = call(lctx, g.targets[i].Leaf, st.req)
		cancel()
	} else {
		a.resp, a.err = call(st.ctx, g.targets[i].Leaf, st.req)
	}
	a.lat = time.Since(start)
	decided := st.hand(i, a)
	st.wg.Done()
	if decided {
		close(st.decided)
	}
}

// hand accounts for leaf i's answer, merges it if the gather is still
// open, decides if it can, and starts the next leaf if one waits for a
// slot. It reports whether it decided: the caller then closes decided.
func (st *gather[Req, Resp, Out]) hand(i int, a answer[Resp]) (decided bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	res := &st.res
	rep := &res.Leaves[i]
	rep.Latency, rep.Hedges = a.lat, a.hedges
	if a.err == nil {
		rep.Winner = a.winner
	}
	res.Hedges += a.hedges
	// After the decision, and for failures once the caller's context has
	// ended or its deadline passed (they are most likely its doing: many
	// leaves enforce the deadline themselves, a moment before the
	// context's timer fires), Gather sets the outcome.
	if st.over || (a.err != nil && st.pastDeadline()) {
		return false
	}
	n := len(res.Leaves)
	if a.err == nil {
		rep.Outcome = OK
		st.ok++
		if a.winner > 0 {
			res.HedgesWon++
		}
		if st.m.Add(i, a.resp) {
			st.decide(true)
			return true
		}
	} else {
		rep.Outcome, rep.Err = Failed, a.err
		if errors.Is(a.err, context.DeadlineExceeded) {
			rep.Outcome = TimedOut
		}
		st.failed++
		st.g.log.Debug("leaf failed", zap.String("leaf", rep.Name), zap.Error(a.err))
	}
	if stop, success := st.g.o.policy.verdict(st.ok, st.failed, n); stop {
		st.decide(success)
		return true
	}
	if st.next < n && st.ctx.Err() == nil {
		j := st.next
		st.next++
		res.Leaves[j].Outcome = inFlight
		st.wg.Add(1)
		st.g.deposit(1)
		go st.run(j, time.Now())
	}
	return false
}

// pastDeadline reports whether the gather's context has ended or its
// deadline has passed.
func (st *gather[Req, Resp, Out]) pastDeadline() bool {
	if st.ctx.Err() != nil {
		return true
	}
	dl, ok := st.ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func (st *gather[Req, Resp, Out]) decide(success bool) {
	st.over, st.success = true, success
}

// deposit records n leaf requests started with the hedge budget, which
// allows extra requests in proportion to them.
func (g *Gatherer[Req, Resp, Out]) deposit(n int) {
	if h := g.o.hedge; h != nil && h.Budget != nil {
		h.Budget.Deposit(n)
	}
}

// Do gathers req and returns the merged value, so that a Gatherer is
// itself a Leaf of a larger tree.
func (g *Gatherer[Req, Resp, Out]) Do(ctx context.Context, req Req) (Out, error) {
	res, err := g.Gather(ctx, req)
	return res.Value, err
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
