// Package loadtest loads a test process on purpose, so that tests and
// benchmarks can check what slow scheduling and a busy garbage collector
// do to timing-sensitive code, and measures how hard the load was. It is
// for tests only.
package loadtest

import (
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sink keeps the compiler from dropping the load's work.
var sink atomic.Uint64

// Spin starts n goroutines that spin on arithmetic until stop is called;
// stop returns once they have ended.
func Spin(n int) (stop func()) {
	return run(n, func(done *atomic.Bool) {
		x := uint64(1)
		for !done.Load() {
			for range 1000 {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		sink.Add(x)
	})
}

// Allocate starts n goroutines that allocate 1 MiB slices, touch every
// page of each and keep the last eight alive, so that the collector runs
// all the time, until stop is called; stop returns once they have ended.
func Allocate(n int) (stop func()) {
	return run(n, func(done *atomic.Bool) {
		var live [8][]byte
		var sum byte
		for i := 0; !done.Load(); i++ {
			s := make([]byte, 1<<20)
			for j := 0; j < len(s); j += 4096 {
				s[j] = byte(i + j)
			}
			live[i%len(live)] = s
			sum += s[len(s)/2]
		}
		sink.Add(uint64(sum))
	})
}

func run(n int, work func(done *atomic.Bool)) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { work(&done) })
	}
	return func() {
		done.Store(true)
		wg.Wait()
	}
}

// Lateness sleeps 1 ms at a time in a goroutine of its own, recording how
// late each sleep wakes, until stop is called; stop returns the lateness
// of every sleep, sorted.
func Lateness() (stop func() []time.Duration) {
	var late []time.Duration
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			t := time.Now()
			time.Sleep(time.Millisecond)
			late = append(late, time.Since(t)-time.Millisecond)
		}
	}()
	return func() []time.Duration {
		close(quit)
		<-done
		slices.Sort(late)
		return late
	}
}

// Percentile returns the p-th quantile (0 to 1) of sorted durations, or 0
// if there are none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

// AwaitExit waits up to d for every goroutine whose stack mentions substr
// to end, and reports whether they did: some libraries (memberlist's
// Shutdown, for one) return before their goroutines do, which a leak
// check that follows would otherwise report.
func AwaitExit(substr string, d time.Duration) bool {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(d); ; {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if !strings.Contains(string(buf[:n]), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
