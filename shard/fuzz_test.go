package shard

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// FuzzTable feeds arbitrary node IDs, weights and membership histories to a
// table. Nothing may panic; a write either fails and changes nothing or
// yields exactly the placement a fresh build gives; lookups only name
// members.
func FuzzTable(f *testing.F) {
	f.Add("a\nb\nc\nd", []byte{0, 1, 2, 3, 0x81, 0x42, 4, 5})
	f.Add("x\n\nx\ny", []byte{7, 0, 1, 0x80, 3})
	f.Add("shard-1\nshard-10\nshard-2", []byte{2, 0, 1, 2, 0x82, 0x81})
	weights := []float64{1, 2, 0.5, 0, -1, math.NaN(), math.Inf(1), 1e-10, MinWeight, MaxWeight, 3}
	algs := []Algorithm{Stratified(8), Stratified(9), Ring(8), Rendezvous(), Maglev(251), Jump(), Bounded(1.1, 64)}
	f.Fuzz(func(t *testing.T, names string, ops []byte) {
		pool := strings.Split(names, "\n")
		if len(ops) == 0 || len(pool) > 300 {
			return
		}
		alg := algs[int(ops[0])%len(algs)]
		tb, err := New(nil, WithAlgorithm(alg))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i+1 < len(ops); i += 2 {
			op, arg := ops[i], int(ops[i+1])
			before := tb.Snapshot()
			id := pool[arg%len(pool)]
			w := weights[int(op>>2)%len(weights)]
			switch op & 3 {
			case 0:
				err = tb.Add(Node{ID: id, Weight: w})
			case 1:
				err = tb.Remove(id)
			case 2: // a whole new member list: every other name, one weight
				var nodes []Node
				for k := arg % 2; k < len(pool); k += 2 {
					nodes = append(nodes, Node{ID: pool[k], Weight: w})
				}
				err = tb.Update(nodes)
			case 3:
				dst := tb.LocateN(id, arg%5, nil)
				if len(dst) != min(arg%5, tb.Len()) {
					t.Fatalf("LocateN(%q, %d) = %v with %d nodes", id, arg%5, dst, tb.Len())
				}
				continue
			}
			after := tb.Snapshot()
			if err != nil {
				if after != before {
					t.Fatalf("failed write (%v) changed the table", err)
				}
				var ne *NodeError
				if !errors.As(err, &ne) && !errors.Is(err, ErrTooManyNodes) && !errors.Is(err, ErrInvalidAlgorithm) {
					t.Fatalf("unexpected error type: %v", err)
				}
				continue
			}
			fresh, err := Build(alg, after.Nodes())
			if err != nil {
				t.Fatalf("fresh build of an accepted set fails: %v", err)
			}
			samePlacement(t, fresh, after, pool)
			members := map[string]bool{}
			for _, n := range after.Nodes() {
				members[n.ID] = true
			}
			for _, k := range pool {
				if owner, ok := after.Locate(k); ok != (after.Len() > 0) || (ok && !members[owner]) {
					t.Fatalf("Locate(%q) = %q, %v; members %v", k, owner, ok, after.Nodes())
				}
			}
		}
	})
}
