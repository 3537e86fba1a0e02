// Command shard shows consistent-hash sharding with distkit's shard
// package: it places 100,000 keys on five cache nodes, prints how evenly
// they spread, then adds a node and removes another and prints how many
// keys moved against the minimum that must move. It runs in memory and
// exits by itself.
//
//	go run ./examples/shard
package main

import (
	"fmt"
	"log"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/distkit/distkit/shard"
)

const numKeys = 100_000

func main() {
	keys := make([]string, numKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
	}

	nodes := shard.Nodes("cache-1", "cache-2", "cache-3", "cache-4", "cache-5")
	table, err := shard.New(nodes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d keys on %d nodes with the %s algorithm:\n", numKeys, table.Len(), table.Snapshot().Algorithm())
	spread(table.Snapshot(), keys)

	// A sixth node joins: ideally it takes 1/6 of the keys, and only
	// those move.
	before := table.Snapshot()
	if err := table.Add(shard.Node{ID: "cache-6", Weight: 1}); err != nil {
		log.Fatal(err)
	}
	report("cache-6 joins", before, table.Snapshot(), keys, 1.0/6)

	// cache-2 leaves: its keys, and only those, must move.
	before = table.Snapshot()
	if err := table.Remove("cache-2"); err != nil {
		log.Fatal(err)
	}
	report("cache-2 leaves", before, table.Snapshot(), keys, 1.0/6)

	// Replicas: each key's next owners in order of preference.
	replicas := table.LocateN("user:42", 3, nil)
	fmt.Printf("\nuser:42 is stored on %v (owner first)\n", replicas)

	// The movement plan a resharding job would follow.
	mv, err := shard.Diff(before, table.Snapshot())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("resharding plan for cache-2 leaving: %d hash ranges, %.1f%% of the key space\n",
		len(mv.Moves), 100*mv.Fraction())
}

// spread prints each node's share of keys against the fair share.
func spread(s *shard.Snapshot, keys []string) {
	count := map[string]int{}
	for _, k := range keys {
		node, _ := s.Locate(k)
		count[node]++
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "node\tkeys\tshare\tof fair share\t")
	nodes := s.Nodes()
	fair := float64(len(keys)) / float64(len(nodes))
	for _, n := range nodes {
		c := count[n.ID]
		fmt.Fprintf(w, "%s\t%d\t%.1f%%\t%.3f\t\n", n.ID, c, 100*float64(c)/float64(len(keys)), float64(c)/fair)
	}
	w.Flush()
}

// report prints how many keys moved between two placements, against the
// ideal fraction, and checks that no key moved between two nodes that
// both stayed.
func report(what string, before, after *shard.Snapshot, keys []string, ideal float64) {
	moved, between := 0, 0
	stayed := func(id string) bool {
		return slices.ContainsFunc(before.Nodes(), func(n shard.Node) bool { return n.ID == id }) &&
			slices.ContainsFunc(after.Nodes(), func(n shard.Node) bool { return n.ID == id })
	}
	for _, k := range keys {
		a, _ := before.Locate(k)
		b, _ := after.Locate(k)
		if a != b {
			moved++
			if stayed(a) && stayed(b) {
				between++
			}
		}
	}
	frac := float64(moved) / float64(len(keys))
	fmt.Printf("\n%s: %d keys moved (%.2f%%), ideal %.2f%%: %.3f× the minimum; %d moved between nodes that stayed\n",
		what, moved, 100*frac, 100*ideal, frac/ideal, between)
	spread(after, keys)
}
