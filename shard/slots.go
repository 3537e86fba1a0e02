package shard

import (
	"slices"
	"strings"
)

// none marks an unassigned slot while a table is being filled. MaxNodes
// keeps it out of the range of node indices.
const none = 0xFFFF

// applyFloor gives every node that won no slot one slot, taken from a node
// that holds at least two, so that no weight, however small, means a zero
// share. Each starved node, in ID order, probes slots in its own
// pseudo-random order, which keeps the choice a function of the node set
// and the winners, whatever the numbering. ids, keys and counts (the slots
// each node holds) are indexed like the slots' values; empty IDs are free
// indices. It returns slots itself
// when no node is starved, else a modified copy; it needs len(slots) >=
// len(keys).
func applyFloor(slots []uint16, ids []string, keys []uint64, counts []int) []uint16 {
	var starved []int
	for i, c := range counts {
		if c == 0 && ids[i] != "" {
			starved = append(starved, i)
		}
	}
	if len(starved) == 0 {
		return slots
	}
	slices.SortFunc(starved, func(a, b int) int { return strings.Compare(ids[a], ids[b]) })
	counts = slices.Clone(counts)
	out := slots
	m := uint64(len(slots))
	for _, i := range starved {
		k := keys[i]
		if len(out) > 0 && &out[0] == &slots[0] {
			out = slices.Clone(slots)
		}
		// Some node holds two slots while one holds none, so the linear
		// scan after the probes always ends.
		s := slotOf(mix(k), m)
		for j := uint64(1); counts[out[s]] < 2; j++ {
			if j <= 64 {
				s = slotOf(mix(k+j*golden), m)
			} else {
				s = (s + 1) % m
			}
		}
		counts[out[s]]--
		out[s] = uint16(i)
		counts[i] = 1
	}
	return out
}

// appendRanked appends the IDs of the n best candidates in rendezvous order,
// leaving out index skip (-1 for none) and free indices (empty IDs). score
// must return node i's candidate for the key at hand. It makes n passes over the nodes rather
// than keeping a heap so that it needs no memory: each pass takes the best
// candidate ranked below the previous pick.
func appendRanked(ids []string, uniform bool, score func(i int) cand, n, skip int, dst []string) []string {
	var prev cand
	for k := 0; k < n; k++ {
		best, found := cand{}, false
		for i, id := range ids {
			if i == skip || id == "" {
				continue
			}
			c := score(i)
			if k > 0 && !better(prev, c, uniform, ids) {
				continue
			}
			if !found || better(c, best, uniform, ids) {
				best, found = c, true
			}
		}
		if !found {
			break
		}
		dst = append(dst, ids[best.i])
		prev = best
	}
	return dst
}
