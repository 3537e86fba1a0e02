// Command election shows ownership election with distkit's election
// package: it starts three raft nodes on loopback, shows who leads and who
// owns a resource, kills the leader, and shows how fast a new leader took
// over and that the resource's new owner writes with a larger fencing
// token, which the store's Fence uses to refuse the old owner. It exits by
// itself.
//
//	go run ./examples/election
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/distkit/distkit/election"
)

const (
	resource = "nightly-report"
	ttl      = 500 * time.Millisecond
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Three nodes on 127.0.0.1, each on a free port.
	nodes := map[string]*election.Node{}
	var peers []election.Peer
	for _, id := range []string{"node-a", "node-b", "node-c"} {
		n, err := election.New(id)
		if err != nil {
			log.Fatal(err)
		}
		defer n.Close()
		nodes[id] = n
		peers = append(peers, election.Peer{ID: id, Addr: n.Addr()})
	}
	start := time.Now()
	if err := nodes["node-a"].Bootstrap(ctx, peers); err != nil {
		log.Fatal(err)
	}
	leader, _ := nodes["node-a"].WaitForLeader(ctx)
	fmt.Printf("cluster of %d up in %v; leader %s (term %d)\n", len(nodes), ms(time.Since(start)), leader.ID, leader.Term)

	// The store that the resource's owner writes to checks fencing tokens.
	var store election.Fence

	// The leader takes the resource and keeps it while it lives.
	old := nodes[leader.ID]
	lease, err := old.Acquire(ctx, resource, ttl)
	if err != nil {
		log.Fatal(err)
	}
	stopRenew := renew(ctx, lease)
	if err := store.Check(resource, lease.Token()); err != nil {
		log.Fatal(err)
	}
	owner, _ := nodes["node-c"].Owner(ctx, resource) // asked on any node
	fmt.Printf("%s owns %q with token %d (as node-c hears from the leader)\n", owner.Holder, resource, owner.Token)

	// Crash the leader; its lease is no longer renewed.
	fmt.Printf("killing %s\n", leader.ID)
	killed := time.Now()
	stopRenew()
	_ = old.Close()
	delete(nodes, leader.ID)
	var survivor *election.Node
	for _, n := range nodes {
		survivor = n
	}
	newLeader, err := waitNewLeader(ctx, survivor, leader.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("new leader %s (term %d) %v after the crash\n", newLeader.ID, newLeader.Term, ms(time.Since(killed)))

	// The new leader takes the resource once the old lease has run out.
	next, err := nodes[newLeader.ID].Acquire(ctx, resource, ttl)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s owns %q with token %d, %v after the crash (the old lease had %v to live)\n",
		newLeader.ID, resource, next.Token(), ms(time.Since(killed)), ttl)
	if err := store.Check(resource, next.Token()); err != nil {
		log.Fatal(err)
	}
	// A write from the old owner, arriving late, is refused.
	err = store.Check(resource, lease.Token())
	fmt.Printf("late write from the old owner with token %d: %v (stale: %v)\n",
		lease.Token(), err, errors.Is(err, election.ErrStaleToken))
	if err := next.Release(ctx); err != nil {
		log.Fatal(err)
	}
	st := nodes[newLeader.ID].Stats()
	fmt.Printf("stats on %s: term %d, leases granted %d, expired %d, released %d\n",
		st.ID, st.Term, st.LeasesGranted, st.LeasesExpired, st.LeasesReleased)
}

// renew keeps a lease alive until the returned stop is called.
func renew(ctx context.Context, l *election.Lease) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.TTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.Lost():
				return
			case <-t.C:
				_ = l.Renew(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func waitNewLeader(ctx context.Context, n *election.Node, old string) (election.Leader, error) {
	w := n.WatchLeader(ctx)
	for l := range w {
		if l.ID != "" && l.ID != old {
			return l, nil
		}
	}
	return election.Leader{}, ctx.Err()
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
