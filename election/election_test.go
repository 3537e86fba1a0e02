package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestClusters(t *testing.T) {
	for _, tc := range []struct {
		size int
		tcp  bool
	}{{3, false}, {5, false}, {3, true}, {5, true}} {
		t.Run(fmt.Sprintf("nodes=%d/tcp=%v", tc.size, tc.tcp), func(t *testing.T) {
			c := newCluster(t, tc.size, tc.tcp)
			ctx := ctxT(t, 20*time.Second)
			leader := c.waitAgree()
			f := c.follower()

			// Forwarding: a follower's write reaches the leader.
			l1, err := f.TryAcquire(ctx, "r", time.Second)
			if err != nil {
				t.Fatalf("acquire on follower: %v", err)
			}
			if f.Stats().Forwarded == 0 {
				t.Error("follower did not forward")
			}
			if _, err := leader.TryAcquire(ctx, "r", time.Second); !errors.Is(err, ErrHeld) {
				t.Fatalf("second acquire: got %v, want ErrHeld", err)
			}
			o, err := f.Owner(ctx, "r")
			if err != nil || o.Holder != f.ID() || o.Token != l1.Token() {
				t.Fatalf("owner = %+v, %v; want %s token %d", o, err, f.ID(), l1.Token())
			}

			// Leader crash: a new leader, and the lease renews through it.
			old := leader.ID()
			c.crash(old)
			nl := c.waitAgree()
			if nl.ID() == old {
				t.Fatal("crashed node still leads")
			}
			if f.ID() == old {
				t.Fatal("follower was the leader")
			}
			if err := l1.Renew(ctx); err != nil {
				t.Fatalf("renew after leader change: %v", err)
			}
			if nl.Stats().LastFailover <= 0 {
				t.Errorf("LastFailover not recorded: %+v", nl.Stats())
			}
			if err := l1.Release(ctx); err != nil {
				t.Fatalf("release: %v", err)
			}
			l2, err := nl.TryAcquire(ctx, "r", time.Second)
			if err != nil {
				t.Fatalf("acquire after release: %v", err)
			}
			if l2.Token() <= l1.Token() {
				t.Fatalf("token did not grow: %d then %d", l1.Token(), l2.Token())
			}
		})
	}
}

