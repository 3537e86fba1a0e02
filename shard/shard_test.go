package shard

import (
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		alg     Algorithm
		nodes   []Node
		want    error
		mention string // a part of the message that names the problem
	}{
		{"empty ID", Default(), []Node{{"a", 1}, {"", 1}}, ErrEmptyID, "node 1"},
		{"duplicate ID", Default(), []Node{{"a", 1}, {"b", 1}, {"a", 2}}, ErrDuplicateID, `"a"`},
		{"zero weight", Default(), []Node{{"a", 0}}, ErrInvalidWeight, "not positive"},
		{"negative weight", Ring(10), []Node{{"a", -1}}, ErrInvalidWeight, "not positive"},
		{"NaN weight", Maglev(7), []Node{{"a", math.NaN()}}, ErrInvalidWeight, "not finite"},
		{"infinite weight", Rendezvous(), []Node{{"a", math.Inf(1)}}, ErrInvalidWeight, "not finite"},
		{"tiny weight", Default(), []Node{{"a", 1e-10}}, ErrInvalidWeight, "outside"},
		{"huge weight", Default(), []Node{{"a", 1e10}}, ErrInvalidWeight, "outside"},
		{"jump with weights", Jump(), []Node{{"a", 1}, {"b", 2}}, ErrInvalidWeight, "equal weights"},
		{"slot bits too small", Stratified(7), nil, ErrInvalidAlgorithm, "slotBits"},
		{"slot bits too large", Stratified(25), nil, ErrInvalidAlgorithm, "slotBits"},
		{"no vnodes", Ring(0), nil, ErrInvalidAlgorithm, "vnodes"},
		{"maglev not prime", Maglev(65536), nil, ErrInvalidAlgorithm, "prime"},
		{"maglev too small for nodes", Maglev(3), Nodes("a", "b", "c", "d"), ErrTooManyNodes, "Maglev"},
		{"bounded load below 1", Bounded(0.99, 100), nil, ErrInvalidAlgorithm, "load"},
		{"bounded load NaN", Bounded(math.NaN(), 100), nil, ErrInvalidAlgorithm, "load"},
		{"bounded load infinite", Bounded(math.Inf(1), 100), nil, ErrInvalidAlgorithm, "load"},
		{"bounded no partitions", Bounded(1.25, 0), nil, ErrInvalidAlgorithm, "partitions"},
		{"bounded fewer partitions than nodes", Bounded(1.25, 2), Nodes("a", "b", "c"), ErrTooManyNodes, "partitions"},
		{"more nodes than slots", Stratified(8), Nodes(ids("n", 257)...), ErrTooManyNodes, "slots"},
		{"ring too many points", Ring(4096), Nodes(ids("n", 5000)...), ErrInvalidAlgorithm, "ring points"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Build(tc.alg, tc.nodes)
			if !errors.Is(err, tc.want) || s != nil {
				t.Fatalf("Build = %v, %v; want nil, %v", s, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestNodeErrorNamesTheNode(t *testing.T) {
	_, err := Build(Default(), []Node{{"a", 1}, {"b", -3}})
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Index != 1 || ne.ID != "b" {
		t.Fatalf("error %v: want a *NodeError for index 1, ID b", err)
	}
}

func TestEmpty(t *testing.T) {
	for _, alg := range algorithms() {
		s := mustBuild(t, alg, nil)
		if id, ok := s.Locate("k"); ok || id != "" {
			t.Errorf("%v: Locate on empty = %q, %v", alg, id, ok)
		}
		if got := s.LocateN("k", 3, []string{"x"}); !slices.Equal(got, []string{"x"}) {
			t.Errorf("%v: LocateN on empty = %v", alg, got)
		}
	}
	var nilSnap *Snapshot
	if _, ok := nilSnap.Locate("k"); ok || nilSnap.Len() != 0 || nilSnap.LocateN("k", 1, nil) != nil {
		t.Error("a nil snapshot is not empty")
	}
	var zero Table
	if _, ok := zero.Locate("k"); ok || zero.Len() != 0 {
		t.Error("the zero Table is not empty")
	}
	if err := zero.Add(Nodes("a")...); err != nil {
		t.Fatal(err)
	}
	if id, ok := zero.Locate("k"); !ok || id != "a" {
		t.Errorf("zero Table after Add: %q, %v", id, ok)
	}
	if zero.Snapshot().Algorithm() != Default() {
		t.Errorf("zero Table uses %v", zero.Snapshot().Algorithm())
	}
}

func TestTableWritesAreAllOrNothing(t *testing.T) {
	tb, err := New(Nodes("a", "b", "c"), WithAlgorithm(Stratified(10)))
	if err != nil {
		t.Fatal(err)
	}
	before := tb.Snapshot()
	for name, err := range map[string]error{
		"add present":    tb.Add(Node{"d", 1}, Node{"b", 1}),
		"add bad weight": tb.Add(Node{"d", 1}, Node{"e", 0}),
		"remove absent":  tb.Remove("a", "zz"),
		"remove twice":   tb.Remove("a", "a"),
		"update bad":     tb.Update([]Node{{"a", 1}, {"a", 1}}),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if tb.Snapshot() != before {
		t.Fatal("a failed write changed the table")
	}
	var ne *NodeError
	if err := tb.Add(Node{"d", 1}, Node{"e", -1}); !errors.As(err, &ne) || ne.Index != 1 || ne.ID != "e" {
		t.Errorf("Add with a bad second node: %v, want a *NodeError for index 1", err)
	}
	if err := tb.Add(Node{"d", 1}, Node{"d", 1}); !errors.Is(err, ErrDuplicateID) {
		t.Errorf("Add of one node twice: %v, want ErrDuplicateID", err)
	}
	if err := tb.Add(Node{"d", 2}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Remove("a"); err != nil {
		t.Fatal(err)
	}
	want := []Node{{"b", 1}, {"c", 1}, {"d", 2}}
	if got := tb.Nodes(); !slices.Equal(got, want) {
		t.Fatalf("Nodes() = %v, want %v", got, want)
	}
	samePlacement(t, mustBuild(t, Stratified(10), want), tb.Snapshot(), keys(100))
}

// TestTableConcurrentReadsDuringUpdates runs lookups while membership
// changes and checks each answer against the two placements it may come
// from. Run it with -race.
func TestTableConcurrentReadsDuringUpdates(t *testing.T) {
	setA, setB := Nodes(ids("a", 10)...), Nodes(append(ids("a", 10)[2:], ids("b", 3)...)...)
	alg := Stratified(10)
	tb, err := New(setA, WithAlgorithm(alg))
	if err != nil {
		t.Fatal(err)
	}
	ks := keys(64)
	wantA, wantB := owners(mustBuild(t, alg, setA), ks), owners(mustBuild(t, alg, setB), ks)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			dst := make([]string, 0, 2)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i, k := range ks {
					got, ok := tb.Locate(k)
					if !ok || (got != wantA[i] && got != wantB[i]) {
						t.Errorf("Locate(%q) = %q, want %q or %q", k, got, wantA[i], wantB[i])
						return
					}
					if dst = tb.LocateN(k, 2, dst[:0]); len(dst) != 2 || dst[0] == dst[1] {
						t.Errorf("LocateN(%q) = %v", k, dst)
						return
					}
				}
			}
		})
	}
	for i := range 40 {
		next := setA
		if i%2 == 0 {
			next = setB
		}
		if err := tb.Update(next); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestLookupsDoNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are checked in full runs")
	}
	for _, alg := range append(algorithms(), Default()) {
		tb, err := New(Nodes(ids("node", 16)...), WithAlgorithm(alg))
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]string, 0, 4)
		if a := testing.AllocsPerRun(100, func() { tb.Locate("user:42") }); a != 0 {
			t.Errorf("%v: Locate allocates %v times", alg, a)
		}
		if a := testing.AllocsPerRun(100, func() { dst = tb.LocateN("user:42", 3, dst[:0]) }); a != 0 {
			t.Errorf("%v: LocateN allocates %v times", alg, a)
		}
	}
}

