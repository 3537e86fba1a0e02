package shard

import (
	"fmt"
	"slices"
)

// maglev is a Maglev lookup table. Each node walks its own permutation of
// the table, (offset + j·skip) mod size, and the nodes take turns claiming
// their next free entry; a node of relative weight r takes a turn in round
// t only while it holds fewer than r·t entries, so every node claims one
// entry in the first round whatever its weight.
type maglev struct {
	mem   *members
	slots []uint16
}

func buildMaglev(s *Snapshot) error {
	ms := s.mem
	size := uint64(s.alg.size)
	n := len(ms.ids)
	if uint64(n) > size {
		return fmt.Errorf("%w: %d nodes for a Maglev table of %d entries", ErrTooManyNodes, n, size)
	}
	mg := &maglev{mem: ms}
	s.impl = mg
	if n == 0 {
		return nil
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	count := make([]int, n)
	rel := make([]float64, n)
	wmax := slices.Max(ms.w)
	for i, k := range ms.keys {
		offset[i] = mix(k) % size
		skip[i] = mix(k^0x510e527fade682d1)%(size-1) + 1
		rel[i] = ms.w[i] / wmax
	}
	table := make([]uint16, size)
	for i := range table {
		table[i] = none
	}
	// size is prime and 0 < skip < size, so each walk visits every entry.
	claim := func(i int) {
		c := (offset[i] + next[i]*skip[i]) % size
		for table[c] != none {
			next[i]++
			c = (offset[i] + next[i]*skip[i]) % size
		}
		table[c] = uint16(i)
		next[i]++
		count[i]++
	}
	// Nodes claim in order of (round, node). A loop over rounds and nodes
	// visits every node every round, which costs size·n/Σrel; when light
	// nodes make that large, a queue serves only the nodes whose turn it
	// is, in the same order.
	if sum(rel) >= float64(n)/8 {
		filled := uint64(0)
		for round := 1; filled < size; round++ {
			for i := 0; i < n && filled < size; i++ {
				if float64(count[i]) < float64(round)*rel[i] {
					claim(i)
					filled++
				}
			}
		}
	} else {
		turns := &turnQueue{}
		for i := range n {
			turns.push(turn{1, i}) // everyone claims in the first round
		}
		for filled := uint64(0); filled < size; filled++ {
			t := turns.pop()
			claim(t.node)
			if r, ok := nextRound(count[t.node], rel[t.node], t.round, size); ok {
				turns.push(turn{r, t.node})
			}
		}
	}
	mg.slots = table
	s.slots = table
	return nil
}

// nextRound returns the first round after last in which a node of
// relative weight rel that holds count entries takes a turn: the first
// round r with count < r·rel, tested exactly as written so that rounding
// cannot reorder turns. It reports false past the size-th round, by which
// the table is full.
func nextRound(count int, rel float64, last int, size uint64) (int, bool) {
	est := float64(count)/rel + 1
	if est > float64(size)+2 {
		return 0, false
	}
	r := max(last+1, int(est)-1)
	for !(float64(count) < float64(r)*rel) {
		r++
	}
	return r, true
}

// turn is a node's next round to claim an entry.
type turn struct{ round, node int }

// turnQueue is a binary min-heap of turns by round, then node.
type turnQueue []turn

func (q *turnQueue) less(i, j int) bool {
	a, b := (*q)[i], (*q)[j]
	return a.round < b.round || (a.round == b.round && a.node < b.node)
}

func (q *turnQueue) push(t turn) {
	*q = append(*q, t)
	for i := len(*q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		(*q)[i], (*q)[p] = (*q)[p], (*q)[i]
		i = p
	}
}

func (q *turnQueue) pop() turn {
	h := *q
	top := h[0]
	h[0] = h[len(h)-1]
	h = h[:len(h)-1]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && (h[l].round < h[m].round || (h[l].round == h[m].round && h[l].node < h[m].node)) {
			m = l
		}
		if r < len(h) && (h[r].round < h[m].round || (h[r].round == h[m].round && h[r].node < h[m].node)) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

// appendOwners takes the owner of the key's entry, then the owners of the
// entries after it, as a ring over the table.
func (mg *maglev) appendOwners(h uint64, n int, dst []string) []string {
	return ringWalk(mg.mem.ids, mg.slots, int(slotOf(h, uint64(len(mg.slots)))), -1, n, dst)
}

func (mg *maglev) steps() ([]step, bool) { return tableSteps(mg.slots), true }
