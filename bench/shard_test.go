package bench

import (
	"fmt"
	"slices"
	"testing"
)

// The sharding benchmarks. Names follow Benchmark<Thing>/impl=<name>/<param>=<value>
// so that benchstat and scripts can read them; non-time figures are
// reported with b.ReportMetric.

var (
	lookupKeys = keySet(1 << 16)
	sinkNode   string
)

func keySet(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user:%d:session", i)
	}
	return out
}

// BenchmarkLocate measures one lookup. The 65,536 keys touch the whole of
// every table, as real traffic does.
func BenchmarkLocate(b *testing.B) {
	for _, im := range shardImpls() {
		for _, n := range []int{8, 64, 512} {
			b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, n), func(b *testing.B) {
				p := im.new(nodeNames(n))
				mask := len(lookupKeys) - 1
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					sinkNode = p.Locate(lookupKeys[i&mask])
					i++
				}
			})
		}
	}
}

// BenchmarkBalance places a million keys on 64 nodes and reports:
//
//   - peak/mean: the most keys on one node over the mean;
//   - moved-add/ideal: the share of keys that move when a node joins, over
//     the joining node's fair share 1/65 — the worst of four joins;
//   - moved-remove/ideal: the same when a node leaves, over its fair share
//     1/64 — the worst of four leaves, spread over the node list (first,
//     a third, two thirds, last): removing "any node" must be cheap, not
//     only the last one.
//
// Each change starts from a fresh 64-node table and goes through the
// implementation's own update path. Joining nodes continue the numbering
// (node-64, node-65, ...), the friendly case for numbered shards. The time
// per operation is that of the whole measurement.
func BenchmarkBalance(b *testing.B) {
	const n, numKeys = 64, 1_000_000
	keys := keySet(numKeys)
	for _, im := range shardImpls() {
		b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, n), func(b *testing.B) {
			var peak, add, remove float64
			for b.Loop() {
				peak, add, remove = balance(im, n, keys)
			}
			b.ReportMetric(peak, "peak/mean")
			b.ReportMetric(add, "moved-add/ideal")
			b.ReportMetric(remove, "moved-remove/ideal")
		})
	}
}

func balance(im shardImpl, n int, keys []string) (peak, add, remove float64) {
	nodes := nodeNames(n)
	base := im.new(nodes)
	owner := make([]string, len(keys))
	count := map[string]int{}
	for i, k := range keys {
		owner[i] = base.Locate(k)
		count[owner[i]]++
	}
	most := 0
	for _, c := range count {
		most = max(most, c)
	}
	peak = float64(most) / (float64(len(keys)) / float64(n))
	moved := func(p placer) float64 {
		m := 0
		for i, k := range keys {
			if p.Locate(k) != owner[i] {
				m++
			}
		}
		return float64(m) / float64(len(keys))
	}
	for j := range 4 {
		grown := im.new(nodes)
		grown.Add(nodeName(n + j))
		add = max(add, moved(grown)*float64(n+1))
		shrunk := im.new(nodes)
		shrunk.Remove(nodes[j*(n-1)/3]) // first, a third, two thirds, last
		remove = max(remove, moved(shrunk)*float64(n))
	}
	return peak, add, remove
}

// BenchmarkRebuild measures one membership change on a 512-node table: the
// iterations alternate between adding a node and removing it again, each
// through the implementation's own update path.
func BenchmarkRebuild(b *testing.B) {
	const n = 512
	for _, im := range shardImpls() {
		b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, n), func(b *testing.B) {
			p := im.new(nodeNames(n))
			extra := nodeName(n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					p.Add(extra)
				} else {
					p.Remove(extra)
				}
				i++
			}
		})
	}
}

// BenchmarkBuild measures building a table from scratch, as a process does
// at start-up.
func BenchmarkBuild(b *testing.B) {
	for _, im := range shardImpls() {
		for _, n := range []int{8, 64, 512} {
			b.Run(fmt.Sprintf("impl=%s/nodes=%d", im.name, n), func(b *testing.B) {
				nodes := nodeNames(n)
				b.ReportAllocs()
				for b.Loop() {
					im.new(nodes)
				}
			})
		}
	}
}

// TestImplementationsPlaceOnMembers checks every adapter before its figures
// are believed: keys land on members, and membership changes take effect.
func TestImplementationsPlaceOnMembers(t *testing.T) {
	for _, im := range shardImpls() {
		nodes := nodeNames(10)
		p := im.new(nodes)
		p.Add("extra")
		p.Remove(nodes[9])
		seen := map[string]bool{}
		for _, k := range keySet(2000) {
			node := p.Locate(k)
			if node == nodes[9] || (node != "extra" && !slices.Contains(nodes, node)) {
				t.Fatalf("%s placed %q on %q", im.name, k, node)
			}
			seen[node] = true
		}
		if !seen["extra"] || len(seen) != 10 {
			t.Errorf("%s used %d nodes (extra: %v), want all 10", im.name, len(seen), seen["extra"])
		}
	}
}
