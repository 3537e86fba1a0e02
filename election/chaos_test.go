package election

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var chaosTime = flag.Duration("chaos.time", 6*time.Second, "total time for the election chaos test's schedules")

// TestChaos runs seeded fault schedules — isolation, one-way cuts,
// partitions around the leader, latency and node crashes with restarts —
// while clients on every node acquire, renew, release and write through a
// Fence. It asserts that no two holders ever hold a valid lease on one
// resource at the same moment and that the store never accepts a write
// with a stale token. Run longer with -chaos.time=2m.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	per := 2 * time.Second
	var total chaosTotals
	start := time.Now()
	for seed := uint64(1); seed == 1 || time.Since(start)+per <= *chaosTime; seed++ {
		size := 3
		if seed%2 == 0 {
			size = 5
		}
		runChaos(t, seed, size, per, &total)
		if t.Failed() {
			return
		}
	}
	t.Logf("chaos: %d schedules, %d faults, %d grants, %d renewals, %d releases, %d fenced writes accepted, %d rejected as stale, in %v",
		total.schedules, total.faults.Load(), total.grants.Load(), total.renews.Load(), total.releases.Load(),
		total.writes.Load(), total.stale.Load(), time.Since(start).Round(time.Millisecond))
}

type chaosTotals struct {
	schedules                                       int
	faults, grants, renews, releases, writes, stale atomic.Int64
}

// held is one lease as a client saw it: valid from when its grant
// arrived until the earliest of its final deadline, its release and its
// node's crash.
type held struct {
	node  string
	lease *Lease
	from  time.Time
	mu    sync.Mutex
	until time.Time // set when the client stops using it
}

func (h *held) end() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.lease.Deadline()
	if !h.until.IsZero() && h.until.Before(d) {
		return h.until
	}
	return d
}

func (h *held) stop(at time.Time) {
	h.mu.Lock()
	if h.until.IsZero() || at.Before(h.until) {
		h.until = at
	}
	h.mu.Unlock()
}

type ledger struct {
	mu     sync.Mutex
	leases map[string][]*held // by resource
}

func (lg *ledger) add(res string, h *held) {
	lg.mu.Lock()
	lg.leases[res] = append(lg.leases[res], h)
	lg.mu.Unlock()
}

// othersValid returns another lease on res whose holder believes it valid now.
func (lg *ledger) othersValid(res string, self *held) *held {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for _, h := range lg.leases[res] {
		if h != self && h.lease.Valid() {
			h.mu.Lock()
			stopped := !h.until.IsZero()
			h.mu.Unlock()
			if !stopped {
				return h
			}
		}
	}
	return nil
}

func (lg *ledger) crashed(node string, at time.Time) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for _, hs := range lg.leases {
		for _, h := range hs {
			if h.node == node {
				h.stop(at)
			}
		}
	}
}