func TestChecksum(t *testing.T) {
	a := mustBuild(t, Default(), Nodes("x", "y", "z"))
	b := mustBuild(t, Default(), Nodes("z", "x", "y"))
	if a.Checksum() != b.Checksum() {
		t.Error("the same set in another order has another checksum")
	}
	for _, other := range []*Snapshot{
		mustBuild(t, Default(), Nodes("x", "y")),
		mustBuild(t, Default(), []Node{{"x", 1}, {"y", 1}, {"z", 2}}),
		mustBuild(t, Stratified(17), Nodes("x", "y", "z")),
		mustBuild(t, Default(), Nodes("x", "yz")),
	} {
		if other.Checksum() == a.Checksum() {
			t.Errorf("%v %v: same checksum as %v", other.Algorithm(), other.Nodes(), a.Nodes())
		}
	}
}

func TestDiff(t *testing.T) {
	before := Nodes(ids("node", 12)...)
	after := append(slices.Delete(slices.Clone(before), 3, 4), Node{"new", 2})
	for _, pair := range [][2]Algorithm{
		{Stratified(10), Stratified(10)},
		{Ring(40), Ring(40)},
		{Maglev(4099), Maglev(4099)},
		{Bounded(1.25, 1024), Bounded(1.25, 1024)},
		{Ring(40), Stratified(12)}, // a migration between algorithms
	} {
		from, to := mustBuild(t, pair[0], before), mustBuild(t, pair[1], after)
		mv, err := Diff(from, to)
		if err != nil {
			t.Fatalf("%v → %v: %v", pair[0], pair[1], err)
		}
		// Every key hash inside a move changes from From to To; every key
		// outside all moves keeps its owner.
		for _, k := range keys(5000) {
			h := KeyHash(k)
			a, _ := from.Locate(k)
			b, _ := to.Locate(k)
			i, found := slices.BinarySearchFunc(mv.Moves, h, func(m Move, h uint64) int {
				switch {
				case m.Last < h:
					return -1
				case m.First > h:
					return 1
				}
				return 0
			})
			if found != (a != b) || (found && (mv.Moves[i].From != a || mv.Moves[i].To != b)) {
				t.Fatalf("%v → %v: key %q (%x) %q → %q, moves say found=%v", pair[0], pair[1], k, h, a, b, found)
			}
		}
		if f := mv.Fraction(); f <= 0 || f >= 1 {
			t.Errorf("%v → %v: fraction %v", pair[0], pair[1], f)
		}
	}
	same := mustBuild(t, Default(), before)
	if mv, err := Diff(same, same); err != nil || len(mv.Moves) != 0 {
		t.Errorf("Diff of a snapshot with itself: %v, %v", mv, err)
	}
	if mv, err := Diff(nil, same); err != nil || mv.Fraction() != 1 || mv.Moves[0].From != "" {
		t.Errorf("Diff from nothing: %v, %v", mv, err)
	}
	for _, alg := range []Algorithm{Rendezvous(), Jump()} {
		if _, err := Diff(same, mustBuild(t, alg, before)); !errors.Is(err, ErrNoRanges) {
			t.Errorf("%v: err = %v, want ErrNoRanges", alg, err)
		}
	}
}

