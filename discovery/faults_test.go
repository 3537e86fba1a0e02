package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/faultnet"
)

func withVerifyDial(f func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *options) error {
		o.verifyDial = f
		return nil
	}
}

// openPort makes the fail check see every gossip port as open, as it would
// for a process that is alive but starved.
func openPort(ctx context.Context, addr string) (net.Conn, error) {
	a, b := net.Pipe()
	go b.Close()
	return a, nil
}

// quiet waits until no member suspects another, so that a test's own
// faults are the only ones it sees.
func quiet(t *testing.T, c *cluster) {
	t.Helper()
	waitFor(t, settle, "no open suspicions", func() bool {
		for _, n := range c.live() {
			if n.Stats().Suspect > 0 {
				return false
			}
		}
		return true
	})
}

func names(ns []*Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, faultNode(n.Name()))
	}
	return out
}

// TestPartitionAndHeal splits 6 members 3/3 on faultnet: each side reports
// the other failed; after the heal they find each other again by
// themselves.
func TestPartitionAndHeal(t *testing.T) {
	fn := faultnet.New(1)
	c := newCluster(t, 6, fn)
	recs := map[string]*recorder{}
	for _, n := range c.live() {
		recs[n.Name()] = record(t, n)
	}
	left, right := c.live()[:3], c.live()[3:]
	fn.Partition(names(left), names(right))
	// A partition looks like a stalled process (the check's connection
	// times out), so it is reported after the fail grace, 5 s.
	waitFor(t, 20*time.Second, "each side to drop the other", func() bool {
		for _, n := range c.live() {
			if len(n.Members()) != 3 {
				return false
			}
		}
		return true
	})
	waitUntil(t, settle, "the watchers to see the other side fail", func() string {
		for _, n := range left {
			for _, m := range right {
				if _, ok := recs[n.Name()].first(m.Name(), EventFail); !ok {
					return fmt.Sprintf("%s did not report %s failed: %v", n.Name(), m.Name(), recs[n.Name()].of(m.Name()))
				}
			}
		}
		return ""
	})
	fn.HealAll()
	healed := time.Now()
	c.waitConverged(settle)
	t.Logf("reunited %v after the heal", time.Since(healed))
	// The watchers may get the joins a little after the views have them.
	waitUntil(t, settle, "the watchers to see the other side join again", func() string {
		for _, n := range left {
			kinds := recs[n.Name()].of(right[1].Name())
			if kinds[len(kinds)-1] != EventJoin {
				return fmt.Sprintf("%s saw %s go %v, want it to end joined", n.Name(), right[1].Name(), kinds)
			}
		}
		return ""
	})
}

