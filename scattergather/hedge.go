package scattergather

import (
	"context"
	"sync"
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
	if g.hedgeCalls.Add(1)%delayEvery == 1 || g.delay.Load() == 0 {
		qs, n := g.leafLat.Quantiles(h.Percentile)
		d := h.After
		if n >= minSamples {
			d = max(qs[0], time.Microsecond)
		}
		g.delay.Store(int64(d))
	}
	return time.Duration(g.delay.Load())
}

const (
	delayEvery = 16 // calls between recomputed percentile delays
	minSamples = 20 // latencies needed before a percentile delay is used
)

// hedged asks leaf i, then its replicas as Hedge says, and delivers the
// first answer, or the last error if none answered, exactly once. The
// leaf itself is asked in the calling goroutine, and hedges are sent by
// a timer, so a request that answers more than early() before its
// delay costs no extra goroutine (one that is still running then costs
// the timer's goroutine and, on Linux, a timerfd: about seven system
// calls); the request that answers first delivers its answer itself.
// The requests hedged started have all returned when it returns.
func (g *Gatherer[Req, Resp, Out]) hedged(ctx context.Context, i int, req Req, delay time.Duration, start time.Time, deliver func(answer[Resp])) {
	h := &hedging[Req, Resp, Out]{g: g, t: &g.targets[i], ctx: ctx, req: req, delay: delay, start: start, deliver: deliver}
	h.ch = make(chan error, len(h.t.Replicas))
	h.mu.Lock()
	actx, cancel := h.attemptContext()
	h.cancels = append(h.cancels, cancel)
	h.sent = 1
	if delay > 0 && len(h.t.Replicas) > 0 {
		// The delay counts from the leaf's start, as the latencies it
		// comes from do: time spent waiting to be scheduled counts.
		h.bg.Add(1)
		h.due = start.Add(delay)
		h.timer = time.AfterFunc(max(delay-time.Since(start)-h.early(), 0), h.fire)
	}
	h.mu.Unlock()

	err := h.attempt(actx, 0, start)
	h.mu.Lock()
	// A failed leaf fails over to its next replica at once, unless one
	// is already running.
	if err != nil && h.running == 0 && !h.won {
		h.failoverLocked()
	}
	h.mu.Unlock()
	// Wait for the replicas asked; every one reports here.
	for {
		h.mu.Lock()
		if h.running == 0 {
			h.over = true
			if h.timer != nil && h.timer.Stop() {
				h.bg.Done() // it will not fire
			}
			w := h.waker
			won, a := h.won, answer[Resp]{err: h.last, hedges: h.sent - 1, winner: h.lastK}
			h.mu.Unlock()
			if w != nil {
				w.stop() // after unlocking: it waits for the read to end
			}
			if !won {
				a.lat = time.Since(start)
				h.deliver(a)
			}
			break
		}
		h.mu.Unlock()
		if err := <-h.ch; err != nil {
			h.mu.Lock()
			if h.running == 0 && !h.won {
				h.failoverLocked()
			}
			h.mu.Unlock()
		}
	}
	h.mu.Lock()
	for _, c := range h.cancels {
		c()
	}
	h.mu.Unlock()
	h.bg.Wait() // a timer that fired as this ended has seen over
}

// hedging is one leaf's request and its hedges.
type hedging[Req, Resp, Out any] struct {
	g       *Gatherer[Req, Resp, Out]
	t       *Target[Req, Resp]
	ctx     context.Context
	req     Req
	delay   time.Duration
	start   time.Time
	deliver func(answer[Resp])
	ch      chan error // replicas' results, in the leaf's goroutine's care

	mu      sync.Mutex
	timer   *time.Timer
	due     time.Time      // when the timer's hedge is due
	waker   waker          // the timer's wait for due, if it fired early
	bg      sync.WaitGroup // timer runs (armed or running) and failovers
	cancels []context.CancelFunc
	sent    int  // requests sent: the leaf's and the replicas'
	running int  // replica requests running
	won     bool // an answer was delivered
	over    bool // no more requests may start
	last    error
	lastK   int
}

func (h *hedging[Req, Resp, Out]) attemptContext() (context.Context, context.CancelFunc) {
	if d := h.g.o.leafTimeout; d > 0 {
		return context.WithTimeout(h.ctx, d)
	}
	return context.WithCancel(h.ctx)
}

