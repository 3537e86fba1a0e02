package election_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/faultnet"
)

// Three nodes in one process on an in-memory network: a follower takes a
// lease (its request is forwarded to the leader), and another node is
// refused while it is held.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	network := faultnet.New(1)
	var nodes []*election.Node
	var peers []election.Peer
	for _, id := range []string{"a", "b", "c"} {
		ln, _ := network.Listen(id)
		n, err := election.New(id, election.WithNetwork(ln, network.Dialer(id)))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Close()
		nodes = append(nodes, n)
		peers = append(peers, election.Peer{ID: id, Addr: n.Addr()})
	}
	if err := nodes[0].Bootstrap(ctx, peers); err != nil {
		fmt.Println(err)
		return
	}
	lease, err := nodes[1].Acquire(ctx, "shard-7", time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("b holds shard-7 with token", lease.Token())

	_, err = nodes[2].TryAcquire(ctx, "shard-7", time.Second)
	var held *election.HeldError
	if errors.As(err, &held) {
		fmt.Println("c is refused: held by", held.Holder)
	}
	_ = lease.Release(ctx)
	next, _ := nodes[2].Acquire(ctx, "shard-7", time.Second)
	fmt.Println("c holds shard-7 with token", next.Token())
	// Output:
	// b holds shard-7 with token 1
	// c is refused: held by b
	// c holds shard-7 with token 2
}

// A store protects itself from owners that lost their lease: it refuses
// any token older than one it has seen.
func ExampleFence() {
	var store election.Fence
	fmt.Println(store.Check("shard-7", 2))
	fmt.Println(store.Check("shard-7", 1))
	// Output:
	// <nil>
	// election: stale fencing token: "shard-7" presented 1, already saw 2
}
