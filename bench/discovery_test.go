package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"github.com/distkit/distkit/discovery"
	"github.com/distkit/distkit/internal/loadtest"
)

// The discovery benchmarks. Every cluster is 20 members in this process,
// each on its own UDP and TCP port on 127.0.0.1 (port 0, chosen by the
// kernel), so the figures are those of the protocols and their timers on a
// loopback network. distkit is discovery.New with its defaults
// (PresetFast); memberlist-lan is hashicorp/memberlist with
// DefaultLANConfig, the configuration most users start from.
//
// What a member observed is taken from its own event stream (distkit:
// Watch; memberlist: its EventDelegate), with the time the event was
// raised (distkit: Event.Time; memberlist: time.Now() in the callback),
// so how often the benchmark looks does not enter the figures.

var (
	discoveryTrials = flag.Int("discovery.trials", 5,
		"trials per iteration of BenchmarkDetect and BenchmarkConverge")
	discoveryLoad = flag.Duration("discovery.load", 15*time.Second,
		"how long BenchmarkFalsePositives loads the CPU of an idle cluster")
)

const (
	gossipNodes = 20
	// gossipTrialTimeout bounds one trial's measured wait.
	gossipTrialTimeout = 30 * time.Second
	// gossipSetupTimeout bounds a cluster's start-up. Start-up is not
	// what is measured: a member still short of the full view after
	// gossipRepairEvery joins the seed again, which swaps full state,
	// rather than waiting for memberlist-lan's 30 s push/pull to repair a
	// missed join broadcast (once, even that had not in 45 s).
	gossipSetupTimeout = 45 * time.Second
	gossipRepairEvery  = 3 * time.Second
	// gossipSettle is how long a converged cluster is left alone before
	// a crash or before the load starts.
	gossipSettle = 500 * time.Millisecond
	// gossipLeaveTimeout bounds a leave in BenchmarkConverge.
	gossipLeaveTimeout = 45 * time.Second
	// gossipLateReports is how long false alarms are still counted after
	// the load stops.
	gossipLateReports = 2 * time.Second
)

// gossipImpl is a way of running a cluster member.
type gossipImpl struct {
	name  string
	start func(name string, rec *gossipRecorder) (gossipMember, error)
}

func gossipImpls() []gossipImpl {
	return []gossipImpl{
		{"distkit", startDistkitMember},
		{"memberlist-lan", startMemberlistMember},
	}
}

// gossipMember is one running member, whichever implementation.
type gossipMember interface {
	name() string
	addr() string // host:port of its gossip
	join(ctx context.Context, seed string) error
	// crash stops the member without telling the others.
	crash()
	// leave tells the others the member is going, then stops it.
	leave(ctx context.Context) error
	// stats returns the member's counters.
	stats() gossipStats
	rec() *gossipRecorder
}

// gossipStats are a member's counters. Only distkit keeps vetoed and
// suspicions; memberlist's fails are the NotifyLeave calls.
type gossipStats struct {
	fails      uint64 // members reported failed
	vetoed     uint64 // dead declarations overruled (distkit's Stats().Vetoed)
	suspicions uint64 // suspicions its own probes raised (distkit's Stats().SuspicionsRaised)
}

func (s gossipStats) minus(o gossipStats) gossipStats {
	return gossipStats{s.fails - o.fails, s.vetoed - o.vetoed, s.suspicions - o.suspicions}
}

// What a member reports about another.
const (
	gossipJoin  = iota
	gossipAlive // an update: the member is there, but this is not a join
	gossipFail
	gossipLeave
)

// gossipRecorder keeps what one member observed: who it sees, when it
// first saw each member join, when it last saw each go and how.
type gossipRecorder struct {
	wake chan struct{} // shared by a cluster's recorders; capacity 1

	mu       sync.Mutex
	alive    map[string]bool
	joinedAt map[string]time.Time
	goneAt   map[string]time.Time
	goneKind map[string]int
	gone     int // failures and leaves reported
}

func newGossipRecorder(wake chan struct{}) *gossipRecorder {
	return &gossipRecorder{
		wake:     wake,
		alive:    make(map[string]bool),
		joinedAt: make(map[string]time.Time),
		goneAt:   make(map[string]time.Time),
		goneKind: make(map[string]int),
	}
}

