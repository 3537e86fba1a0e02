package shard_test

import (
	"fmt"
	"log"

	"github.com/distkit/distkit/shard"
)

// A table places keys on nodes; lookups are lock-free and allocation-free.
func Example() {
	t, err := shard.New(shard.Nodes("cache-a", "cache-b", "cache-c"))
	if err != nil {
		log.Fatal(err)
	}
	node, _ := t.Locate("user:42")
	fmt.Println("user:42 →", node)

	count := map[string]int{}
	for i := range 30000 {
		node, _ := t.Locate(fmt.Sprint("user:", i))
		count[node]++
	}
	fmt.Println(count)
	// Output:
	// user:42 → cache-c
	// map[cache-a:9944 cache-b:10003 cache-c:10053]
}

// Feed a table the member list from a membership service whenever it
// changes; members may arrive in any order. Only the keys that must move
// do: here, those that go to the new node.
func ExampleTable_Update() {
	t, err := shard.New(shard.Nodes("a", "b", "c"))
	if err != nil {
		log.Fatal(err)
	}
	before := t.Snapshot()
	if err := t.Update(shard.Nodes("d", "c", "b", "a")); err != nil {
		log.Fatal(err)
	}
	moved, toD := 0, 0
	for i := range 10000 {
		key := fmt.Sprint("key-", i)
		was, _ := before.Locate(key)
		now, _ := t.Locate(key)
		if was != now {
			moved++
			if now == "d" {
				toD++
			}
		}
	}
	fmt.Printf("%d of 10000 keys moved, all %v to d\n", moved, moved == toD)
	// Output:
	// 2464 of 10000 keys moved, all true to d
}

// LocateN gives a key's replicas: distinct nodes, the owner first. Reuse
// dst across calls to avoid allocating.
func ExampleSnapshot_LocateN() {
	s, err := shard.Build(shard.Default(), shard.Nodes("a", "b", "c", "d", "e"))
	if err != nil {
		log.Fatal(err)
	}
	dst := make([]string, 0, 3)
	for _, key := range []string{"order:17", "order:18"} {
		dst = s.LocateN(key, 3, dst[:0])
		fmt.Println(key, dst)
	}
	// Output:
	// order:17 [a d c]
	// order:18 [b e a]
}

// Weights are relative capacities: here b gets about twice a's share. A
// node with a tiny weight still owns part of the key space, however small.
func ExampleNode() {
	s, err := shard.Build(shard.Default(), []shard.Node{
		{ID: "a", Weight: 1}, {ID: "b", Weight: 2}, {ID: "tiny", Weight: shard.MinWeight},
	})
	if err != nil {
		log.Fatal(err)
	}
	count := map[string]int{}
	for i := range 30000 {
		node, _ := s.Locate(fmt.Sprint("key-", i))
		count[node]++
	}
	fmt.Printf("a %.2f, b %.2f\n", float64(count["a"])/30000, float64(count["b"])/30000)

	all, err := shard.Diff(nil, s) // from nothing: every range, with its owner
	if err != nil {
		log.Fatal(err)
	}
	var tiny float64
	for _, m := range all.Moves {
		if m.To == "tiny" {
			tiny += m.Fraction()
		}
	}
	fmt.Printf("tiny owns %.7f of the key space\n", tiny)
	// Output:
	// a 0.33, b 0.67
	// tiny owns 0.0000019 of the key space
}

// Diff plans a resharding: the ranges of key hashes that change owner.
func ExampleDiff() {
	old, err := shard.Build(shard.Default(), shard.Nodes("a", "b", "c", "d"))
	if err != nil {
		log.Fatal(err)
	}
	next, err := old.With(shard.Nodes("a", "b", "c")) // d leaves
	if err != nil {
		log.Fatal(err)
	}
	mv, err := shard.Diff(old, next)
	if err != nil {
		log.Fatal(err)
	}
	perTarget := map[string]float64{}
	for _, m := range mv.Moves {
		if m.From != "d" {
			log.Fatal("a key moved between nodes that stayed")
		}
		perTarget[m.To] += m.Fraction()
	}
	fmt.Printf("%.3f of the key space moves: a %.3f, b %.3f, c %.3f\n",
		mv.Fraction(), perTarget["a"], perTarget["b"], perTarget["c"])
	// Output:
	// 0.250 of the key space moves: a 0.083, b 0.083, c 0.083
}

// Nodes that see the same members compute the same placement, and can
// compare checksums to find out whether they do before forwarding.
func ExampleSnapshot_Checksum() {
	x, _ := shard.Build(shard.Default(), shard.Nodes("a", "b", "c"))
	y, _ := shard.Build(shard.Default(), shard.Nodes("c", "a", "b"))
	z, _ := shard.Build(shard.Default(), shard.Nodes("a", "b"))
	fmt.Println(x.Checksum() == y.Checksum(), x.Checksum() == z.Checksum())
	// Output:
	// true false
}

// Bounded caps every node's share of the key space at load times its fair
// share; a load below 1 cannot be met and is an error.
func ExampleBounded() {
	_, err := shard.Build(shard.Bounded(0.9, 1024), shard.Nodes("a", "b"))
	fmt.Println(err)
	s, err := shard.Build(shard.Bounded(1.1, 1024), shard.Nodes("a", "b", "c"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Algorithm())
	// Output:
	// shard: invalid algorithm: Bounded load must be in [1, 100], got 0.9
	// bounded(load=1.1, partitions=1024)
}

// Jump suits numbered shards that grow and shrink at the end. Nodes are
// numbered in the natural order of their IDs, so shard-10 comes after
// shard-9, and adding it moves keys to it and nowhere else.
func ExampleJump() {
	nine := shard.Nodes("shard-3", "shard-1", "shard-9", "shard-2", "shard-5", "shard-4", "shard-8", "shard-7", "shard-6")
	before, err := shard.Build(shard.Jump(), nine)
	if err != nil {
		log.Fatal(err)
	}
	after, err := before.With(append(nine, shard.Node{ID: "shard-10", Weight: 1}))
	if err != nil {
		log.Fatal(err)
	}
	toNew, elsewhere := 0, 0
	for i := range 10000 {
		key := fmt.Sprint("invoice:", i)
		was, _ := before.Locate(key)
		now, _ := after.Locate(key)
		switch {
		case was == now:
		case now == "shard-10":
			toNew++
		default:
			elsewhere++
		}
	}
	fmt.Println(toNew, "keys moved to shard-10,", elsewhere, "elsewhere")
	// Output:
	// 1043 keys moved to shard-10, 0 elsewhere
}
