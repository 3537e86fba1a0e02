package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cristalhq/hedgedhttp"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/distkit/distkit/scattergather"
)

// instantLeaf answers at once.
type instantLeaf int

func (l instantLeaf) Do(_ context.Context, req int) (int, error) { return int(l) + req, nil }

// errgroupFanout is the skeleton people write by hand: a deadline, an
// errgroup, one goroutine per leaf, answers over a channel, summed.
func errgroupFanout(ctx context.Context, leaves []instantLeaf, req int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	answers := make(chan int, len(leaves))
	for _, l := range leaves {
		g.Go(func() error {
			v, err := l.Do(ctx, req)
			if err != nil {
				return err
			}
			answers <- v
			return nil
		})
	}
	err := g.Wait()
	close(answers)
	sum := 0
	for v := range answers {
		sum += v
	}
	return sum, err
}

// BenchmarkFanout measures the machinery of one fan-out: leaves answer at
// once, so the time is all overhead. ns/leaf is ns/op over the number of
// leaves.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{8, 64, 512} {
		leaves := make([]instantLeaf, n)
		targets := make([]scattergather.Target[int, int], n)
		for i := range leaves {
			leaves[i] = instantLeaf(i)
			targets[i] = scattergather.Target[int, int]{Leaf: leaves[i]}
		}
		want := n * (n - 1) / 2
		b.Run(fmt.Sprintf("impl=errgroup/leaves=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v, err := errgroupFanout(context.Background(), leaves, 0); err != nil || v != want {
					b.Fatalf("sum %d, err %v", v, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/leaf")
		})
		b.Run(fmt.Sprintf("impl=distkit/leaves=%d", n), func(b *testing.B) {
			g, err := scattergather.New(targets, scattergather.Sum[int]())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				v, err := g.Do(ctx, 0)
				cancel()
				if err != nil || v != want {
					b.Fatalf("sum %d, err %v", v, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/leaf")
		})
	}
}

// Hedging benchmark: a simulated leaf server with a heavy tail.
const (
	hedgeRequests = 8000
	hedgeWorkers  = 8
	hedgeSlowPct  = 3 // percent of replies that take 50–100 ms
)

// tailServer answers GETs after a latency drawn from a seeded heavy-tailed
// distribution: 4–6 ms, or 50–100 ms for hedgeSlowPct percent of
// requests. A request whose client gives up stops at once. It counts the
// requests it got.
type tailServer struct {
	mu    sync.Mutex
	rng   *rand.Rand
	count atomic.Int64
}

func (s *tailServer) latency() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rng.IntN(100) < hedgeSlowPct {
		return 50*time.Millisecond + time.Duration(s.rng.Int64N(int64(50*time.Millisecond)))
	}
	return 4*time.Millisecond + time.Duration(s.rng.Int64N(int64(2*time.Millisecond)))
}

func (s *tailServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.count.Add(1)
	t := time.NewTimer(s.latency())
	defer t.Stop()
	select {
	case <-t.C:
		_, _ = io.WriteString(w, "ok")
	case <-r.Context().Done():
	}
}