// record never blocks: memberlist calls its delegate with its lock held.
func (r *gossipRecorder) record(kind int, name string, t time.Time) {
	r.mu.Lock()
	switch kind {
	case gossipJoin:
		if _, ok := r.joinedAt[name]; !ok {
			r.joinedAt[name] = t
		}
		r.alive[name] = true
	case gossipAlive:
		r.alive[name] = true
	case gossipFail, gossipLeave:
		delete(r.alive, name)
		r.goneAt[name], r.goneKind[name] = t, kind
		r.gone++
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *gossipRecorder) sees() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.alive)
}

func (r *gossipRecorder) joined(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.joinedAt[name]
	return t, ok
}

// left returns when the member was last reported gone, if it was, and
// whether as a failure.
func (r *gossipRecorder) left(name string) (t time.Time, failed, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok = r.goneAt[name]
	return t, r.goneKind[name] == gossipFail, ok
}

func (r *gossipRecorder) goneCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// distkitMember is a discovery.Node whose Watch feeds a recorder.
type distkitMember struct {
	n       *discovery.Node
	r       *gossipRecorder
	cancel  context.CancelFunc
	watched chan struct{} // closed when the Watch channel is drained
}

func startDistkitMember(name string, rec *gossipRecorder) (gossipMember, error) {
	n, err := discovery.New(name, discovery.WithBind("127.0.0.1:0"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &distkitMember{n: n, r: rec, cancel: cancel, watched: make(chan struct{})}
	ch := n.Watch(ctx)
	go func() {
		defer close(m.watched)
		for e := range ch {
			switch e.Kind {
			case discovery.EventJoin:
				rec.record(gossipJoin, e.Member.Name, e.Time)
			case discovery.EventUpdate, discovery.EventRefuted:
				rec.record(gossipAlive, e.Member.Name, e.Time)
			case discovery.EventFail:
				rec.record(gossipFail, e.Member.Name, e.Time)
			case discovery.EventLeave:
				rec.record(gossipLeave, e.Member.Name, e.Time)
			}
		}
	}()
	return m, nil
}

func (m *distkitMember) name() string         { return m.n.Name() }
func (m *distkitMember) addr() string         { return m.n.Addr().String() }
func (m *distkitMember) rec() *gossipRecorder { return m.r }

func (m *distkitMember) join(ctx context.Context, seed string) error {
	_, err := m.n.Join(ctx, seed)
	return err
}

func (m *distkitMember) crash() {
	_ = m.n.Close()
	m.cancel()
	<-m.watched
}

func (m *distkitMember) leave(ctx context.Context) error {
	err := m.n.Leave(ctx)
	m.crash()
	return err
}

func (m *distkitMember) stats() gossipStats {
	s := m.n.Stats()
	return gossipStats{fails: s.Fails, vetoed: s.Vetoed, suspicions: s.SuspicionsRaised}
}

// memberlistMember is a memberlist.Memberlist whose EventDelegate feeds a
// recorder.
type memberlistMember struct {
	ml   *memberlist.Memberlist
	r    *gossipRecorder
	stop sync.Once
}

type memberlistEvents struct{ r *gossipRecorder }

func (e memberlistEvents) NotifyJoin(n *memberlist.Node) {
	e.r.record(gossipJoin, n.Name, time.Now())
}

func (e memberlistEvents) NotifyUpdate(n *memberlist.Node) {
	e.r.record(gossipAlive, n.Name, time.Now())
}

func (e memberlistEvents) NotifyLeave(n *memberlist.Node) {
	// memberlist tells a failure from a leave only in its own state, which
	// it does not pass here; nobody leaves where the difference matters.
	e.r.record(gossipFail, n.Name, time.Now())
}

func startMemberlistMember(name string, rec *gossipRecorder) (gossipMember, error) {
	c := memberlist.DefaultLANConfig()
	c.Name = name
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.Logger = log.New(io.Discard, "", 0)
	c.Events = memberlistEvents{rec}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, err
	}
	return &memberlistMember{ml: ml, r: rec}, nil
}

func (m *memberlistMember) name() string         { return m.ml.LocalNode().Name }
func (m *memberlistMember) addr() string         { return m.ml.LocalNode().Address() }
func (m *memberlistMember) rec() *gossipRecorder { return m.r }

func (m *memberlistMember) join(ctx context.Context, seed string) error {
	_, err := m.ml.Join([]string{seed}) // no context; bounded by TCPTimeout
	return err
}

func (m *memberlistMember) crash() { m.stop.Do(func() { _ = m.ml.Shutdown() }) }

func (m *memberlistMember) leave(ctx context.Context) error {
	wait := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	err := m.ml.Leave(wait)
	m.crash()
	return err
}

func (m *memberlistMember) stats() gossipStats {
	return gossipStats{fails: uint64(m.r.goneCount())}
}

// awaitMemberlistExit waits up to 10 s for goroutines running memberlist
// code to end, so that goleak does not report them: memberlist's Shutdown
// does not wait for a probe in flight, which ends when its timer fires (a
// probe interval later; for memberlist-lan up to 8 × 1 s when its
// awareness score is high). goleak reports any still running after that.
func awaitMemberlistExit() {
	loadtest.AwaitExit("github.com/hashicorp/memberlist.", 10*time.Second)
}

// gossipCluster is a set of members of one implementation.
type gossipCluster struct {
	im      gossipImpl
	wake    chan struct{}
	members []gossipMember
}

// startGossipCluster starts size members named prefix00, prefix01, …,
// joins each to the first and waits, up to gossipSetupTimeout, until every
// one sees all of them, joining the laggards to the first again every
// gossipRepairEvery. Running out of time is an error, not a stall.
func startGossipCluster(im gossipImpl, size int, prefix string) (*gossipCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gossipSetupTimeout)
	defer cancel()
	c := &gossipCluster{im: im, wake: make(chan struct{}, 1)}
	for i := range size {
		if _, err := c.add(fmt.Sprintf("%s%02d", prefix, i)); err != nil {
			c.closeAll()
			return nil, err
		}
	}
	seed := c.members[0].addr()
	for _, m := range c.members[1:] {
		if err := m.join(ctx, seed); err != nil {
			c.closeAll()
			return nil, fmt.Errorf("%s: join %s: %v", im.name, m.name(), err) // not a stall
		}
	}
	converged := func() bool {
		for _, m := range c.members {
			if m.rec().sees() != size {
				return false
			}
		}
		return true
	}
	var err error
	for {
		rctx, rcancel := context.WithTimeout(ctx, gossipRepairEvery)
		err = c.waitFor(rctx, converged)
		rcancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		for i, m := range c.members {
			if m.rec().sees() != size {
				to := seed // a push/pull with the seed: full state both ways
				if i == 0 {
					to = c.members[1].addr()
				}
				m.join(ctx, to)
			}
		}
	}
	if err != nil {
		var sees []string
		for _, m := range c.members {
			sees = append(sees, fmt.Sprint(m.rec().sees()))
		}
		c.closeAll()
		return nil, fmt.Errorf("%s: %d members not converged in %v (each sees %s)",
			im.name, size, gossipSetupTimeout, strings.Join(sees, " "))
	}
	return c, nil
}

