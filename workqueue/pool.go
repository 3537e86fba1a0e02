package workqueue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Handler does one item's work. Returning nil acks the item; an error
// nacks it (retried, or a dead letter if Permanent or out of attempts).
// ctx ends when the pool stops or when the claim is lost (its lease
// could not be extended): stop then, since the item may go to another
// worker.
type Handler func(ctx context.Context, c Claim) error

// Pool runs a Handler over a Queue with between min and max workers,
// adding workers while all are busy and work is waiting, and retiring
// them while some wait for work. A worker extends its claim's lease while
// the handler runs, so a handler may take longer than the lease; a
// handler that panics nacks its item instead of crashing the process.
type Pool struct {
	q     Queue
	h     Handler
	o     poolOptions
	ready interface{ readyCount() int } // q, if it is a Memory or Disk, for the backlog

	ctx    context.Context // ends at Close's deadline: handlers stop
	cancel context.CancelFunc
	claims context.Context // ends at Close: no more claims
	stop   context.CancelFunc

	mu      sync.Mutex
	workers map[*worker]struct{}
	wg      sync.WaitGroup

	busy                   atomic.Int32
	done, failed, panics   atomic.Uint64
	lost, started, retired atomic.Uint64
	lastClaimWait          atomic.Int64 // ns the last claim blocked
	queueClosed            atomic.Bool  // a worker saw ErrClosed: add no more
	closeOnce              sync.Once
	scaler                 sync.WaitGroup
}

type worker struct {
	stop context.CancelFunc // retires it: ends its claim
	busy atomic.Bool        // running the handler
}

type poolOptions struct {
	min, max int
	lease    time.Duration
	interval time.Duration
	log      *zap.Logger
}

// PoolOption configures a Pool.
type PoolOption func(*poolOptions) error

// WithWorkers bounds the pool's workers. Default: 1 to 4×GOMAXPROCS.
func WithWorkers(min, max int) PoolOption {
	return func(o *poolOptions) error {
		if min < 1 || max < min {
			return invalid("workers %d to %d: want 1 ≤ min ≤ max", min, max)
		}
		o.min, o.max = min, max
		return nil
	}
}

// WithLease sets the lease of each claim, which a worker extends by as
// much each time a third of it has passed. Default 30 s.
func WithLease(d time.Duration) PoolOption {
	return func(o *poolOptions) error {
		if d <= 0 {
			return invalid("lease %v: want more than 0", d)
		}
		o.lease = d
		return nil
	}
}

// WithScaleInterval sets how often the pool considers adding or
// retiring a worker. Default 100 ms.
func WithScaleInterval(d time.Duration) PoolOption {
	return func(o *poolOptions) error {
		if d <= 0 {
			return invalid("scale interval %v: want more than 0", d)
		}
		o.interval = d
		return nil
	}
}

// WithPoolLogger logs panics and lost claims through l. Default: none.
func WithPoolLogger(l *zap.Logger) PoolOption {
	return func(o *poolOptions) error {
		if l == nil {
			return invalid("nil logger")
		}
		o.log = l
		return nil
	}
}

