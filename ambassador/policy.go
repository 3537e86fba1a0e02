package ambassador

import (
	"math/rand/v2"
	"net/http"
)

// Policy chooses the backend for each request.
type Policy interface {
	// Pick returns the backend for r, one of bs, which is not empty and
	// must not be changed. An error fails the request with a 502.
	Pick(r *http.Request, bs Backends) (*Backend, error)
}

// Backends is the set of backends a Policy picks from: those in balancing
// now, in the order SetBackends gave them, which leaves out backends
// ejected, failing their health checks or with an open breaker (unless
// that would leave none). Named finds any of the Router's backends.
type Backends struct {
	s *backendSet
	v *view
}

// Len returns how many backends there are to balance over.
func (bs Backends) Len() int { return len(bs.v.list) }

// At returns the i'th backend to balance over.
func (bs Backends) At(i int) *Backend { return bs.v.list[i] }

// Named returns the Router's backend named name, in balancing or not, or
// nil.
func (bs Backends) Named(name string) *Backend { return bs.s.byName[name] }

// Excluded reports whether b is out of balancing now.
func (bs Backends) Excluded(b *Backend) bool { return bs.v.out[b] }

// PolicyFunc makes a function a Policy.
type PolicyFunc func(r *http.Request, bs Backends) (*Backend, error)

// Pick calls f.
func (f PolicyFunc) Pick(r *http.Request, bs Backends) (*Backend, error) { return f(r, bs) }

// RoundRobin sends requests to each backend in turn.
func RoundRobin() Policy {
	return PolicyFunc(func(_ *http.Request, bs Backends) (*Backend, error) {
		n := bs.s.next.Add(1) - 1
		return bs.v.list[n%uint64(len(bs.v.list))], nil
	})
}

// WeightedRoundRobin sends requests to each backend in turn, each its
// weight's share, spread out (smooth, as nginx does it: with weights 5,
// 1, 1 the order is a a b a c a a, not a a a a a b c).
func WeightedRoundRobin() Policy {
	return PolicyFunc(func(_ *http.Request, bs Backends) (*Backend, error) {
		v := bs.v
		if v.derived {
			// A view for a retry or hedge, without a backend or two: one
			// pick by weight at random, O(backends), where a schedule of
			// its own would cost O(weight sum × backends). (Walking the
			// whole view's schedule past the left-out backends gave all
			// their turns to whichever came next in it.)
			total := 0
			for _, b := range v.list {
				total += b.weight
			}
			n := rand.N(total)
			for _, b := range v.list {
				if n -= b.weight; n < 0 {
					return b, nil
				}
			}
			return v.list[len(v.list)-1], nil // not reached
		}
		v.wrrOnce.Do(v.makeSchedule)
		n := bs.s.next.Add(1) - 1
		return v.list[v.wrr[n%uint64(len(v.wrr))]], nil
	})
}

// makeSchedule lays out one cycle of smooth weighted round robin, with
// the weights divided by their greatest common divisor.
func (s *view) makeSchedule() {
	g, total := 0, 0
	for _, b := range s.list {
		g = gcd(g, b.weight)
	}
	cur := make([]int, len(s.list))
	for _, b := range s.list {
		total += b.weight / g
	}
	s.wrr = make([]int32, total)
	for k := range s.wrr {
		best := 0
		for i, b := range s.list {
			cur[i] += b.weight / g
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		s.wrr[k] = int32(best)
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// LeastRequests picks two backends at random and sends the request to
// the one with fewer in flight (power of two choices: load varies by
// about ln ln n between backends, without a scan or a shared lock).
func LeastRequests() Policy {
	return p2c(func(b *Backend) float64 { return float64(b.InFlight()) })
}

// PeakEWMA picks two backends at random and sends the request to the one
// whose latency (a peak-EWMA of the time to response headers) times its
// requests in flight plus one is less; a backend with no latency yet
// counts as the fastest, so that it is tried. As in Linkerd and Finagle,
// it moves load off a backend as soon as it slows down.
func PeakEWMA() Policy {
	return p2c(func(b *Backend) float64 { return float64(b.Latency()+1) * float64(b.InFlight()+1) })
}

// p2c is power-of-two-choices by cost.
func p2c(cost func(*Backend) float64) Policy {
	return PolicyFunc(func(_ *http.Request, bs Backends) (*Backend, error) {
		l := bs.v.list
		if len(l) == 1 {
			return l[0], nil
		}
		i, j := twoOf(len(l))
		if a, b := l[i], l[j]; cost(b) < cost(a) {
			return b, nil
		}
		return l[i], nil
	})
}

// twoOf picks two different indexes below n (at least 2) at random.
func twoOf(n int) (i, j int) {
	i = rand.IntN(n)
	if j = rand.IntN(n - 1); j >= i {
		j++
	}
	return i, j
}