// add starts a member and keeps it in the cluster; it does not join it.
func (c *gossipCluster) add(name string) (gossipMember, error) {
	m, err := c.im.start(name, newGossipRecorder(c.wake))
	if err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", c.im.name, name, err)
	}
	c.members = append(c.members, m)
	return m, nil
}

func (c *gossipCluster) remove(m gossipMember) {
	c.members = slices.DeleteFunc(c.members, func(x gossipMember) bool { return x == m })
}

// closeAll stops every member (as a crash: there is no one left to tell).
func (c *gossipCluster) closeAll() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Go(m.crash)
	}
	wg.Wait()
	c.members = nil
}

// waitFor returns once cond holds, re-checking whenever a member records
// an event (and every 50 ms), or ctx's error.
func (c *gossipCluster) waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-c.wake:
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitAll waits until seen reports a time for every member of ms and
// returns the latest; if ctx ends first, it returns the names of those
// that had not, with ctx's error.
func (c *gossipCluster) waitAll(ctx context.Context, ms []gossipMember, seen func(gossipMember) (time.Time, bool)) (time.Time, []string, error) {
	var last time.Time
	err := c.waitFor(ctx, func() bool {
		last = time.Time{}
		for _, m := range ms {
			t, ok := seen(m)
			if !ok {
				return false
			}
			if t.After(last) {
				last = t
			}
		}
		return true
	})
	if err == nil {
		return last, nil, nil
	}
	var missing []string
	for _, m := range ms {
		if _, ok := seen(m); !ok {
			missing = append(missing, m.name())
		}
	}
	return last, missing, err
}

