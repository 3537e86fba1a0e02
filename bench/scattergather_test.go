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

	"github.com/distkit/distkit/internal/loadtest"
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
	hedgeRequests = 8000 // per implementation, over all rounds
	hedgeRounds   = 4
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

// startTail serves a fresh tailServer on 127.0.0.1 whose latencies come
// from seed. stop closes it; so does the benchmark's end, should a
// failure skip stop.
func startTail(b *testing.B, seed uint64) (*tailServer, string, func()) {
	s := &tailServer{rng: rand.New(rand.NewPCG(seed, seed))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { _ = srv.Close() })
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

// runRequests makes n calls of do from hedgeWorkers goroutines and
// returns their latencies.
func runRequests(b *testing.B, n int, do func(ctx context.Context) error) []time.Duration {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, hedgeWorkers)
	for range hedgeWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
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
	return lat
}

// hedgeClient is one implementation's way of sending a request to url,
// kept across rounds as a long-running client would be.
type hedgeClient struct {
	do    func(ctx context.Context, url string) error
	note  func() string // what it did, for the log
	close func()
}

// hedgeImpl is an implementation BenchmarkHedge compares: new makes its
// client for a set of rounds.
type hedgeImpl struct {
	name string
	new  func(b *testing.B, delay time.Duration) hedgeClient
}

// hedgeImpls are the implementations BenchmarkHedge compares, in the
// order each round runs them. A client is made with the fixed delay of
// distkit and hedgedhttp: the 95th percentile of impl=none's warm-up.
func hedgeImpls() []hedgeImpl {
	plain := func(b *testing.B, _ time.Duration) hedgeClient {
		c := hedgeHTTPClient()
		return hedgeClient{
			do:    func(ctx context.Context, url string) error { return get(ctx, c, url) },
			note:  func() string { return "" },
			close: c.CloseIdleConnections,
		}
	}
	// distkit gathers over one target whose replica is the same server.
	distkit := func(h scattergather.Hedge) func(b *testing.B, delay time.Duration) hedgeClient {
		return func(b *testing.B, delay time.Duration) hedgeClient {
			h := h // each set gets its own budget and delay
			c := hedgeHTTPClient()
			leaf := scattergather.LeafFunc[string, struct{}](func(ctx context.Context, url string) (struct{}, error) {
				return struct{}{}, get(ctx, c, url)
			})
			budget, err := scattergather.NewBudget(0.05, 10)
			if err != nil {
				b.Fatal(err)
			}
			h.Budget = budget
			if h.Percentile == 0 {
				h.After = delay
			}
			g, err := scattergather.New([]scattergather.Target[string, struct{}]{{Leaf: leaf, Replicas: []scattergather.Leaf[string, struct{}]{leaf}}},
				scattergather.Fold(func() struct{} { return struct{}{} }, func(a, _ struct{}) (struct{}, bool) { return a, false }),
				scattergather.WithHedge(h))
			if err != nil {
				b.Fatal(err)
			}
			return hedgeClient{
				do: func(ctx context.Context, url string) error { _, err := g.Do(ctx, url); return err },
				note: func() string {
					s := g.Stats()
					return fmt.Sprintf("; %d hedges, %d won, %d refused by the budget; hedge delay %v at the end",
						s.Hedges, s.HedgesWon, s.BudgetRefusals, s.HedgeDelay.Round(time.Microsecond))
				},
				close: c.CloseIdleConnections,
			}
		}
	}
	return []hedgeImpl{
		{"none", plain},
		{"distkit", distkit(scattergather.Hedge{})},
		{"distkit-p95", distkit(scattergather.Hedge{After: 10 * time.Millisecond, Percentile: 0.95})},
		{"hedgedhttp", func(b *testing.B, delay time.Duration) hedgeClient {
			base := hedgeHTTPClient()
			c, err := hedgedhttp.NewClient(delay, 2, base)
			if err != nil {
				b.Fatal(err)
			}
			return hedgeClient{
				do:    func(ctx context.Context, url string) error { return get(ctx, c, url) },
				note:  func() string { return fmt.Sprintf("; delay %v", delay.Round(time.Microsecond)) },
				close: base.CloseIdleConnections,
			}
		}},
	}
}

// hedgeResult is one implementation's figures from one set of rounds.
type hedgeResult struct {
	lat    []time.Duration // sorted
	extra  float64         // percent
	vsPeer float64         // p99 over hedgedhttp's in the same set
	note   string
}