// TestSlowMemberNotFailed: memberlist declares an unreachable member dead,
// but its gossip port still accepts connections, so it gets the grace; it
// comes back within it and is never reported failed.
func TestSlowMemberNotFailed(t *testing.T) {
	fn := faultnet.New(2)
	c := newCluster(t, 5, fn, withVerifyDial(openPort), WithFailGrace(4*time.Second), WithServices(Service{Name: "api", Port: 80}))
	watcher := c.node("n00")
	quiet(t, c)
	rec := record(t, watcher)
	slow := "n04"
	fn.Isolate(faultNode(slow))
	// memberlist declares it dead; discovery keeps it, as suspect, and in
	// Instances, since its port answers.
	waitFor(t, 5*time.Second, "memberlist to declare n04 dead", func() bool {
		return rec.pending(slow) && slices.ContainsFunc(watcher.Members(), func(m Member) bool { return m.Name == slow && m.State == Suspect })
	})
	if !slices.ContainsFunc(watcher.Instances("api"), func(in Instance) bool { return in.Member == slow }) {
		t.Fatalf("a suspect member whose port answers left Instances: %v", watcher.Instances("api"))
	}
	fn.HealAll()
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.live() {
				m, ok := n.Member(slow)
				t.Logf("%s: %v %v members=%d %+v", n.Name(), ok, m.State, len(n.Members()), n.Stats())
			}
		}
	})
	waitFor(t, 10*time.Second, "n04 alive again", func() bool {
		for _, n := range c.live() {
			m, ok := n.Member(slow)
			if n.Name() != slow && (!ok || m.State != Alive) {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond)
	for _, n := range c.live(slow) {
		if n.Stats().Fails != 0 {
			t.Fatalf("%s reported a failure: %+v", n.Name(), n.Stats())
		}
	}
	var vetoed uint64
	for _, n := range c.live() {
		vetoed += n.Stats().Vetoed
	}
	if vetoed == 0 {
		t.Fatal("no member vetoed a dead declaration; the test did not exercise the grace")
	}
	waitUntil(t, settle, "the refuted event", func() string {
		if _, ok := rec.first(slow, EventRefuted); !ok {
			return fmt.Sprintf("events about %s: %v", slow, rec.of(slow))
		}
		return ""
	})
}

// TestHungMemberFailsAfterGrace: a member whose port stays open but which
// never answers is reported failed once the grace is over.
// TestSilentMemberLeavesInstances: a member memberlist declared dead whose
// gossip port does not answer at all leaves Instances during the grace,
// before it is reported failed, and comes back when it does.
func TestSilentMemberLeavesInstances(t *testing.T) {
	fn := faultnet.New(4)
	silent := func(ctx context.Context, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c := newCluster(t, 4, fn, withVerifyDial(silent), WithFailGrace(20*time.Second), WithServices(Service{Name: "api", Port: 80}))
	quiet(t, c)
	watcher := c.node("n00")
	rec := record(t, watcher)
	in := func() bool {
		return slices.ContainsFunc(watcher.Instances("api"), func(in Instance) bool { return in.Member == "n03" })
	}
	fn.Isolate(faultNode("n03"))
	waitFor(t, 10*time.Second, "n03 to leave Instances", func() bool { return !in() })
	if m, ok := watcher.Member("n03"); !ok || m.State != Suspect {
		t.Fatalf("n03 left Instances but is %v (listed %v), want a listed suspect", m.State, ok)
	}
	if !rec.pending("n03") {
		t.Fatalf("n03 left Instances before memberlist declared it dead: %v", rec.of("n03"))
	}
	fn.HealAll()
	waitFor(t, 10*time.Second, "n03 back in Instances", in)
	if _, ok := rec.first("n03", EventFail); ok {
		t.Fatalf("n03 was reported failed within the grace: %v", rec.of("n03"))
	}
}

func TestHungMemberFailsAfterGrace(t *testing.T) {
	fn := faultnet.New(3)
	grace := time.Second
	c := newCluster(t, 4, fn, withVerifyDial(openPort), WithFailGrace(grace))
	quiet(t, c)
	rec := record(t, c.node("n00"))
	fn.Isolate(faultNode("n03"))
	waitFor(t, 10*time.Second, "n00 to report n03 failed", func() bool {
		_, ok := rec.first("n03", EventFail)
		return ok
	})
	s, _ := rec.firstPending("n03")
	f, _ := rec.first("n03", EventFail)
	if f.Time.Sub(s.Time) < grace/2 {
		t.Fatalf("failed %v after the first suspicion; want the grace (%v) honoured", f.Time.Sub(s.Time), grace)
	}
}

// TestSuspicionAudit isolates a member briefly: its probers suspect it,
// it refutes, and the audit record reaches members that did not probe it.
func TestSuspicionAudit(t *testing.T) {
	fn := faultnet.New(4)
	c := newCluster(t, 6, fn, withVerifyDial(openPort))
	target := c.node("n05")
	found := func() (Suspicion, bool) {
		for _, n := range c.live("n05") {
			for _, s := range n.Stats().Suspicions {
				if s.Member == "n05" && s.By != n.Name() && s.Outcome == Refuted {
					return s, true
				}
			}
		}
		return Suspicion{}, false
	}
	for range 10 {
		fn.Isolate(faultNode("n05"))
		time.Sleep(450 * time.Millisecond)
		fn.HealAll()
		time.Sleep(time.Second)
		if _, ok := found(); ok {
			break
		}
	}
	s, ok := found()
	if !ok {
		t.Fatal("no refuted suspicion of n05 was gossiped to a member that did not raise it")
	}
	if s.By == "" || s.At.IsZero() || s.Ended.Before(s.At) {
		t.Fatalf("incomplete record %+v", s)
	}
	if target.Stats().SelfRefuted == 0 {
		t.Fatalf("n05 refuted nothing: %+v", target.Stats())
	}
	var raised uint64
	for _, n := range c.live() {
		raised += n.Stats().SuspicionsRaised
	}
	if raised == 0 {
		t.Fatal("no member counted a suspicion it raised")
	}
}

// TestStaleRevivalIgnored: memberlist takes a dead member back on any
// message with a higher incarnation, which stale gossip can carry after a
// crash. A member whose port refused stays out while it still refuses,
// and comes back once something answers there again.
func TestStaleRevivalIgnored(t *testing.T) {
	c := newCluster(t, 3, nil)
	obs := c.node("n00")
	rec := record(t, obs)
	gone := c.node("n02")
	ghost := *gone.ml.LocalNode() // what stale gossip would carry
	c.crash("n02")
	waitFor(t, settle, "n00 to report n02 failed", func() bool {
		_, ok := rec.first("n02", EventFail)
		return ok
	})

	// memberlist revives it: discovery checks the port, which refuses.
	(*delegate)(obs).NotifyJoin(&ghost)
	if _, ok := obs.Member("n02"); ok {
		t.Fatal("a revival of a member whose port refused was taken at once")
	}
	waitFor(t, settle, "the recheck", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		f := obs.failed["n02"]
		return !f.rechecking
	})
	time.Sleep(100 * time.Millisecond)
	if m, ok := obs.Member("n02"); ok {
		t.Fatalf("n02 is listed again (%v) while its port refuses; events %v", m.State, rec.of("n02"))
	}
	if got := obs.Stats().Revivals; got != 1 {
		t.Fatalf("Revivals = %d, want 1", got)
	}

	// Its port answers again: the once-a-second recheck takes it back.
	ln, err := net.Listen("tcp", ghost.Address())
	if err != nil {
		t.Skipf("cannot listen on n02's old address again: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	waitFor(t, settle, "n02 back once its port answers", func() bool {
		_, ok := obs.Member("n02")
		return ok
	})
	// The watcher may get the join a little after the view has it.
	waitUntil(t, settle, "the join after the failure", func() string {
		kinds := rec.of("n02")
		if i := slices.Index(kinds, EventFail); i >= 0 && slices.Contains(kinds[i:], EventJoin) {
			return ""
		}
		return fmt.Sprintf("events about n02: %v", kinds)
	})
}