// attempt asks request k (0 the leaf, k the k-th replica), sent at
// begun, and delivers its answer if it is the first.
func (h *hedging[Req, Resp, Out]) attempt(ctx context.Context, k int, begun time.Time) error {
	leaf := h.t.Leaf
	if k > 0 {
		leaf = h.t.Replicas[k-1]
	}
	resp, err := call(ctx, leaf, h.req)
	h.mu.Lock()
	if err != nil {
		h.last, h.lastK = err, k
		h.mu.Unlock()
		return err
	}
	first := !h.won
	h.won = true
	sent := h.sent
	for j, c := range h.cancels {
		if j != k {
			c() // the others lost
		}
	}
	h.mu.Unlock()
	if first && k > 0 {
		// The leaf's latency (recorded by Gather) only says that its own
		// request took longer than this; a replica's own time is a full
		// sample of what a request takes, which keeps the percentile
		// from drifting up on the hedged requests' latencies.
		h.g.leafLat.Add(time.Since(begun))
	}
	if first {
		h.deliver(answer[Resp]{resp: resp, lat: time.Since(h.start), hedges: sent - 1, winner: k})
	}
	return nil
}

// fire is the hedge timer, in a goroutine of its own: it waits out the
// wakeEarly it fired early by, arms itself for the next replica and asks
// this one itself, saving a hand-off.
func (h *hedging[Req, Resp, Out]) fire() {
	defer h.bg.Done()
	h.mu.Lock()
	// A precise waker that could not wait (its file not in the poller)
	// returns at once; then a Go timer waits out the rest.
	for newW := newWaker; !h.over && !h.won; newW = newTimerWaker {
		rest := time.Until(h.due)
		if rest <= 0 {
			break
		}
		w := newW(rest)
		h.waker = w
		h.mu.Unlock()
		w.wait() // or stopped, as the leaf's request ended
		h.mu.Lock()
		h.waker = nil
	}
	r, ok := h.sendLocked()
	if ok && h.sent <= len(h.t.Replicas) {
		h.bg.Add(1)
		h.due = time.Now().Add(h.delay)
		h.timer.Reset(max(h.delay-h.early(), 0))
	}
	h.mu.Unlock()
	if ok {
		h.ask(r)
	}
}

// early is how long before its delay the timer fires, to wait out the
// rest precisely. Not for a delay within 2×wakeEarly: its timer would go
// off at once, costing every request a goroutine and a timerfd; such
// delays make do with Go's timers.
func (h *hedging[Req, Resp, Out]) early() time.Duration {
	if h.delay > 2*wakeEarly {
		return wakeEarly
	}
	return 0
}

// failoverLocked asks the next replica at once, after a failure.
func (h *hedging[Req, Resp, Out]) failoverLocked() {
	if r, ok := h.sendLocked(); ok {
		h.bg.Add(1)
		go func() {
			defer h.bg.Done()
			h.ask(r)
		}()
	}
}

// replicaRequest is a request to replica k, counted as running.
type replicaRequest struct {
	ctx   context.Context
	k     int
	begun time.Time
}

// sendLocked books a request to the next replica, if there is one, the
// gather is still on, nothing has answered and the budget allows; the
// caller then asks it.
func (h *hedging[Req, Resp, Out]) sendLocked() (replicaRequest, bool) {
	k := h.sent
	if h.over || h.won || k > len(h.t.Replicas) || h.ctx.Err() != nil {
		return replicaRequest{}, false
	}
	if b := h.g.o.hedge.Budget; b != nil && !b.Withdraw() {
		h.g.refused.Add(1)
		return replicaRequest{}, false
	}
	ctx, cancel := h.attemptContext()
	h.cancels = append(h.cancels, cancel)
	h.sent++
	h.running++
	return replicaRequest{ctx, k, time.Now()}, true
}

// ask runs a booked replica request and reports its result to the
// leaf's goroutine.
func (h *hedging[Req, Resp, Out]) ask(r replicaRequest) {
	err := h.attempt(r.ctx, r.k, r.begun)
	h.mu.Lock()
	h.running--
	h.mu.Unlock()
	h.ch <- err
}
