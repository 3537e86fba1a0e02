package shard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// algorithms is every algorithm, sized small so that tests stay fast under
// the race detector.
func algorithms() []Algorithm {
	return []Algorithm{
		Stratified(10), Stratified(11), Ring(40), Rendezvous(),
		Maglev(4099), Jump(), Bounded(1.25, 1024),
	}
}

// weighted reports whether alg accepts unequal weights.
func weighted(alg Algorithm) bool { return alg.kind != kindJump }

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user:%d:session", i)
	}
	return out
}

func mustBuild(t testing.TB, alg Algorithm, nodes []Node) *Snapshot {
	t.Helper()
	s, err := Build(alg, nodes)
	if err != nil {
		t.Fatalf("Build(%v, %d nodes): %v", alg, len(nodes), err)
	}
	return s
}

func mustWith(t testing.TB, s *Snapshot, nodes []Node) *Snapshot {
	t.Helper()
	next, err := s.With(nodes)
	if err != nil {
		t.Fatalf("With(%d nodes): %v", len(nodes), err)
	}
	return next
}

// resolved is the owner ID of every slot of a table-based snapshot.
func resolved(s *Snapshot) []string {
	out := make([]string, len(s.slots))
	for i, o := range s.slots {
		out[i] = s.names[o]
	}
	return out
}

// owners is the owner of every key, as Locate returns it.
func owners(s *Snapshot, ks []string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i], _ = s.Locate(k)
	}
	return out
}

// samePlacement fails t unless a and b place keys identically.
func samePlacement(t testing.TB, a, b *Snapshot, ks []string) {
	t.Helper()
	if a.slots != nil || b.slots != nil {
		if ra, rb := resolved(a), resolved(b); !slices.Equal(ra, rb) {
			for s := range ra {
				if ra[s] != rb[s] {
					t.Fatalf("slot %d: %q versus %q", s, ra[s], rb[s])
				}
			}
			t.Fatalf("slot tables differ in length: %d versus %d", len(ra), len(rb))
		}
	}
	oa, ob := owners(a, ks), owners(b, ks)
	for i := range oa {
		if oa[i] != ob[i] {
			t.Fatalf("key %q: %q versus %q", ks[i], oa[i], ob[i])
		}
	}
}

func shuffled(r *rand.Rand, nodes []Node) []Node {
	out := slices.Clone(nodes)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func slotCounts(s *Snapshot) map[string]int {
	c := map[string]int{}
	for _, o := range s.slots {
		c[s.names[o]]++
	}
	return c
}