// detectTrial starts a fresh cluster, crashes one member and returns the
// time from just before the crash until the last of the others reported
// it failed.
func detectTrial(im gossipImpl, trial int) (time.Duration, error) {
	c, err := startGossipCluster(im, gossipNodes, "n")
	if err != nil {
		return 0, err
	}
	defer c.closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), gossipTrialTimeout)
	defer cancel()
	if err := sleepCtx(ctx, gossipSettle); err != nil {
		return 0, err
	}
	victim := c.members[1+trial%(gossipNodes-1)] // never the seed
	c.remove(victim)
	crashed := make(chan struct{})
	start := time.Now()
	go func() {
		victim.crash()
		close(crashed)
	}()
	defer func() { <-crashed }()

	last, missing, err := c.waitAll(ctx, c.members, func(m gossipMember) (time.Time, bool) {
		t, failed, ok := m.rec().left(victim.name())
		return t, ok && failed
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %d of %d survivors had not reported %s failed after %v: %w",
			im.name, len(missing), len(c.members), victim.name(), time.Since(start).Round(time.Millisecond), err)
	}
	return last.Sub(start), nil
}

// trials gathers a gossip benchmark's figures. A trial whose wait ran out
// of time is a finding about the implementation, not a broken benchmark:
// memberlist can miss a broadcast and repair it only at its next
// push/pull, up to 30 s later. Such a trial is counted as stalled and
// logged; from the maxStalled-th on, a stall also ends its iteration's
// trials, so that the run stays bounded.
type trials struct {
	begin   time.Time
	times   []time.Duration
	stalled int
}

const maxStalled = 2

// add records one trial's outcome and reports whether to run more; any
// error but a stall is returned for the caller to fail on.
func (t *trials) add(b *testing.B, trial int, d time.Duration, err error) (more bool, _ error) {
	switch {
	case err == nil:
		t.times = append(t.times, d)
		return true, nil
	case errors.Is(err, context.DeadlineExceeded):
		t.stalled++
		b.Logf("trial %d stalled: %v", trial, err)
		return t.stalled < maxStalled, nil
	default:
		return false, fmt.Errorf("trial %d: %w", trial, err)
	}
}

// report reports the trials' p50, max and min (if any finished) and how
// many stalled; ns/op is zeroed.
func (t *trials) report(b *testing.B, what string) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(t.stalled), "stalled")
	var s []string
	for _, d := range t.times {
		s = append(s, fmt.Sprintf("%.1f", ms(d)))
	}
	b.Logf("%s ms: %s; %d stalled; wall %.1fs", what, strings.Join(s, " "), t.stalled, time.Since(t.begin).Seconds())
	if len(t.times) == 0 {
		return
	}
	b.ReportMetric(ms(median(t.times)), "ms-p50")
	b.ReportMetric(ms(slices.Max(t.times)), "ms-max")
	b.ReportMetric(ms(slices.Min(t.times)), "ms-min")
}

// BenchmarkDetect measures how long a crash takes to be reported by every
// other member of a 20-member cluster. Each iteration runs
// -discovery.trials trials, each on a fresh cluster: start 20 members,
// join each to the first, wait until all see 20 and 500 ms more, crash one
// (distkit: Close; memberlist: Shutdown; neither tells the others) and
// wait until each of the 19 others has reported it failed (distkit:
// EventFail from Watch; memberlist: NotifyLeave). A trial's figure is
// the time from just before the crash to the last of those reports.
// ms-p50, ms-max and ms-min are over the trials that finished; stalled
// counts those that ran out of time (see trials); ns/op is zeroed.
func BenchmarkDetect(b *testing.B) {
	for _, im := range gossipImpls() {
		b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, gossipNodes), func(b *testing.B) {
			defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
			defer awaitMemberlistExit()
			tr := trials{begin: time.Now()}
			for b.Loop() {
				for trial := range max(*discoveryTrials, 1) {
					d, err := detectTrial(im, trial)
					more, err := tr.add(b, trial, d, err)
					if err != nil {
						b.Fatal(err)
					}
					if !more {
						break
					}
				}
			}
			tr.report(b, "detect")
		})
	}
}

// leaveSeen is how a leave in BenchmarkConverge went.
type leaveSeen struct {
	took      time.Duration // from Leave until all had seen the member go
	asFailure int           // members that reported it failed, not left (distkit)
}

