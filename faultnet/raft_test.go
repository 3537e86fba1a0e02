package faultnet

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// newTransport returns a raft transport on a StreamLayer at addr, with
// the given I/O timeout, closed
// (with its pooled streams) at cleanup.
func newTransport(t *testing.T, n *Network, addr string, timeout time.Duration) *raft.NetworkTransport {
	t.Helper()
	sl, err := n.StreamLayer(addr)
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(sl, 3, timeout, io.Discard)
	t.Cleanup(func() {
		trans.CloseStreams()
		trans.Close()
	})
	return trans
}

// answer serves AppendEntries on trans until stop closes, replying with
// the request's term plus one; it returns when it has stopped.
func answer(trans *raft.NetworkTransport, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-trans.Consumer():
				req, ok := rpc.Command.(*raft.AppendEntriesRequest)
				if !ok {
					rpc.Respond(nil, errors.New("unexpected RPC"))
					continue
				}
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term + 1, Success: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	return done
}

// appendEntries sends one AppendEntries RPC at term from trans to target.
func appendEntries(trans *raft.NetworkTransport, target raft.ServerAddress, term uint64) (*raft.AppendEntriesResponse, error) {
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("n1"), Addr: []byte(trans.LocalAddr())},
		Term:      term,
		Entries:   []*raft.Log{{Index: term, Term: term, Type: raft.LogCommand, Data: []byte("set x=1")}},
	}
	var resp raft.AppendEntriesResponse
	err := trans.AppendEntries(raft.ServerID(target), target, req, &resp)
	return &resp, err
}

func TestStreamLayerCarriesRaft(t *testing.T) {
	n := New(1)
	n.SetLatency("n1", "n2", time.Millisecond, time.Millisecond)
	t1 := newTransport(t, n, "n1:8300", time.Second)
	t2 := newTransport(t, n, "n2:8300", time.Second)
	if got := t2.LocalAddr(); got != "n2:8300" {
		t.Fatalf("LocalAddr = %q", got)
	}
	stop := make(chan struct{})
	done := answer(t2, stop)
	defer func() {
		close(stop)
		<-done
	}()

	appendEntries := func(term uint64) (*raft.AppendEntriesResponse, error) {
		return appendEntries(t1, "n2:8300", term)
	}
	for term := uint64(1); term <= 3; term++ {
		resp, err := appendEntries(term)
		if err != nil {
			t.Fatalf("AppendEntries: %v", err)
		}
		if !resp.Success || resp.Term != term+1 {
			t.Fatalf("response %+v, want success at term %d", resp, term+1)
		}
	}

	// A crashed follower fails the RPC with a reset (the pooled conn) or a
	// refusal (a new dial), rather than with raft's timeout.
	n.Crash("n2")
	for term := uint64(4); term <= 5; term++ {
		_, err := appendEntries(term)
		if !errors.Is(err, ErrReset) && !errors.Is(err, ErrRefused) {
			t.Fatalf("AppendEntries to a crashed node = %v, want ErrReset or ErrRefused", err)
		}
		t.Logf("AppendEntries to a crashed node: %v", err)
	}
	n.Crash("n1") // ends the transports' connection handlers
}

// TestStreamLayerCut shows raft meeting a cut: a pooled connection whose
// replies stall times out on raft's deadline, a new connection cannot be
// set up, and after the heal RPCs succeed again.
func TestStreamLayerCut(t *testing.T) {
	const timeout = 100 * time.Millisecond
	n := New(1)
	t1 := newTransport(t, n, "n1:8300", timeout)
	t2 := newTransport(t, n, "n2:8300", timeout)
	stop := make(chan struct{})
	done := answer(t2, stop)
	defer func() {
		close(stop)
		<-done
	}()
	if _, err := appendEntries(t1, "n2:8300", 1); err != nil {
		t.Fatalf("AppendEntries before the cut: %v", err)
	}

	n.Cut("n2", "n1")                          // n2 hears n1 but its replies stall
	for term := uint64(2); term <= 3; term++ { // the pooled conn, then a new dial
		_, err := appendEntries(t1, "n2:8300", term)
		// raft's codec flattens read errors into text.
		var ne net.Error
		if err == nil || !(errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), os.ErrDeadlineExceeded.Error())) {
			t.Fatalf("AppendEntries during the cut = %v, want a timeout", err)
		}
		t.Logf("AppendEntries during the cut: %v", err)
	}

	n.Heal("n2", "n1")
	if resp, err := appendEntries(t1, "n2:8300", 4); err != nil || resp.Term != 5 {
		t.Fatalf("AppendEntries after the heal = %+v, %v", resp, err)
	}
	n.Crash("n1")
	n.Crash("n2")
}