// hedgeSets holds, per implementation, results of sets of rounds not yet
// reported: each set runs every implementation, so one sub-benchmark
// iteration starts a set whose other results the others report.
var hedgeSets = map[string][]hedgeResult{}

// runHedgeSet runs a warm-up round and hedgeRounds measured ones. Each
// sends hedgeRequests/hedgeRounds requests with every implementation in
// turn, each against a fresh server seeded with the round's number: so
// every implementation meets the same latencies, and drift in the
// machine's speed over the run falls on all of them alike. The clients
// live through all rounds, as in a service that has been up a while.
func runHedgeSet(b *testing.B) {
	impls := hedgeImpls()
	clients := make([]hedgeClient, len(impls))
	var delay time.Duration // none's warm-up p95; none comes first
	lats := make([][]time.Duration, len(impls))
	sent := make([]int64, len(impls))
	per := hedgeRequests / hedgeRounds
	// Round 0 warms up: it opens the connections and fills distkit's
	// latency window, and its figures are dropped.
	for round := range hedgeRounds + 1 {
		for i, im := range impls {
			if round == 0 {
				clients[i] = im.new(b, delay)
			}
			srv, url, stop := startTail(b, uint64(round+1))
			lat := runRequests(b, per, func(ctx context.Context) error { return clients[i].do(ctx, url) })
			stop()
			if round == 0 {
				if im.name == "none" {
					slices.Sort(lat)
					delay = loadtest.Percentile(lat, 0.95)
				}
				continue
			}
			lats[i] = append(lats[i], lat...)
			sent[i] += srv.count.Load()
		}
	}
	peer := slices.IndexFunc(impls, func(im hedgeImpl) bool { return im.name == "hedgedhttp" })
	for i := range impls {
		slices.Sort(lats[i])
	}
	for i, im := range impls {
		clients[i].close()
		total := int64(per * hedgeRounds)
		hedgeSets[im.name] = append(hedgeSets[im.name], hedgeResult{
			lat:    lats[i],
			extra:  float64(sent[i]-total) / float64(total) * 100,
			vsPeer: float64(loadtest.Percentile(lats[i], 0.99)) / float64(loadtest.Percentile(lats[peer], 0.99)),
			note:   clients[i].note(),
		})
	}
}

// BenchmarkHedge sends hedgeRequests requests (8 at a time) per
// implementation to a simulated leaf on loopback whose replies take
// 4–6 ms, or 50–100 ms for 3% of them, drawn from a seeded generator,
// and reports the latency percentiles, the extra requests hedging cost,
// and p99 as a ratio of hedgedhttp's in the same set. The implementations take turns over hedgeRounds rounds after a
// warm-up round (see runHedgeSet). none sends each request once.
// distkit gathers over one target whose replica is the same server and
// hedges once within a 5% budget; hedgedhttp hedges once (Upto 2). Both
// hedge after the same fixed delay, the 95th percentile of impl=none's
// warm-up, so that the mechanisms are compared at one setting.
// distkit-p95 instead learns its delay: the observed 95th percentile of
// its own latencies (10 ms until 20 are in).
func BenchmarkHedge(b *testing.B) {
	for _, im := range hedgeImpls() {
		b.Run("impl="+im.name, func(b *testing.B) {
			// hedgedhttp's worker pool keeps idle goroutines for 10 s.
			defer goleak.VerifyNone(b, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/cristalhq/hedgedhttp.runInPool.func1"))
			var r hedgeResult
			for b.Loop() {
				if len(hedgeSets[im.name]) == 0 {
					runHedgeSet(b)
				}
				r, hedgeSets[im.name] = hedgeSets[im.name][0], hedgeSets[im.name][1:]
				lat := r.lat
				b.Logf("%s: p50 %v p95 %v p97 %v p98 %v p99 %v p99.5 %v p99.9 %v max %v, %.2f%% extra requests%s",
					im.name, loadtest.Percentile(lat, 0.5), loadtest.Percentile(lat, 0.95), loadtest.Percentile(lat, 0.97), loadtest.Percentile(lat, 0.98), loadtest.Percentile(lat, 0.99),
					loadtest.Percentile(lat, 0.995), loadtest.Percentile(lat, 0.999), lat[len(lat)-1], r.extra, r.note)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(ms(loadtest.Percentile(r.lat, 0.5)), "p50-ms")
			b.ReportMetric(ms(loadtest.Percentile(r.lat, 0.99)), "p99-ms")
			b.ReportMetric(r.extra, "extra-requests-%")
			b.ReportMetric(r.vsPeer, "p99-vs-hedgedhttp")
		})
	}
}
