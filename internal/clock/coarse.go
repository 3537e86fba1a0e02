package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Coarse reads the monotonic clock for code that reads it on every call
// and can take a reading up to about a tick old: a reading costs an
// atomic load instead of a clock read (~30 ns on a VM). A goroutine
// refreshes the reading every tick while it is being read, and stops
// after idleTicks ticks without a read, so an idle Coarse costs nothing;
// Close stops it for good.
//
// A reading is never ahead of the clock, only behind, by up to a tick
// when the refreshing goroutine runs on time and more when it is starved.
type Coarse struct {
	base time.Time
	now  atomic.Int64 // nanoseconds since base, as of the last tick
	used atomic.Bool  // read since the last tick
	on   atomic.Bool  // the refreshing goroutine runs

	mu     sync.Mutex
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

const (
	// CoarseTick is how often a Coarse clock's reading is refreshed.
	CoarseTick = time.Millisecond
	idleTicks  = 100
)

// NewCoarse returns a coarse clock counting from base.
func NewCoarse(base time.Time) *Coarse {
	return &Coarse{base: base, stop: make(chan struct{})}
}

// Since returns the time since base, at most about a tick old.
func (c *Coarse) Since() time.Duration {
	if c.on.Load() {
		if !c.used.Load() {
			c.used.Store(true) // written once a tick, not on every read
		}
		return time.Duration(c.now.Load())
	}
	return c.start()
}

// start reads the clock and starts the refreshing goroutine.
func (c *Coarse) start() time.Duration {
	d := time.Since(c.base)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.on.Load() {
		return d
	}
	c.now.Store(int64(d))
	c.used.Store(true)
	c.on.Store(true)
	c.wg.Add(1)
	go c.refresh()
	return d
}

func (c *Coarse) refresh() {
	defer c.wg.Done()
	t := time.NewTicker(CoarseTick)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-c.stop:
			c.on.Store(false)
			return
		case <-t.C:
		}
		c.now.Store(int64(time.Since(c.base)))
		if c.used.Swap(false) {
			idle = 0
			continue
		}
		if idle++; idle >= idleTicks {
			c.mu.Lock()
			c.on.Store(false)
			c.mu.Unlock()
			return
		}
	}
}

// Close stops the refreshing goroutine and waits for it; later readings
// read the clock itself. It is idempotent.
func (c *Coarse) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
	c.mu.Unlock()
	c.wg.Wait()
}