// startTail serves a fresh tailServer on 127.0.0.1 with seed 1.
func startTail(b *testing.B) (*tailServer, string, func()) {
	s := &tailServer{rng: rand.New(rand.NewPCG(1, 1))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return s, "http://" + ln.Addr().String() + "/", func() { _ = srv.Close() }
}

func hedgeHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// runRequests makes hedgeRequests calls of do from hedgeWorkers
// goroutines and returns their latencies, sorted.
func runRequests(b *testing.B, do func(ctx context.Context) error) []time.Duration {
	lat := make([]time.Duration, hedgeRequests)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, hedgeWorkers)
	for range hedgeWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= hedgeRequests {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				err := do(ctx)
				lat[i] = time.Since(start)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	return lat
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

// BenchmarkHedge sends hedgeRequests requests (8 at a time) to a
// simulated leaf on loopback whose replies take 4–6 ms, or 50–100 ms for
// 3% of them, each drawn from a seeded generator, and reports the
// latency percentiles and the extra requests hedging cost. none sends each
// request once; distkit gathers over one target whose replica is the
// same server, hedging at the observed 95th percentile (20 ms until 100
// latencies are in) within a 5% budget; hedgedhttp hedges once
// (Upto 2) after a fixed delay: the 95th percentile that impl=none
// measured in the same run, so both hedge at the same point.
func BenchmarkHedge(b *testing.B) {
	var noneP95 time.Duration
	impls := []struct {
		name string
		run  func(b *testing.B, url string) []time.Duration
	}{
		{"none", func(b *testing.B, url string) []time.Duration {
			c := hedgeHTTPClient()
			defer c.CloseIdleConnections()
			lat := runRequests(b, func(ctx context.Context) error { return get(ctx, c, url) })
			noneP95 = pct(lat, 0.95)
			return lat
		}},
		{"distkit", func(b *testing.B, url string) []time.Duration {
			c := hedgeHTTPClient()
			defer c.CloseIdleConnections()
			leaf := scattergather.LeafFunc[struct{}, struct{}](func(ctx context.Context, _ struct{}) (struct{}, error) {
				return struct{}{}, get(ctx, c, url)
			})
			budget, err := scattergather.NewBudget(0.05, 10)
			if err != nil {
				b.Fatal(err)
			}
			g, err := scattergather.New([]scattergather.Target[struct{}, struct{}]{{Leaf: leaf, Replicas: []scattergather.Leaf[struct{}, struct{}]{leaf}}},
				scattergather.Fold(func() struct{} { return struct{}{} }, func(a, _ struct{}) (struct{}, bool) { return a, false }),
				scattergather.WithHedge(scattergather.Hedge{After: 10 * time.Millisecond, Percentile: 0.95, Budget: budget}))
			if err != nil {
				b.Fatal(err)
			}
			lat := runRequests(b, func(ctx context.Context) error { _, err := g.Do(ctx, struct{}{}); return err })
			s := g.Stats()
			b.Logf("distkit: %d hedges, %d won, %d refused by the budget; hedge delay %v at the end", s.Hedges, s.HedgesWon, s.BudgetRefusals, s.HedgeDelay)
			return lat
		}},
		{"hedgedhttp", func(b *testing.B, url string) []time.Duration {
			if noneP95 == 0 {
				b.Skip("needs impl=none's 95th percentile from the same run")
			}
			base := hedgeHTTPClient()
			defer base.CloseIdleConnections()
			c, err := hedgedhttp.NewClient(noneP95, 2, base)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("hedgedhttp: delay %v", noneP95)
			return runRequests(b, func(ctx context.Context) error { return get(ctx, c, url) })
		}},
	}
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			// hedgedhttp's worker pool keeps idle goroutines for 10 s.
			defer goleak.VerifyNone(b, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/cristalhq/hedgedhttp.runInPool.func1"))
			var p50, p99 time.Duration
			var extra float64
			for b.Loop() {
				srv, url, stop := startTail(b)
				lat := im.run(b, url)
				stop()
				p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
				extra = float64(srv.count.Load()-hedgeRequests) / hedgeRequests * 100
				b.Logf("%s: p50 %v p95 %v p97 %v p98 %v p99 %v p99.5 %v p99.9 %v max %v, %.2f%% extra requests", im.name, p50, pct(lat, 0.95), pct(lat, 0.97), pct(lat, 0.98), p99, pct(lat, 0.995), pct(lat, 0.999), lat[len(lat)-1], extra)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(p50)/float64(time.Millisecond), "p50-ms")
			b.ReportMetric(float64(p99)/float64(time.Millisecond), "p99-ms")
			b.ReportMetric(extra, "extra-requests-%")
		})
	}
}