func TestLeaseExpiry(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := ctxT(t, 10*time.Second)
	a, b := c.live()[0], c.live()[1]
	ttl := 200 * time.Millisecond
	la, err := a.TryAcquire(ctx, "job", ttl)
	if err != nil {
		t.Fatal(err)
	}
	events := b.WatchOwners(ctx)
	start := time.Now()
	lb, err := b.Acquire(ctx, "job", ttl) // blocks until la expires
	if err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	if la.Valid() {
		t.Fatal("old lease still valid when the new holder got it")
	}
	select {
	case <-la.Lost():
	case <-time.After(100 * time.Millisecond):
		t.Fatal("old holder's Lost not closed")
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("token did not grow: %d then %d", la.Token(), lb.Token())
	}
	if waited > 2*time.Second {
		t.Fatalf("acquire waited %v for a %v lease", waited, ttl)
	}
	if err := la.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew of expired lease: %v", err)
	}
	// The watch may start before b has applied la's grant; after it, la
	// must expire before lb is granted.
	var seen []Event
	for {
		e := <-events
		seen = append(seen, e)
		if e.Kind == Acquired && e.Token == lb.Token() {
			break
		}
	}
	if len(seen) < 2 || seen[len(seen)-2].Kind != Expired || seen[len(seen)-2].Token != la.Token() {
		t.Fatalf("events = %+v, want la's expiry then lb's grant", seen)
	}
	st := b.Stats()
	if st.LeasesExpired == 0 || st.LeasesGranted < 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestRenewKeepsLease(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := ctxT(t, 10*time.Second)
	f := c.follower()
	l, err := f.TryAcquire(ctx, "x", 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		time.Sleep(60 * time.Millisecond)
		if err := l.Renew(ctx); err != nil {
			t.Fatalf("renew: %v", err)
		}
	}
	if !l.Valid() {
		t.Fatal("renewed lease not valid")
	}
	o, err := c.waitAgree().Owner(ctx, "x")
	if err != nil || o.Token != l.Token() {
		t.Fatalf("owner %+v %v", o, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := f.Owner(ctx, "x"); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("owner after release: %v", err)
	}
}

func TestJoinAndRemove(t *testing.T) {
	c := newCluster(t, 1, false)
	ctx := ctxT(t, 10*time.Second)
	first := c.live()[0]
	b := c.start("n2")
	if err := b.Join(ctx, first.Addr()); err != nil {
		t.Fatalf("join via leader: %v", err)
	}
	c.ids = append(c.ids, "n2", "n3")
	cn := c.start("n3")
	// Join through a follower: it forwards to the leader.
	if err := cn.Join(ctx, b.Addr()); err != nil {
		t.Fatalf("join via follower: %v", err)
	}
	c.waitAgree()
	if _, err := cn.TryAcquire(ctx, "k", time.Second); err != nil {
		t.Fatalf("acquire on joined node: %v", err)
	}
	// The leader leaves: it hands leadership over first.
	l := c.waitAgree()
	if err := l.Remove(ctx, l.ID()); err != nil {
		t.Fatalf("leader removes itself: %v", err)
	}
	c.crash(l.ID())
	nl := c.waitAgree()
	f := nl.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if got := len(f.Configuration().Servers); got != 2 {
		t.Fatalf("configuration has %d servers after remove, want 2", got)
	}
}

func TestTransferAndRun(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx, cancel := context.WithCancel(ctxT(t, 20*time.Second))
	type span struct {
		id         string
		term       uint64
		start, end time.Time
	}
	var mu sync.Mutex
	var spans []span
	var wg sync.WaitGroup
	for _, n := range c.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.Run(ctx, func(lctx context.Context) {
				term, _ := Term(lctx)
				s := span{id: n.ID(), term: term, start: time.Now()}
				<-lctx.Done()
				s.end = time.Now()
				mu.Lock()
				spans = append(spans, s)
				mu.Unlock()
			})
		}()
	}
	for i := range 4 {
		l := c.waitAgree()
		var to string
		for _, n := range c.live() {
			if n != l && i%2 == 0 {
				to = n.ID()
			}
		}
		// Ask through a follower sometimes: it forwards.
		asker := l
		if i%2 == 1 {
			asker = c.follower()
		}
		if err := asker.TransferLeadership(ctx, to); err != nil {
			t.Fatalf("transfer %d to %q: %v", i, to, err)
		}
		nl := c.waitAgree()
		if nl == l || (to != "" && nl.ID() != to) {
			t.Fatalf("transfer %d: leader %s, want %q (not %s)", i, nl.ID(), to, l.ID())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if len(spans) < 4 {
		t.Fatalf("only %d leadership spans for 4 transfers", len(spans))
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.id != b.id && a.start.Before(b.end) && b.start.Before(a.end) {
				t.Fatalf("leader contexts overlap: %+v and %+v", a, b)
			}
		}
	}
}

func TestRunEndsOnPartition(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := ctxT(t, 10*time.Second)
	l := c.waitAgree()
	ended := make(chan time.Time, 1)
	started := make(chan struct{})
	go func() {
		_ = l.Run(ctx, func(lctx context.Context) {
			close(started)
			<-lctx.Done()
			ended <- time.Now()
		})
	}()
	<-started
	c.net.Isolate(l.ID())
	var nl *Node
	for nl == nil {
		for _, n := range c.live() {
			if n != l && n.IsLeader() {
				nl = n
			}
		}
		time.Sleep(time.Millisecond)
	}
	elected := time.Now()
	var end time.Time
	select {
	case end = <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("leader context not cancelled after isolation")
	}
	if !end.Before(elected) {
		t.Fatalf("old leader's context ended %v after the new leader was elected", end.Sub(elected))
	}
	c.net.HealAll()
	c.crash(l.ID()) // stops Run
}

func TestWatchLeader(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx, cancel := context.WithCancel(context.Background())
	f := c.follower()
	w := f.WatchLeader(ctx)
	first := <-w
	if first.ID == "" {
		t.Fatal("watch did not start with the current leader")
	}
	c.crash(first.ID)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-w:
			if l.ID != "" && l.ID != first.ID {
				if l.Term <= first.Term {
					t.Fatalf("term did not grow: %d then %d", first.Term, l.Term)
				}
				cancel()
				for range w { // closed after cancel
				}
				return
			}
		case <-deadline:
			t.Fatal("watch never saw the new leader")
		}
	}
}