func TestNaturalCompare(t *testing.T) {
	ordered := []string{"", "a", "a0", "a00", "a01", "a1", "a2", "a10", "a10b", "a10c", "b", "shard-2", "shard-10", "shard-100"}
	for i := range ordered {
		for j := range ordered {
			got := naturalCompare(ordered[i], ordered[j])
			if (got < 0) != (i < j) || (got == 0) != (i == j) {
				t.Errorf("naturalCompare(%q, %q) = %d", ordered[i], ordered[j], got)
			}
		}
	}
}

func TestNegLog2(t *testing.T) {
	prev := negLog2(1)
	for _, u := range []uint64{1, 2, 3, 1000, 1 << 32, 1<<63 - 1, 1 << 63, 3 << 62, math.MaxUint64 - 1, math.MaxUint64} {
		got := float64(negLog2(u)) / (1 << 32)
		want := 64 - math.Log2(float64(u))
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("negLog2(%d) = %v, want %v", u, got, want)
		}
		if negLog2(u) > prev {
			t.Errorf("negLog2 rises at %d", u)
		}
		prev = negLog2(u)
	}
}

func TestPermutationIsABijection(t *testing.T) {
	for bits := uint(8); bits <= 13; bits++ {
		e := newEngine(bits)
		k := nodeKeys(KeyHash("node"))
		seen := make([]bool, e.m)
		for x := uint32(0); uint64(x) < e.m; x++ {
			v := e.fwd(x, &k)
			if uint64(v) >= e.m || seen[v] {
				t.Fatalf("bits %d: fwd(%d) = %d repeats or leaves the range", bits, x, v)
			}
			seen[v] = true
			var back [1]uint32
			if e.invAll(&k, []uint32{v}, back[:]); back[0] != x {
				t.Fatalf("bits %d: invAll(fwd(%d)) = %d", bits, x, back[0])
			}
		}
	}
}

