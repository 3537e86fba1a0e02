package discovery

import (
	"fmt"
	"io"
	"log"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/distkit/distkit/internal/loadtest"
)

// TestNoFalseFailuresUnderLoad loads the CPU of a process that runs an idle
// distkit cluster and, beside it, an idle cluster of plain memberlist with
// DefaultLANConfig. Nobody crashes or leaves, so every failure either
// reports is a false alarm: distkit must report none, and so none more than
// memberlist's defaults in the same run.
func TestNoFalseFailuresUnderLoad(t *testing.T) {
	const size = 10
	load := 8 * time.Second
	if testing.Short() {
		load = 3 * time.Second
	}
	// Registered first, so it runs last: memberlist's Shutdown does not
	// wait for a probe in flight, and a LAN probe can outlast goleak's
	// patience when the load has raised its awareness score.
	t.Cleanup(func() { loadtest.AwaitExit("github.com/hashicorp/memberlist.", 10*time.Second) })

	c := newCluster(t, size, nil)
	recs := make([]*recorder, 0, size)
	for _, n := range c.live() {
		recs = append(recs, record(t, n))
	}
	lan := startLANCluster(t, size)
	time.Sleep(500 * time.Millisecond) // let the start-up gossip settle

	stats := func() (fails, vetoed uint64) {
		for _, n := range c.live() {
			s := n.Stats()
			fails += s.Fails
			vetoed += s.Vetoed
		}
		return fails, vetoed
	}
	events := func() (n int) {
		for _, r := range recs {
			n += r.count(EventFail)
		}
		return n
	}
	fails0, vetoed0 := stats()
	events0, lan0 := events(), lan.fails.Load()

	late := loadtest.Lateness()
	stopSpin, stopAlloc := loadtest.Spin(4*runtime.GOMAXPROCS(0)), loadtest.Allocate(2)
	time.Sleep(load)
	stopAlloc()
	stopSpin()
	p99 := loadtest.Percentile(late(), 0.99).Round(time.Microsecond)
	time.Sleep(2 * time.Second) // count alarms raised during the load but reported after it

	fails1, vetoed1 := stats()
	// The Watch stream may fold a failure into a later join when its
	// reader is behind; the counter cannot miss one. Take the larger.
	ours := max(int(fails1-fails0), events()-events0)
	theirs := int(lan.fails.Load() - lan0)
	t.Logf("%v of load (a 1 ms sleep overshot %v at p99): distkit reported %d failures (%d dead declarations vetoed), memberlist LAN %d",
		load, p99, ours, vetoed1-vetoed0, theirs)
	if ours > 0 {
		t.Errorf("distkit reported %d healthy members failed under load", ours)
	}
	if ours > theirs {
		t.Errorf("distkit reported %d false failures, memberlist's defaults %d", ours, theirs)
	}
	c.waitConverged(settle)
}

// lanCluster is a cluster of plain memberlist members with DefaultLANConfig
// that counts the failures its members report.
type lanCluster struct {
	members []*memberlist.Memberlist
	fails   atomic.Int64 // NotifyLeave calls, over all members
}

func (l *lanCluster) NotifyJoin(*memberlist.Node)   {}
func (l *lanCluster) NotifyUpdate(*memberlist.Node) {}
func (l *lanCluster) NotifyLeave(*memberlist.Node)  { l.fails.Add(1) }

func startLANCluster(t testing.TB, size int) *lanCluster {
	t.Helper()
	l := &lanCluster{}
	t.Cleanup(func() {
		for _, m := range l.members {
			_ = m.Shutdown()
		}
	})
	for i := range size {
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = fmt.Sprintf("lan%02d", i)
		cfg.BindAddr = "127.0.0.1"
		cfg.BindPort = 0
		cfg.Logger = log.New(io.Discard, "", 0)
		cfg.Events = l
		m, err := memberlist.Create(cfg)
		if err != nil {
			t.Fatalf("memberlist.Create: %v", err)
		}
		l.members = append(l.members, m)
		if i > 0 {
			if _, err := m.Join([]string{l.members[0].LocalNode().Address()}); err != nil {
				t.Fatalf("memberlist Join: %v", err)
			}
		}
	}
	waitFor(t, settle, "the memberlist cluster to converge", func() bool {
		for _, m := range l.members {
			if m.NumMembers() != size {
				return false
			}
		}
		return true
	})
	return l
}
