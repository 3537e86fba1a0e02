package bench

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/internal/loadtest"
)

// The election benchmarks. Every cluster is three election.Nodes in this
// process on TCP 127.0.0.1:0 (the default transport), with in-memory
// stores and no logging (the default), so the figures are those of the
// protocol and its timeouts on a loopback network, not of a disk or a LAN.

var (
	electionTrials = flag.Int("election.trials", 10,
		"failover trials per iteration of BenchmarkFailover")
	electionIdle = flag.Duration("election.idle", 30*time.Second,
		"how long BenchmarkFailover/impl=distkit leaves a loaded cluster idle to count spurious leader changes")
	electionIdleRaft = flag.Duration("election.idle-raft-defaults", 10*time.Second,
		"the same for impl=raft-defaults, whose ten failover trials take about 35 s of the minute")
)

// electionImpl is a way of configuring election.Node.
type electionImpl struct {
	name string
	opts []election.Option
	idle func() time.Duration // the spurious-change check's idle time
}

func electionImpls() []electionImpl {
	return []electionImpl{
		{"distkit", nil, func() time.Duration { return *electionIdle }},
		// raft's own timings (1 s heartbeat and election timeouts, 500 ms
		// leader lease, 50 ms commit timeout) on the same Node and transport.
		{"raft-defaults", []election.Option{election.WithRaftConfig(func(c *raft.Config) {
			d := raft.DefaultConfig()
			c.HeartbeatTimeout, c.ElectionTimeout = d.HeartbeatTimeout, d.ElectionTimeout
			c.LeaderLeaseTimeout, c.CommitTimeout = d.LeaderLeaseTimeout, d.CommitTimeout
		})}, func() time.Duration { return *electionIdleRaft }},
	}
}