func TestFind16(t *testing.T) {
	xs := make([]uint16, 1003)
	for i := range xs {
		xs[i] = uint16(i * 7 % 13)
	}
	xs[5], xs[1002] = 0xFFFF, 0xFFFF
	for _, x := range []uint16{0, 1, 12, 0xFFFF, 0x7FFF, 0x8000} {
		var want []uint32
		for i, v := range xs {
			if v == x {
				want = append(want, uint32(i))
			}
		}
		if got := find16(xs, x, nil); !slices.Equal(got, want) {
			t.Errorf("find16(%#x) = %v, want %v", x, got, want)
		}
	}
}

func TestZeroValues(t *testing.T) {
	var alg Algorithm
	if alg.withDefaults() != Default() || alg.String() != Default().String() {
		t.Errorf("the zero Algorithm is %v, want %v", alg.withDefaults(), Default())
	}
	if _, err := Build(Stratified(0), nil); !errors.Is(err, ErrInvalidAlgorithm) {
		t.Errorf("Stratified(0): %v, want ErrInvalidAlgorithm", err)
	}
	var s Snapshot
	if _, ok := s.Locate("k"); ok || s.Len() != 0 || s.LocateN("k", 2, nil) != nil || s.Nodes() != nil {
		t.Error("a zero Snapshot is not empty")
	}
	if _, err := Diff(&s, mustBuild(t, Default(), Nodes("a"))); err != nil {
		t.Errorf("Diff from a zero Snapshot: %v", err)
	}
	next, err := s.With(Nodes("a", "b"))
	if err != nil || next.Algorithm() != Default() || next.Len() != 2 {
		t.Errorf("zero Snapshot With: %v, %v", next, err)
	}
}

func TestRemoveErrors(t *testing.T) {
	tb, err := New(Nodes("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	var ne *NodeError
	for _, ids := range [][]string{{"a", "zz"}, {"a", "a"}} {
		if err := tb.Remove(ids...); !errors.Is(err, ErrUnknownNode) || !errors.As(err, &ne) || ne.Index != 1 {
			t.Errorf("Remove(%q): %v, want ErrUnknownNode for index 1", ids, err)
		}
	}
	if tb.Len() != 2 {
		t.Errorf("failed removals left %d nodes", tb.Len())
	}
}

func TestJumpErrorNamesTheCallersNode(t *testing.T) {
	_, err := Build(Jump(), []Node{{"b", 1}, {"a", 2}})
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Index != 1 || ne.ID != "a" {
		t.Fatalf("error %v: want a *NodeError for index 1, ID a", err)
	}
}
