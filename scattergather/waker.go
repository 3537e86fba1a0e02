package scattergather

import (
	"sync"
	"time"
)

// A waker lets one goroutine wait out a short span, or until stopped.
// The hedge timer fires early by wakeEarly and waits out the rest on a
// waker, because Go's timers are up to a millisecond late when the
// process is idle: the runtime's poller sleeps in whole milliseconds
// (golang/go#53824), which at a 1–10 ms hedge delay is a large error;
// a timerfd in the poller is the usual remedy (netty and smol use it).
type waker interface {
	wait()
	stop() // wait returns at once; safe to call more than once
}

// newWaker returns a waker of d, precise where the platform allows (a
// variable so that tests can see the hedge timer wait).
var newWaker = func(d time.Duration) waker {
	if w, err := newPreciseWaker(d); err == nil {
		return w
	}
	return newTimerWaker(d)
}

// timerWaker waits on a Go timer, where no precise waker is to be had.
type timerWaker struct {
	t    *time.Timer
	done chan struct{}
	once sync.Once
}

func newTimerWaker(d time.Duration) waker {
	return &timerWaker{t: time.NewTimer(d), done: make(chan struct{})}
}

func (w *timerWaker) wait() {
	select {
	case <-w.t.C:
	case <-w.done:
	}
	w.t.Stop()
}

func (w *timerWaker) stop() { w.once.Do(func() { close(w.done) }) }
