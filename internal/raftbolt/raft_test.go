package raftbolt

import (
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftRestart runs a one-node raft cluster on a Store, stops it, and
// starts a new raft on the reopened file: it must find its log, elect
// itself without bootstrapping, replay the old entries and accept new ones.
func TestRaftRestart(t *testing.T) {
	path := tempPath(t)

	// First life: bootstrap and apply three entries.
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fsm1 := &recordingFSM{}
	r1, stop1 := startRaft(t, s, fsm1)
	boot := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "n1"}}}
	if err := r1.BootstrapCluster(boot).Error(); err != nil {
		t.Fatalf("BootstrapCluster: %v", err)
	}
	waitLeader(t, r1)
	apply(t, r1, "a", "b", "c")
	if got := fsm1.applied(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("first FSM applied %q, want a b c", got)
	}
	last1, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	stop1()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Second life on the same file.
	s = open(t, path)
	if last, err := s.LastIndex(); err != nil || last != last1 {
		t.Fatalf("LastIndex after reopen = %d, %v; want %d", last, err, last1)
	}
	fsm2 := &recordingFSM{}
	r2, stop2 := startRaft(t, s, fsm2)
	defer stop2()
	if err := r2.BootstrapCluster(boot).Error(); !errors.Is(err, raft.ErrCantBootstrap) {
		t.Errorf("BootstrapCluster on existing state = %v, want raft.ErrCantBootstrap", err)
	}
	waitLeader(t, r2)
	apply(t, r2, "d")
	if got := fsm2.applied(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("second FSM applied %q, want the old entries replayed, then d", got)
	}
	if last, _ := s.LastIndex(); last <= last1 {
		t.Errorf("LastIndex = %d, want more than %d after new entries", last, last1)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term < 2 {
		t.Errorf("CurrentTerm = %d, %v; want at least 2 after a second election", term, err)
	}
}

// startRaft starts a raft node "n1" on s, with timeouts short enough for a
// single node to elect itself in well under a second. stop shuts it down.
func startRaft(t *testing.T, s *Store, fsm raft.FSM) (r *raft.Raft, stop func()) {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.Logger = hclog.NewNullLogger()
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	_, trans := raft.NewInmemTransport("n1")
	r, err := raft.NewRaft(conf, fsm, s, s, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	var once sync.Once
	return r, func() {
		once.Do(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			_ = trans.Close()
		})
	}
}

// waitLeader polls until r leads, failing after a bounded wait.
func waitLeader(t *testing.T, r *raft.Raft) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 5s; state %v", r.State())
		}
		select {
		case <-r.LeaderCh():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// apply applies each command and waits until the FSM has applied it.
func apply(t *testing.T, r *raft.Raft, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if err := r.Apply([]byte(c), 5*time.Second).Error(); err != nil {
			t.Fatalf("Apply(%q): %v", c, err)
		}
	}
}

// recordingFSM records the commands it applies, in order.
type recordingFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *recordingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(l.Data))
	return nil
}

func (f *recordingFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("recordingFSM: snapshots not supported")
}

func (f *recordingFSM) Restore(rc io.ReadCloser) error { return rc.Close() }
