package ambassador

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Retry sends a request again, to another backend where there is one,
// when a try failed in a way worth another: the backend did not answer
// (refused, reset, timed out) or answered with one of Statuses; never on
// a 4xx. Only requests safe to repeat are retried: GET, HEAD, OPTIONS,
// TRACE, PUT and DELETE, or any with an Idempotency-Key header, and with
// no body or one that GetBody can make again (the Proxy does not keep
// bodies, so it retries only requests without one). No try starts after
// the request's deadline, and each retry takes one from the Router's
// budget (see WithBudget). Zero fields take the defaults.
type Retry struct {
	// Attempts is the most tries a request gets, the first included: 2 to
	// 10. Default 3.
	Attempts int
	// PerTry bounds each try's wait for response headers, counted from
	// the try's start but not while the client's body is waited for (a
	// slow upload is the client's time, not the backend's); a try that
	// passes it fails (ErrTryTimeout, retried). Default: none, only the
	// request's deadline and the transport's header timeout.
	PerTry time.Duration
	// Backoff is the wait before the first retry, doubling for each one
	// after up to 10 times, each wait drawn at random from its upper half
	// so that clients do not retry in step. Default 25 ms.
	Backoff time.Duration
	// Statuses are the answers retried, each 500 to 599. Default: 502,
	// 503 and 504, the answers of a gateway that could not reach its
	// server; a 500 may be the request's own fault.
	Statuses []int
}

func (c *Retry) check() error {
	def(&c.Attempts, 3)
	def(&c.Backoff, 25*time.Millisecond)
	if c.Statuses == nil {
		c.Statuses = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	}
	switch {
	case c.Attempts < 2 || c.Attempts > 10:
		return invalid("Retry.Attempts %d: want 2 to 10", c.Attempts)
	case c.PerTry < 0:
		return invalid("Retry.PerTry %v: want 0 (none) or more", c.PerTry)
	case c.Backoff < 0 || c.Backoff > time.Minute:
		return invalid("Retry.Backoff %v: want 0 to 1m", c.Backoff)
	}
	c.Statuses = slices.Clone(c.Statuses)
	for _, st := range c.Statuses {
		if st < 500 || st > 599 {
			return invalid("Retry.Statuses: %d: want 500 to 599 (a 4xx is the request's fault, and would fail again)", st)
		}
	}
	return nil
}

// Hedge sends a copy of a request that has had no response headers After
// its start to another backend (one it has not been tried at, where the
// policy has one: with one backend, or Sharded, the same one), and takes
// whichever answers first; the other is cancelled. It cuts the tail
// latency a slow backend adds, at the cost of extra requests, each taken
// from the Router's budget (see WithBudget) so that hedges cannot double
// the load on backends that are slow because they are overloaded. Only
// requests Retry would repeat are hedged.
type Hedge struct {
	// After is how long to wait for response headers before a copy goes:
	// about the backends' 95th percentile latency. Required.
	After time.Duration
	// Max is the most copies a request gets besides the first, each After
	// the one before: 1 to 5. Default 1.
	Max int
}

func (c *Hedge) check() error {
	def(&c.Max, 1)
	switch {
	case c.After <= 0:
		return invalid("Hedge.After %v: want more than 0", c.After)
	case c.Max < 1 || c.Max > 5:
		return invalid("Hedge.Max %d: want 1 to 5", c.Max)
	}
	return nil
}

// Budget limits the extra requests retries and hedges add: each request
// deposits one, each retry or hedge withdraws one, and a refused
// withdrawal means the extra request is not sent. A *scattergather.Budget
// is one, so a program can share one budget between its scatter/gathers
// and its ambassadors; NewBudget makes one.
type Budget interface {
	Deposit(n int)
	Withdraw() bool
}

// ErrTryTimeout is a try that had no response headers within
// Retry.PerTry. It comes inside a *BackendError; the Proxy answers 504.
var ErrTryTimeout error = tryTimeout{}

type tryTimeout struct{}

func (tryTimeout) Error() string   { return "ambassador: no response headers within the per-try timeout" }
func (tryTimeout) Timeout() bool   { return true }
func (tryTimeout) Temporary() bool { return true }

// errLost cancels the tries that lost a hedge.
var errLost = errors.New("ambassador: another try answered first")

// replayable reports whether r may be sent more than once.
func replayable(r *http.Request) bool {
	return idempotent(r) && (r.Body == nil || r.Body == http.NoBody || r.GetBody != nil)
}

// tryResult is how one try ended.
type tryResult struct {
	i    int // which try
	b    *Backend
	resp *http.Response
	err  error
}

// race collects the results of the tries of one request. Once it is
// over, a try that ends closes its own response.
type race struct {
	mu   sync.Mutex
	over bool
	ch   chan tryResult
}

func (c *race) deliver(t tryResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		if t.resp != nil {
			t.resp.Body.Close()
		}
		return
	}
	c.ch <- t // buffered for every try: never blocks
}

// end closes the race and the responses no one will read.
func (c *race) end() {
	c.mu.Lock()
	c.over = true
	c.mu.Unlock()
	for {
		select {
		case t := <-c.ch:
			if t.resp != nil {
				t.resp.Body.Close()
			}
		default:
			return
		}
	}
}