func runChaos(t *testing.T, seed uint64, size int, d time.Duration, tot *chaosTotals) {
	t.Helper()
	c := newCluster(t, size, false)
	defer c.closeAll()
	rng := rand.New(rand.NewPCG(seed, 42))
	resources := []string{"alpha", "beta", "gamma", "delta"}
	lg := &ledger{leases: map[string][]*held{}}
	var fence Fence
	var fail atomic.Value // first violation
	violate := func(format string, args ...any) {
		fail.CompareAndSwap(nil, fmt.Sprintf("seed %d: "+format, append([]any{seed}, args...)...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()

	var wg sync.WaitGroup
	for ci, id := range c.ids {
		for ri, res := range resources {
			wg.Add(1)
			crng := rand.New(rand.NewPCG(seed, uint64(ci*10+ri)))
			go func() {
				defer wg.Done()
				chaosClient(ctx, c, id, res, crng, lg, &fence, tot, violate)
			}()
		}
	}

	// The fault schedule.
	crashedAt := map[string]time.Time{}
	for ctx.Err() == nil {
		sleep := time.Duration(50+rng.IntN(200)) * time.Millisecond
		select {
		case <-ctx.Done():
		case <-time.After(sleep):
		}
		if ctx.Err() != nil {
			break
		}
		// Restart crashed nodes after a while, keeping their stores.
		for id, at := range crashedAt {
			if time.Since(at) > 300*time.Millisecond {
				delete(crashedAt, id)
				c.start(id)
			}
		}
		tot.faults.Add(1)
		a, b := c.ids[rng.IntN(size)], c.ids[rng.IntN(size)]
		switch rng.IntN(7) {
		case 0:
			c.net.Isolate(a)
		case 1:
			if a != b {
				c.net.Cut(a, b)
			}
		case 2:
			if l, ok := c.live()[0].Leader(); ok {
				var rest []string
				for _, id := range c.ids {
					if id != l.ID {
						rest = append(rest, id)
					}
				}
				c.net.Partition([]string{l.ID}, rest)
			}
		case 3:
			c.net.SetLatency(a, b, time.Duration(rng.IntN(20))*time.Millisecond, 10*time.Millisecond)
		case 4:
			// Crash at most a minority at once.
			if len(crashedAt) < (size-1)/2 && c.node(a) != nil {
				lg.crashed(a, time.Now())
				c.crash(a)
				crashedAt[a] = time.Now()
			}
		default:
			c.net.HealAll()
		}
	}
	cancel()
	wg.Wait()
	c.net.HealAll()
	tot.schedules++

	if f := fail.Load(); f != nil {
		t.Fatal(f)
	}
	// Every pair of leases on one resource must have disjoint validity.
	tokens := map[uint64]string{}
	for res, hs := range lg.leases {
		for i, a := range hs {
			if prev, dup := tokens[a.lease.Token()]; dup {
				t.Fatalf("seed %d: token %d granted twice (%s and %s)", seed, a.lease.Token(), prev, res)
			}
			tokens[a.lease.Token()] = res
			for _, b := range hs[i+1:] {
				if a.from.Before(b.end()) && b.from.Before(a.end()) {
					t.Fatalf("seed %d: %q held by %s (token %d, %v–%v) and %s (token %d, %v–%v) at once",
						seed, res, a.node, a.lease.Token(), a.from.Format("05.000"), a.end().Format("05.000"),
						b.node, b.lease.Token(), b.from.Format("05.000"), b.end().Format("05.000"))
				}
			}
		}
	}
}

func chaosClient(ctx context.Context, c *cluster, id, res string, rng *rand.Rand, lg *ledger, fence *Fence, tot *chaosTotals, violate func(string, ...any)) {
	ttl := time.Duration(60+rng.IntN(150)) * time.Millisecond
	for ctx.Err() == nil {
		n := c.node(id)
		if n == nil {
			_ = sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		l, err := n.Acquire(actx, res, ttl)
		cancel()
		if err != nil {
			continue
		}
		tot.grants.Add(1)
		h := &held{node: id, lease: l, from: time.Now()}
		lg.add(res, h)
		for ctx.Err() == nil && l.Valid() {
			err := fence.Do(res, l.Token(), func() error {
				if !l.Valid() {
					return ErrLeaseLost
				}
				if o := lg.othersValid(res, h); o != nil {
					violate("%q: %s writes with token %d while %s holds token %d", res, id, l.Token(), o.node, o.lease.Token())
				}
				return nil
			})
			switch {
			case err == nil:
				tot.writes.Add(1)
			case errors.Is(err, ErrStaleToken):
				// A stale token is rejected only if its lease already
				// ended; a valid lease being refused means a newer grant
				// overlapped it.
				tot.stale.Add(1)
				if l.Valid() {
					violate("%q: valid lease token %d refused: %v", res, l.Token(), err)
				}
			}
			_ = sleepCtx(ctx, time.Duration(5+rng.IntN(20))*time.Millisecond)
			if time.Until(l.Deadline()) < ttl/2 {
				rctx, cancel := context.WithTimeout(ctx, ttl/3)
				if l.Renew(rctx) == nil {
					tot.renews.Add(1)
				}
				cancel()
			}
			if rng.IntN(12) == 0 {
				h.stop(time.Now())
				rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				if l.Release(rctx) == nil {
					tot.releases.Add(1)
				}
				cancel()
				break
			}
		}
		h.stop(time.Now())
	}
}