// electionCluster starts size Nodes, bootstraps them from the first and
// waits until every one knows the same leader.
func electionCluster(ctx context.Context, size int, opts []election.Option) ([]*election.Node, error) {
	var nodes []*election.Node
	var peers []election.Peer
	for i := range size {
		n, err := election.New(fmt.Sprintf("n%d", i+1), opts...)
		if err != nil {
			closeNodes(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
		peers = append(peers, election.Peer{ID: n.ID(), Addr: n.Addr()})
	}
	if err := nodes[0].Bootstrap(ctx, peers); err != nil {
		closeNodes(nodes)
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if _, err := agreedLeader(ctx, nodes); err != nil {
		closeNodes(nodes)
		return nil, err
	}
	return nodes, nil
}

// agreedLeader polls every millisecond until all nodes know the same
// leader, and returns it.
func agreedLeader(ctx context.Context, nodes []*election.Node) (*election.Node, error) {
	for {
		id := ""
		agree := true
		for _, n := range nodes {
			l, ok := n.Leader()
			if !ok || (id != "" && l.ID != id) {
				agree = false
				break
			}
			id = l.ID
		}
		if agree {
			for _, n := range nodes {
				if n.ID() == id {
					return n, nil
				}
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return nil, fmt.Errorf("no agreed leader: %w", err)
		}
	}
}

func closeNodes(nodes []*election.Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { _ = n.Close() })
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failoverTrial starts a fresh cluster, crashes its leader with Close and
// returns the time from just before Close to the moment another node
// reports IsLeader, polled every millisecond. Close runs alongside the
// polling, so its own duration does not count unless the new leader
// is faster than it.
func failoverTrial(opts []election.Option) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := electionCluster(ctx, 3, opts)
	if err != nil {
		return 0, err
	}
	defer closeNodes(nodes)
	leader, err := agreedLeader(ctx, nodes)
	if err != nil {
		return 0, err
	}
	others := slices.DeleteFunc(slices.Clone(nodes), func(n *election.Node) bool { return n == leader })
	closed := make(chan struct{})
	start := time.Now()
	go func() {
		_ = leader.Close()
		close(closed)
	}()
	defer func() { <-closed }()
	for {
		for _, n := range others {
			if n.IsLeader() {
				return time.Since(start), nil
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return 0, fmt.Errorf("no new leader after crashing %s: %w", leader.ID(), err)
		}
	}
}

// spuriousCheck starts a fresh cluster, loads every P with a busy loop
// and leaves the cluster idle for idle. It returns the number of elections
// that succeeded meanwhile (the rise of the highest term any node saw
// since the first leader was agreed; with pre-vote, a term rises only
// when a candidate won the pre-vote) and the number of times a node's
// view of the leader (WatchLeader) moved away from the first leader, to
// none or to another node.
func spuriousCheck(opts []election.Option, idle time.Duration) (elections, lostViews int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), idle+30*time.Second)
	defer cancel()
	nodes, err := electionCluster(ctx, 3, opts)
	if err != nil {
		return 0, 0, err
	}
	defer closeNodes(nodes)
	leader, err := agreedLeader(ctx, nodes)
	if err != nil {
		return 0, 0, err
	}
	maxTerm := func() uint64 {
		var t uint64
		for _, n := range nodes {
			t = max(t, n.Stats().Term)
		}
		return t
	}
	term0 := maxTerm()

	wctx, stopWatch := context.WithCancel(ctx)
	var lost atomic.Int64
	var watchers sync.WaitGroup
	for _, n := range nodes {
		ch := n.WatchLeader(wctx)
		watchers.Go(func() {
			away := false
			for l := range ch {
				if l.ID != leader.ID() && !away {
					lost.Add(1)
				}
				away = l.ID != leader.ID()
			}
		})
	}

	stopLoad := loadtest.Spin(runtime.GOMAXPROCS(0))
	err = sleepCtx(ctx, idle)
	stopLoad()
	elections = int(maxTerm() - term0)
	stopWatch()
	watchers.Wait()
	return elections, int(lost.Load()), err
}

// median is the middle value, or the mean of the two middle values.
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkFailover measures how long a 3-node cluster is without a
// leader after its leader crashes, and whether an idle cluster stays
// stable on a loaded machine. Each iteration runs -election.trials
// failovers, each on a fresh cluster (start, bootstrap from one node, wait
// until all agree on a leader, Close the leader, poll the other two every
// millisecond for IsLeader), then one spurious-change check: a fresh
// cluster left idle for -election.idle (-election.idle-raft-defaults for
// raft-defaults) while GOMAXPROCS goroutines spin. It reports the
// failover times' median, max and min in milliseconds (ns/op is zeroed:
// the time per iteration is mostly start-up and idling) and, per
// iteration, the elections during the idle run (spurious-changes) and the
// times a node lost sight of the first leader (lost-leader-views).
func BenchmarkFailover(b *testing.B) {
	for _, im := range electionImpls() {
		b.Run(fmt.Sprintf("impl=%s/nodes=3", im.name), func(b *testing.B) {
			defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
			begin := time.Now()
			var times []time.Duration
			var elections, lostViews int
			for b.Loop() {
				for range max(*electionTrials, 1) {
					d, err := failoverTrial(im.opts)
					if err != nil {
						b.Fatal(err)
					}
					times = append(times, d)
				}
				e, l, err := spuriousCheck(im.opts, im.idle())
				if err != nil {
					b.Fatal(err)
				}
				elections += e
				lostViews += l
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(ms(median(times)), "ms-p50")
			b.ReportMetric(ms(slices.Max(times)), "ms-max")
			b.ReportMetric(ms(slices.Min(times)), "ms-min")
			b.ReportMetric(float64(elections)/float64(b.N), "spurious-changes")
			b.ReportMetric(float64(lostViews)/float64(b.N), "lost-leader-views")
			var s []string
			for _, d := range times {
				s = append(s, fmt.Sprintf("%.1f", ms(d)))
			}
			b.Logf("failover ms: %s; idle %v; wall %.1fs",
				strings.Join(s, " "), im.idle(), time.Since(begin).Seconds())
		})
	}
}

// BenchmarkAcquire measures one TryAcquire of a free resource with a 1 s
// TTL followed by its Release, on a 3-node cluster started before the
// timer: from the leader, from a follower (which forwards both requests
// to the leader), and from a follower with 16 goroutines at once. Each
// operation commits two raft log entries. ns/op is the latency of the
// pair (for parallel=16, wall time over operations); ops/s is the pairs
// completed per second.
func BenchmarkAcquire(b *testing.B) {
	defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	nodes, err := electionCluster(ctx, 3, nil)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer closeNodes(nodes)

	pick := func(b *testing.B, leader bool) *election.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := agreedLeader(ctx, nodes)
		if err != nil {
			b.Fatal(err)
		}
		if leader {
			return l
		}
		for _, n := range nodes {
			if n != l {
				return n
			}
		}
		panic("unreachable")
	}
	var seq atomic.Uint64
	op := func(n *election.Node) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res := fmt.Sprintf("bench/resource-%d", seq.Add(1))
		l, err := n.TryAcquire(ctx, res, time.Second)
		if err != nil {
			return err
		}
		return l.Release(ctx)
	}

	for _, from := range []string{"leader", "follower"} {
		b.Run("impl=distkit/nodes=3/from="+from, func(b *testing.B) {
			n := pick(b, from == "leader")
			for b.Loop() {
				if err := op(n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
	b.Run("impl=distkit/nodes=3/from=follower/parallel=16", func(b *testing.B) {
		const workers = 16
		n := pick(b, false)
		var next atomic.Int64
		var first error
		var once sync.Once
		var wg sync.WaitGroup
		b.ResetTimer()
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := op(n); err != nil {
						once.Do(func() { first = err })
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if first != nil {
			b.Fatal(first)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}
