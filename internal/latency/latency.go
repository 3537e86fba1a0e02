// Package latency keeps histograms of recent durations for percentiles:
// hedge delays and Stats in scattergather, Stats in workqueue.
package latency

import (
	"math/bits"
	"sync"
	"time"
)

// Window keeps a histogram of recent durations, for percentiles. Writers
// hold its lock and call AddLocked, or call Add; Quantiles takes the lock
// itself. Buckets are log-linear, 32 per power of two, so a
// percentile is within about 3% of the true one. It holds the current
// window and the one before it, and switches windows every windowSize
// samples, so percentiles follow changes within two windows.
type Window struct {
	mu       *sync.Mutex
	cur, old *histogram
}

const (
	windowSize = 1024
	subBits    = 5
	numBuckets = (64 - subBits + 1) << subBits
)

type histogram struct {
	n      int
	counts [numBuckets]uint32
}

// New returns an empty Window guarded by mu, which its user may share
// with its own state.
func New(mu *sync.Mutex) *Window {
	return &Window{mu: mu, cur: new(histogram), old: new(histogram)}
}

// bucket maps a duration in nanoseconds to its bucket: values below
// 2^subBits have a bucket each; above, a bucket spans 1/32 of its power of
// two.
func bucket(ns uint64) int {
	if ns < 1<<subBits {
		return int(ns)
	}
	exp := bits.Len64(ns) - subBits - 1 // shift that leaves subBits+1 bits
	return (exp+1)<<subBits + int(ns>>exp&(1<<subBits-1))
}

// lower is the smallest duration in bucket i; upper its largest.
func bounds(i int) (lower, upper uint64) {
	if i < 1<<subBits {
		return uint64(i), uint64(i)
	}
	exp := i>>subBits - 1
	base := (1<<subBits | uint64(i&(1<<subBits-1))) << exp
	return base, base + 1<<exp - 1
}

// Add records d.
func (l *Window) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	l.mu.Lock()
	l.AddLocked(d)
	l.mu.Unlock()
}

// AddLocked records d; the Window's lock is held.
func (l *Window) AddLocked(d time.Duration) {
	if l.cur.n >= windowSize {
		l.cur, l.old = l.old, l.cur
		*l.cur = histogram{}
	}
	l.cur.n++
	l.cur.counts[bucket(uint64(max(d, 0)))]++
}

// Quantiles returns the durations at the given quantiles (each in [0,1])
// over both windows, and how many samples they hold. With no samples it
// returns zeros.
func (l *Window) Quantiles(qs ...float64) ([]time.Duration, int) {
	return Merged([]*Window{l}, qs...)
}

// Merged is Quantiles over the samples of several windows, which may be
// guarded by different locks: it takes each in turn.
func Merged(ws []*Window, qs ...float64) ([]time.Duration, int) {
	out := make([]time.Duration, len(qs))
	var counts [numBuckets]int
	n := 0
	for _, l := range ws {
		l.mu.Lock()
		n += l.cur.n + l.old.n
		for i := range numBuckets {
			counts[i] += int(l.cur.counts[i]) + int(l.old.counts[i])
		}
		l.mu.Unlock()
	}
	if n == 0 {
		return out, 0
	}
	for qi, q := range qs {
		rank := q*float64(n-1) + 1 // 1-based rank of the sample
		seen := 0
		for i, c := range counts {
			if c > 0 && float64(seen+c) >= rank {
				// Spread the bucket's samples evenly over its span: a
				// bucket is 1/32 of a power of two wide, too coarse for a
				// hedge delay (about 130 µs at 7 ms).
				lo, hi := bounds(i)
				frac := (rank - float64(seen) - 0.5) / float64(c)
				out[qi] = time.Duration(float64(lo) + float64(hi-lo)*min(max(frac, 0), 1))
				break
			}
			seen += c
		}
	}
	return out, n
}
