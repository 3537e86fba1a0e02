package shard

import "testing"

// BenchmarkTableCycle adds and removes one node on a 512-node table with
// the default algorithm: the rebuild the package promises to keep fast.
func BenchmarkTableCycle(b *testing.B) {
	tb, err := New(Nodes(ids("node", 512)...))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			err = tb.Add(Node{"joiner", 1})
		} else {
			err = tb.Remove("joiner")
		}
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}
