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
	filled := uint64(0)
	for turn := 1; filled < size; turn++ {
		for i := 0; i < n && filled < size; i++ {
			if float64(count[i]) >= float64(turn)*rel[i] {
				continue
			}
			c := (offset[i] + next[i]*skip[i]) % size
			for table[c] != none {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % size
			}
			table[c] = uint16(i)
			next[i]++
			count[i]++
			filled++
		}
	}
	mg.slots = table
	s.slots = table
	return nil
}

func (mg *maglev) owner(h uint64) int { return int(mg.slots[slotOf(h, uint64(len(mg.slots)))]) }

// appendOwners takes the owner of the key's entry, then the owners of the
// entries after it, as a ring over the table.
func (mg *maglev) appendOwners(h uint64, n int, dst []string) []string {
	return ringWalk(mg.mem.ids, mg.slots, int(slotOf(h, uint64(len(mg.slots)))), -1, n, dst)
}

func (mg *maglev) steps() ([]step, bool) { return tableSteps(mg.slots), true }