// NewPool starts a pool of workers running h over q.
func NewPool(q Queue, h Handler, opts ...PoolOption) (*Pool, error) {
	if q == nil || h == nil {
		return nil, invalid("NewPool needs a queue and a handler")
	}
	o := poolOptions{min: 1, max: 4 * runtime.GOMAXPROCS(0), lease: 30 * time.Second, interval: 100 * time.Millisecond, log: zap.NewNop()}
	for _, opt := range opts {
		if opt == nil {
			return nil, invalid("nil PoolOption")
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	p := &Pool{q: q, h: h, o: o, workers: map[*worker]struct{}{}}
	if r, ok := q.(interface{ readyCount() int }); ok {
		p.ready = r
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.claims, p.stop = context.WithCancel(p.ctx)
	p.mu.Lock()
	for range o.min {
		p.addLocked()
	}
	p.mu.Unlock()
	p.scaler.Add(1)
	go p.scale()
	return p, nil
}

// addLocked starts a worker; p.mu held.
func (p *Pool) addLocked() {
	ctx, cancel := context.WithCancel(p.claims)
	w := &worker{stop: cancel}
	p.workers[w] = struct{}{}
	p.started.Add(1)
	p.wg.Add(1)
	go p.run(ctx, w)
}

// run claims and handles items until its context ends.
func (p *Pool) run(ctx context.Context, w *worker) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.workers, w)
		p.mu.Unlock()
		w.stop()
	}()
	backoff := 10 * time.Millisecond
	base, cancel := context.WithCancel(p.ctx) // handlers' contexts hang here, not all on p.ctx
	defer cancel()
	for ctx.Err() == nil {
		var start time.Time
		if p.ready == nil {
			start = time.Now() // how long claims block is the backlog signal
		}
		c, err := p.q.Claim(ctx, p.o.lease)
		if p.ready == nil && err == nil {
			// A failing queue answers fast too: that is no backlog.
			p.lastClaimWait.Store(int64(time.Since(start)))
		}
		switch {
		case ctx.Err() != nil && err != nil:
			return
		case errors.Is(err, ErrClosed):
			p.o.log.Warn("the queue is closed; worker stops")
			p.queueClosed.Store(true)
			return
		case err != nil:
			// A remote queue may be back soon; a broken one keeps
			// failing, and the worker keeps asking, slowly.
			p.o.log.Warn("claim failed; trying again", zap.Duration("in", backoff), zap.Error(err))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		w.busy.Store(true)
		p.busy.Add(1)
		p.handle(base, c)
		p.busy.Add(-1)
		w.busy.Store(false)
	}
}

// handle runs the handler on c, extending its lease meanwhile, then acks
// or nacks it.
func (p *Pool) handle(base context.Context, c Claim) {
	hctx, cancel := context.WithCancel(base)
	defer cancel()
	// The lease is extended by a timer, so that a handler done within a
	// third of the lease (most) costs no goroutine for it.
	var mu sync.Mutex // guards c, lost and finished
	lost, finished := false, false
	var t *time.Timer
	mu.Lock() // the callback, should it fire at once, waits for t
	t = time.AfterFunc(p.o.lease/3, func() {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		nc, err := p.q.Extend(hctx, c, p.o.lease)
		switch {
		case err == nil:
			c = nc
			t.Reset(p.o.lease / 3)
		case errors.Is(err, ErrNotHeld):
			lost = true
			p.lost.Add(1)
			p.o.log.Warn("claim lost while its handler ran", zap.String("id", c.ID), zap.Uint64("token", c.Token))
			cancel()
		default: // the queue may be back soon: try again before the lease ends
			t.Reset(p.o.lease / 10)
		}
	})
	first := c // the handler's copy; the timer renews c
	mu.Unlock()
	err := p.call(hctx, first)
	mu.Lock()
	finished = true
	t.Stop()
	mu.Unlock()
	switch {
	case lost:
		// Someone else may hold it now: neither ack nor nack.
	case err == nil:
		if err := p.q.Ack(context.Background(), c); err != nil {
			p.o.log.Warn("ack failed", zap.String("id", c.ID), zap.Error(err))
			return
		}
		p.done.Add(1)
	case p.ctx.Err() != nil:
		// Stopped by Close's deadline: let another worker have it soon,
		// without counting a failure against the item.
		p.q.Extend(context.Background(), c, time.Nanosecond)
	default:
		p.failed.Add(1)
		if err := p.q.Nack(context.Background(), c, err); err != nil {
			p.o.log.Warn("nack failed", zap.String("id", c.ID), zap.Error(err))
		}
	}
}

// call runs the handler, turning a panic into an error.
func (p *Pool) call(ctx context.Context, c Claim) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.panics.Add(1)
			p.o.log.Error("handler panicked", zap.String("id", c.ID), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("workqueue: handler panicked: %v", r)
		}
	}()
	return p.h(ctx, c)
}

// scale adds a worker when all are busy and work waits (the queue
// reports ready items, or, for a queue without Stats, the last claim did
// not block), and retires an idle one when two or more were idle at two
// ticks in a row.
func (p *Pool) scale() {
	defer p.scaler.Done()
	t := time.NewTicker(p.o.interval)
	defer t.Stop()
	idleTicks := 0
	for {
		select {
		case <-p.claims.Done():
			return
		case <-t.C:
		}
		if p.queueClosed.Load() {
			return // workers would only fail: no more of them
		}
		waiting := time.Duration(p.lastClaimWait.Load()) < time.Millisecond
		if p.ready != nil {
			waiting = p.ready.readyCount() > 0 // before p.mu: it takes the queue's lock
		}
		p.mu.Lock()
		n := len(p.workers)
		idle := n - int(p.busy.Load())
		switch {
		case idle == 0 && waiting && n < p.o.max:
			p.addLocked()
			idleTicks = 0
		case idle >= 2 && n > p.o.min:
			if idleTicks++; idleTicks >= 2 {
				for w := range p.workers {
					if !w.busy.Load() {
						w.stop() // it is waiting in Claim, which ends
						delete(p.workers, w)
						p.retired.Add(1)
						break
					}
				}
				idleTicks = 0
			}
		default:
			idleTicks = 0
		}
		p.mu.Unlock()
	}
}

// PoolStats is a snapshot of a pool.
type PoolStats struct {
	// Workers now, and how many are running the handler.
	Workers, Busy int
	// Done items acked, Failed nacked, Panics among them from a panic,
	// Lost claims whose lease could not be extended.
	Done, Failed, Panics, Lost uint64
	// Started and Retired count workers added and retired over time.
	Started, Retired uint64
}

// Stats returns a snapshot.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	n := len(p.workers)
	p.mu.Unlock()
	return PoolStats{
		Workers: n, Busy: int(p.busy.Load()),
		Done: p.done.Load(), Failed: p.failed.Load(), Panics: p.panics.Load(), Lost: p.lost.Load(),
		Started: p.started.Load(), Retired: p.retired.Load(),
	}
}

// Close stops claiming and waits for running handlers to finish. If ctx
// ends first, it cancels their contexts, gives their items back to the
// queue (their leases end at once, counted as expiries, not failures),
// and waits for them to return; it then returns ctx's error. It is
// idempotent; later calls wait for the first to finish.
func (p *Pool) Close(ctx context.Context) error {
	var err error
	p.closeOnce.Do(func() {
		p.stop()
		p.scaler.Wait()
		done := make(chan struct{})
		go func() {
			p.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
			p.cancel()
			<-done
		}
		p.cancel()
	})
	p.wg.Wait()
	return err
}