// convergeTrial adds a new member to c, joins it to seed and returns the
// time from the Join call until the last of c's members saw it join. It
// then has the member leave and waits until all have seen it go.
func convergeTrial(c *gossipCluster, name, seed string) (join time.Duration, lv leaveSeen, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), gossipTrialTimeout)
	defer cancel()
	old := slices.Clone(c.members)
	m, err := c.add(name)
	if err != nil {
		return 0, lv, err
	}
	defer func() {
		m.crash()
		c.remove(m)
	}()

	start := time.Now()
	if err := m.join(ctx, seed); err != nil {
		return 0, lv, fmt.Errorf("%s: join %s: %w", c.im.name, name, err)
	}
	last, missing, err := c.waitAll(ctx, old, func(o gossipMember) (time.Time, bool) { return o.rec().joined(name) })
	if err != nil {
		return 0, lv, fmt.Errorf("%s: %d of %d members had not seen %s join after %v: %w",
			c.im.name, len(missing), len(old), name, time.Since(start).Round(time.Millisecond), err)
	}
	d := last.Sub(start)

	// Leaving is not measured. It has its own bound, longer than a
	// memberlist-lan suspicion of a member no one else probes (6 ×
	// 4 × log10(20) × 1 s ≈ 31 s): a member that missed the leave
	// message finds out that way.
	ctx, cancel = context.WithTimeout(context.Background(), gossipLeaveTimeout)
	defer cancel()
	leaving := time.Now()
	if err := m.leave(ctx); err != nil {
		return 0, lv, fmt.Errorf("%s: leave %s: %w", c.im.name, name, err)
	}
	left := time.Now()
	_, missing, err = c.waitAll(ctx, old, func(o gossipMember) (time.Time, bool) {
		t, _, ok := o.rec().left(name)
		return t, ok
	})
	if err != nil {
		return 0, lv, fmt.Errorf("%s: %s left in %v, but %v later %s had not seen it go: %w",
			c.im.name, name, left.Sub(leaving).Round(time.Millisecond),
			time.Since(left).Round(time.Millisecond), strings.Join(missing, " "), err)
	}
	lv.took = time.Since(leaving)
	if c.im.name == "distkit" { // memberlist does not tell leaves from failures
		for _, o := range old {
			if _, failed, _ := o.rec().left(name); failed {
				lv.asFailure++
			}
		}
	}
	return d, lv, nil
}

// BenchmarkConverge measures how long a new member takes to be seen by
// every member of a cluster. Each iteration starts 19 members, joins each
// to the first and waits until all see 19, then runs -discovery.trials
// trials on that cluster: start a new, uniquely named member, call Join
// with one seed (a different existing member each trial), and wait until
// each of the 19 has seen it join (distkit: EventJoin from Watch;
// memberlist: NotifyJoin). A trial's figure is the time from the Join
// call to the last of those. The member then leaves (Leave, then Close or
// Shutdown), and the next trial starts when all 19 have seen it go.
func BenchmarkConverge(b *testing.B) {
	for _, im := range gossipImpls() {
		b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, gossipNodes), func(b *testing.B) {
			defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
			defer awaitMemberlistExit()
			tr := trials{begin: time.Now()}
			for b.Loop() {
				c, err := startGossipCluster(im, gossipNodes-1, "n")
				if err != nil {
					b.Fatal(err)
				}
				for trial := range max(*discoveryTrials, 1) {
					seed := c.members[trial%len(c.members)].addr()
					name := fmt.Sprintf("joiner%02d", trial)
					d, lv, err := convergeTrial(c, name, seed)
					if err == nil && (lv.took > 5*time.Second || lv.asFailure > 0) {
						b.Logf("trial %d: %s's leave took %v to reach all members; %d reported it failed",
							trial, name, lv.took.Round(time.Millisecond), lv.asFailure)
					}
					more, err := tr.add(b, trial, d, err)
					if err != nil {
						c.closeAll()
						b.Fatal(err)
					}
					if !more {
						break
					}
				}
				c.closeAll()
			}
			tr.report(b, "converge")
		})
	}
}

// fpResult is what one false-positive run found.
type fpResult struct {
	alarms int // failures reported, over all members
	gossipStats
	whole    int           // members that saw all the others at the end
	lateMax  time.Duration // the longest a 1 ms sleep overshot under load
	lateP99  time.Duration
	lateRuns int
}

