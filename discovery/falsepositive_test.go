package discovery

import (
	"fmt"
	"io"
	"log"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
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
	t.Cleanup(awaitMemberlistExit)

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

	late := measureLateness()
	stop := loadCPU(4*runtime.GOMAXPROCS(0), 2)
	time.Sleep(load)
	stop()
	p99 := late()
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

// loadCPU starts spinners goroutines that spin and allocators goroutines
// that allocate 1 MiB slices (so the collector runs all the time) until the
// returned function is called; it returns once they have stopped.
func loadCPU(spinners, allocators int) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	var sink atomic.Uint64
	for range spinners {
		wg.Go(func() {
			x := uint64(1)
			for !done.Load() {
				for range 1000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			sink.Add(x)
		})
	}
	for range allocators {
		wg.Go(func() {
			var keep [4][]byte
			for i := 0; !done.Load(); i++ {
				s := make([]byte, 1<<20)
				for j := 0; j < len(s); j += 4096 {
					s[j] = byte(i)
				}
				keep[i%len(keep)] = s
			}
		})
	}
	return func() {
		done.Store(true)
		wg.Wait()
	}
}

// measureLateness sleeps 1 ms at a time in the background, to show how
// hard a load is; the returned function stops it and says how late the
// sleeps woke at the 99th percentile.
func measureLateness() (stop func() time.Duration) {
	var late []time.Duration
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			t := time.Now()
			time.Sleep(time.Millisecond)
			late = append(late, time.Since(t)-time.Millisecond)
		}
	}()
	return func() time.Duration {
		close(quit)
		<-done
		if len(late) == 0 {
			return 0
		}
		slices.Sort(late)
		return late[len(late)*99/100].Round(time.Microsecond)
	}
}

// awaitMemberlistExit waits up to 10 s for goroutines running memberlist
// code to end.
func awaitMemberlistExit() {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if !strings.Contains(string(buf[:n]), "github.com/hashicorp/memberlist.") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
