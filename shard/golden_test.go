package shard

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden.txt")

// goldenAlgorithms are pinned at their default parameters, as users get
// them.
func goldenAlgorithms() []Algorithm {
	return []Algorithm{
		Default(), Stratified(12), Ring(DefaultVnodes), Rendezvous(),
		Maglev(DefaultMaglevSize), Jump(), Bounded(DefaultLoad, DefaultPartitions),
	}
}

// goldenSets are a small set, which stratified tables build by scoring
// every pair, and a large weighted one, which they build by sweeping.
func goldenSets(alg Algorithm) [][]Node {
	small := Nodes(ids("node", 10)...)
	large := Nodes(ids("member", 100)...)
	if weighted(alg) {
		small[2].Weight, small[5].Weight, small[7].Weight = 2, 0.5, 3
		for i := range large {
			large[i].Weight = []float64{1, 2, 0.5, 3, 1e-3}[i%5]
		}
	}
	return [][]Node{small, large}
}

// goldenLines renders the placement of a fixed key set by every algorithm
// on each golden set: the first three owners of 100 keys (20 for the large
// set), and a digest of the owners of 100,000.
func goldenLines(t *testing.T) []string {
	var out []string
	for _, alg := range goldenAlgorithms() {
		for set, nodes := range goldenSets(alg) {
			s := mustBuild(t, alg, nodes)
			shown := []int{100, 20}[set]
			for i := range shown {
				k := fmt.Sprintf("key-%d", i)
				out = append(out, fmt.Sprintf("%s\t%d\t%s\t%s", alg, len(nodes), k, strings.Join(s.LocateN(k, 3, nil), ",")))
			}
			d := xxhash.New()
			for i := range 100000 {
				id, _ := s.Locate(fmt.Sprintf("key-%d", i))
				_, _ = d.WriteString(id + "\n")
			}
			out = append(out, fmt.Sprintf("%s\t%d\tdigest-100000\t%016x", alg, len(nodes), d.Sum64()))
		}
	}
	return out
}

// TestGolden pins the owners of a fixed key set for every algorithm, so a
// change that would silently move users' data between releases, or place
// keys differently on another platform, fails here. Changing placement on
// purpose means a new algorithm version, not a new golden file.
func TestGolden(t *testing.T) {
	got := goldenLines(t)
	const path = "testdata/golden.txt"
	if *updateGolden {
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		want = append(want, sc.Text())
	}
	if len(want) != len(got) {
		t.Fatalf("%d golden lines, %d computed", len(want), len(got))
	}
	bad := 0
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("placement changed:\n want %s\n  got %s", want[i], got[i])
			if bad++; bad == 10 {
				t.Fatal("too many changes")
			}
		}
	}
}