func TestFence(t *testing.T) {
	var f Fence
	if err := f.Check("r", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero token: %v", err)
	}
	for _, tok := range []uint64{3, 3, 5} {
		if err := f.Check("r", tok); err != nil {
			t.Fatalf("token %d: %v", tok, err)
		}
	}
	if err := f.Check("r", 4); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("stale token: %v", err)
	}
	if err := f.Check("other", 1); err != nil {
		t.Fatalf("other resource: %v", err)
	}
	wrote := false
	if err := f.Do("r", 2, func() error { wrote = true; return nil }); !errors.Is(err, ErrStaleToken) || wrote {
		t.Fatalf("Do with stale token: %v wrote=%v", err, wrote)
	}
	if f.Last("r") != 5 {
		t.Fatalf("Last = %d", f.Last("r"))
	}
}

func TestInvalidInput(t *testing.T) {
	if _, err := New(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty ID: %v", err)
	}
	bad := []Option{
		nil, WithLogger(nil), WithTCP("nope"), WithAdvertise(""), WithTLS(nil, nil),
		WithNetwork(nil, nil), WithDir(""), WithHeartbeatTimeout(time.Millisecond), WithRaftConfig(nil),
		WithRaftConfig(func(c *raft.Config) { c.LeaderLeaseTimeout = time.Hour }),
	}
	for i, o := range bad {
		if _, err := New("a", o); !errors.Is(err, ErrInvalid) {
			t.Errorf("option %d: got %v, want ErrInvalid", i, err)
		}
	}
	c := newCluster(t, 1, false)
	n := c.live()[0]
	ctx := ctxT(t, 5*time.Second)
	for _, tc := range []struct {
		res string
		ttl time.Duration
	}{{"", time.Second}, {"r", 0}, {"r", time.Millisecond}, {"r", 48 * time.Hour}, {string(make([]byte, 600)), time.Second}, {"\xff", time.Second}} {
		if _, err := n.TryAcquire(ctx, tc.res, tc.ttl); !errors.Is(err, ErrInvalid) {
			t.Errorf("TryAcquire(%.10q, %v): %v", tc.res, tc.ttl, err)
		}
	}
	if err := n.Bootstrap(ctx, []Peer{{ID: "zz", Addr: "zz"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bootstrap without self: %v", err)
	}
	if err := n.Bootstrap(ctx, []Peer{{ID: n.ID(), Addr: n.Addr()}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Errorf("second bootstrap: %v", err)
	}
	if err := n.Run(ctx, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Run(nil): %v", err)
	}
	_ = n.Close()
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := n.TryAcquire(ctx, "r", time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("acquire after close: %v", err)
	}
}

// TestSnapshotCatchUp makes a new member catch up from a snapshot rather
// than the log: the leases and the token counter arrive with it.
func TestSnapshotCatchUp(t *testing.T) {
	c := newCluster(t, 1, false, WithRaftConfig(func(cfg *raft.Config) { cfg.TrailingLogs = 1 }))
	ctx := ctxT(t, 10*time.Second)
	first := c.live()[0]
	var last *Lease
	for i := range 5 {
		l, err := first.TryAcquire(ctx, fmt.Sprintf("r%d", i), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		last = l
	}
	if err := first.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	c.ids = append(c.ids, "n2")
	b := c.start("n2")
	if err := b.Join(ctx, first.Addr()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Leases != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("joined node has %d leases, want 5", b.Stats().Leases)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if idx := b.raft.Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatal("joined node caught up without a snapshot; the test proves nothing")
	}
	// Leadership moves to the new member, which must continue the token
	// counter restored from the snapshot.
	if err := first.TransferLeadership(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	l, err := b.TryAcquire(ctx, "after", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() <= last.Token() {
		t.Fatalf("token after snapshot %d, before %d", l.Token(), last.Token())
	}
}

// pastDeadline is a context whose deadline has passed but whose timer has
// not fired yet: Err is still nil, as it briefly is for a real one.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A request made at its deadline fails; it used to come back with an
// empty response and no error, which Join read as success (TestMutualTLS
// saw a node without a certificate "join" about once in 80 runs on 386).
func TestCallAtDeadline(t *testing.T) {
	f := &forwarder{}
	_, err := f.call(pastDeadline{context.Background()}, "127.0.0.1:1", &rpcRequest{Kind: rpcJoin, ID: "x"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call at its deadline: %v, want context.DeadlineExceeded", err)
	}
}