// sendAgain sends out, a request s has backends for, with retries and
// hedges as configured: each try in a goroutine of its own, so that a
// hedge can race the try before it.
func (r *Router) sendAgain(out *http.Request, s *backendSet) (*http.Response, error) {
	ctx := out.Context()
	re, he := r.o.retry, r.o.hedge
	attempts, hedges := 1, 0
	if replayable(out) {
		if re != nil {
			attempts = re.Attempts
		}
		if he != nil {
			hedges = he.Max
		}
	}
	r.o.budget.Deposit(1)
	c := &race{ch: make(chan tryResult, attempts+hedges)}
	var (
		cancels      []context.CancelCauseFunc
		tried        []*Backend // the tries' backends, in order
		retried      int
		hedged       int
		running      int
		failure      tryResult // the latest retryable failure
		hedgeC       <-chan time.Time
		hedgeT       *time.Timer
		backoff      time.Duration
		perTry       time.Duration
		bodyConsumed bool
	)
	if re != nil {
		backoff, perTry = re.Backoff, re.PerTry
	}
	if hedges > 0 {
		hedgeT = time.NewTimer(he.After)
		defer hedgeT.Stop()
		hedgeC = hedgeT.C
	}
	// launch sends a try to b, which pick chose for it.
	launch := func(b *Backend, probe uint64, kind int) error {
		req := new(http.Request)
		*req = *out
		if bodyConsumed && out.Body != nil && out.Body != http.NoBody {
			var err error
			if req.Body, err = out.GetBody(); err != nil {
				b.release(probe)
				return &BackendError{Backend: b.name, Err: err}
			}
		}
		bodyConsumed = true
		tctx, cancel := context.WithCancelCause(ctx)
		req = req.WithContext(tctx)
		switch kind {
		case kindRetry:
			b.retries.Add(1)
		case kindHedge:
			b.hedges.Add(1)
		}
		i := len(cancels)
		cancels = append(cancels, cancel)
		tried = append(tried, b)
		running++
		go func() {
			resp, err := r.try(req, b, probe, cancel, perTry)
			c.deliver(tryResult{i: i, b: b, resp: resp, err: err})
		}()
		return nil
	}
	// extra picks a backend for a retry or hedge and takes it from the
	// budget: a refusal is counted at at, the backend the request was
	// slow or failed at.
	extra := func(at *Backend) (*Backend, uint64, bool) {
		// From the backends as they are now: one removed since the
		// request came is not tried again.
		b, probe, err := r.pick(out, r.set.Load(), tried...)
		if err != nil {
			return nil, 0, false
		}
		if !r.o.budget.Withdraw() {
			b.release(probe)
			at.refused.Add(1)
			return nil, 0, false
		}
		return b, probe, true
	}
	// finish cancels the tries but win's (the one whose answer is
	// returned, if any) and closes the answers no one will read.
	finish := func(win int) {
		for i, cancel := range cancels {
			if i != win {
				cancel(errLost)
			}
		}
		c.end()
	}
	b, probe, err := r.pick(out, s)
	if err != nil {
		return nil, err
	}
	if err := launch(b, probe, kindFirst); err != nil {
		return nil, err
	}
	for {
		select {
		case t := <-c.ch:
			running--
			if !r.again(ctx, t) {
				if failure.resp != nil {
					failure.resp.Body.Close()
				}
				finish(t.i)
				return t.resp, t.err
			}
			if failure.resp != nil {
				failure.resp.Body.Close()
			}
			failure = t
			if running > 0 {
				continue // a hedge may yet answer
			}
			d := backoff << min(retried, 10)
			d = d/2 + rand.N(d/2+1)
			if len(cancels)-hedged >= attempts || !timeFor(ctx, d) || !sleep(ctx, d) {
				finish(failure.i)
				return failure.resp, failure.err
			}
			// Picked after the backoff, so that what changed meanwhile (a
			// breaker opened, a backend ejected) counts.
			b, probe, ok := extra(t.b)
			if !ok || launch(b, probe, kindRetry) != nil {
				finish(failure.i)
				return failure.resp, failure.err
			}
			retried++
			if hedgeT != nil {
				hedgeT.Reset(he.After) // hedge the retry as the first
			}
		case <-hedgeC:
			if hedged >= hedges || running == 0 || !timeFor(ctx, 0) {
				continue
			}
			b, probe, ok := extra(tried[len(tried)-1]) // the slow one: the first, or a retry
			if !ok || launch(b, probe, kindHedge) != nil {
				continue // the tries out go on
			}
			hedged++
			if hedged < hedges {
				hedgeT.Reset(he.After)
			}
		}
	}
}

const (
	kindFirst = iota
	kindRetry
	kindHedge
)

// again reports whether t failed in a way worth another try.
func (r *Router) again(ctx context.Context, t tryResult) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case t.err != nil:
		// Not sent (an open breaker, a body that could not be made again)
		// is as final as a failure of the client's.
		return !errors.Is(t.err, ErrCircuitOpen)
	case r.o.retry != nil:
		return slices.Contains(r.o.retry.Statuses, t.resp.StatusCode)
	}
	return false
}

// timeFor reports whether a try may start after d: within the request's
// deadline.
func timeFor(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > d
}

// sleep waits d, or until ctx is done, and reports whether it was d.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