// falsePositives starts a fresh cluster, waits until it has converged and
// 500 ms more, loads the process for load and counts the members reported
// failed, or gone in any way, from the start of the load until 2 s after
// it, over all members: every one is a false alarm, since nobody leaves
// or crashes. Meanwhile a goroutine sleeps 1 ms at a time and records how
// late it wakes, to show how hard the load was.
func falsePositives(im gossipImpl, load time.Duration) (fpResult, error) {
	var r fpResult
	c, err := startGossipCluster(im, gossipNodes, "n")
	if err != nil {
		return r, err
	}
	defer c.closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), gossipTrialTimeout+load)
	defer cancel()
	if err := sleepCtx(ctx, gossipSettle); err != nil {
		return r, err
	}
	count := func() (gone int, st gossipStats) {
		for _, m := range c.members {
			s := m.stats()
			gone += m.rec().goneCount()
			st.fails += s.fails
			st.vetoed += s.vetoed
			st.suspicions += s.suspicions
		}
		return gone, st
	}
	gone0, st0 := count()

	stopLate := loadtest.Lateness()
	stopSpin, stopGC := loadtest.Spin(4*runtime.GOMAXPROCS(0)), loadtest.Allocate(4)
	err = sleepCtx(ctx, load)
	stopGC()
	stopSpin()
	late := stopLate()
	if err != nil {
		return r, err
	}
	if err := sleepCtx(ctx, gossipLateReports); err != nil {
		return r, err
	}

	gone1, st1 := count()
	r.gossipStats = st1.minus(st0)
	// The Watch stream may fold a failure into a later join when its reader
	// is behind; the node's own counter cannot miss one. Take the larger.
	r.alarms = max(gone1-gone0, int(r.fails))
	for _, m := range c.members {
		if m.rec().sees() == gossipNodes {
			r.whole++
		}
	}
	r.lateRuns = len(late)
	r.lateMax, r.lateP99 = loadtest.Percentile(late, 1), loadtest.Percentile(late, 0.99)
	return r, nil
}

// BenchmarkFalsePositives counts false failure reports in an idle
// 20-member cluster on a loaded machine. Each iteration starts 20
// members, waits until all see 20 and 500 ms more, then for
// -discovery.load runs 4×GOMAXPROCS goroutines spinning and 4 goroutines
// allocating 1 MiB slices as fast as they can (so the garbage collector
// runs constantly), all in this process. false-positives counts, over all
// 20 members, the failures reported from the start of the load until 2 s
// after its end (distkit: EventFail; memberlist: NotifyLeave); nobody
// crashes or leaves, so each is a false alarm. For distkit, vetoed is the
// sum of Stats().Vetoed over the same time: how often memberlist underneath
// declared a healthy member dead and distkit's check overruled it; and
// suspicions the sum of Stats().SuspicionsRaised: suspicions the members'
// own probes raised. whole-views is how many members saw all 20 at the
// end. The log says how late a 1 ms sleep woke under the load.
func BenchmarkFalsePositives(b *testing.B) {
	for _, im := range gossipImpls() {
		b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, gossipNodes), func(b *testing.B) {
			defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
			defer awaitMemberlistExit()
			begin := time.Now()
			var alarms, vetoed, suspicions, whole int
			for b.Loop() {
				r, err := falsePositives(im, *discoveryLoad)
				if err != nil {
					b.Fatal(err)
				}
				alarms += r.alarms
				vetoed += int(r.vetoed)
				suspicions += int(r.suspicions)
				whole += r.whole
				b.Logf("under load a 1 ms sleep overshot by %v at p99, %v at most (%d sleeps)",
					r.lateP99.Round(time.Microsecond), r.lateMax.Round(time.Microsecond), r.lateRuns)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(alarms)/float64(b.N), "false-positives")
			if im.name == "distkit" {
				b.ReportMetric(float64(vetoed)/float64(b.N), "vetoed")
				b.ReportMetric(float64(suspicions)/float64(b.N), "suspicions")
			}
			b.ReportMetric(float64(whole)/float64(b.N), "whole-views")
			b.Logf("false positives %d, vetoed %d, suspicions raised %d in %v of load; wall %.1fs",
				alarms, vetoed, suspicions, *discoveryLoad, time.Since(begin).Seconds())
		})
	}
}
