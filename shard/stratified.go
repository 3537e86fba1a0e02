package shard

import (
	"fmt"
	"math"
	"slices"
	"sync"
)

// The stratified rendezvous table.
//
// Keys map to 2^bits slots by hash range. Slot s belongs to the node that
// wins weighted rendezvous hashing on it. Node i scores slot s with
//
//	u = P_i(s)<<(64-bits) | low bits of the last Feistel round
//
// where P_i is a keyed Feistel permutation of the slots: the high bits
// ("level") make every node hold exactly one slot at every level, the low
// bits break ties between nodes at the same level. Weighted, the node with
// the smallest e = -log2(u/2^64)/weight wins (the exponential race);
// unweighted, the largest u. Because P_i can be inverted, a build can walk
// each node's slots from its best level down and stop once no remaining
// pair can win, instead of scoring every (slot, node) pair.
//
// stratified_score.go holds the permutation and the scores,
// stratified_scratch.go the builds from scratch, stratified_update.go the
// one-node changes; this file ties them to a Snapshot.

// maxIncremental bounds how many node changes With applies one by one;
// past it, or past the cost of a scratch build (see cheaperThanScratch), it
// rebuilds from scratch.
const maxIncremental = 64

// tables is what a stratified table keeps between builds, indexed by the
// set's stable node numbers.
type tables struct {
	winner []uint16 // rendezvous winner of each slot, before applyFloor
	runner []uint16 // second-best node of each slot, or none when unknown
	counts []int    // slots won by each node
	// bound limits how far down an addition must look. No known runner-up
	// scores above it, and every slot whose winner scores above it is in
	// high. It is a high quantile of the runner-ups' scores at the last
	// scratch build, when the nodes weighed weight in all, rather than
	// their maximum: a few extreme slots would otherwise set it for all.
	bound  float64
	high   []uint32
	weight float64
}

// healthy reports whether tables that one-node changes have carried far
// from their last scratch build still keep changes cheap. Scores scale
// with the inverse of the total weight, so once it has moved by half the
// bound is off by as much: additions look at too many levels, or too many
// winners fall above the bound into high. Unknown runner-ups need no
// limit: even if all were unknown, a removal would rank m/n slots against
// n nodes, a few milliseconds, and remove itself gives up on worse.
func (t *tables) healthy(m uint64, weight float64) bool {
	return weight <= 1.5*t.weight && weight >= t.weight/1.5 && uint64(len(t.high)) <= m/512
}

// strat is the placement of a stratified table. Its tables.runner is nil:
// the runner-up table lives in spare until a derived snapshot takes it.
type strat struct {
	engine
	tables
	set   *hrwSet
	slots []uint16 // what lookups read: winner, unless applyFloor moved some
	spare spare
}

// spare holds a snapshot's runner-up table for the first snapshot derived
// from it, which takes it over instead of copying it: a chain of changes,
// as a Table makes, then copies only the winner table, half the memory.
// Lookups never read runner-ups, so no reader can see the table change
// hands. A later derivation from the same snapshot finds it gone and starts
// with every runner-up unknown: correct, but slower to remove nodes from.
type spare struct {
	mu     sync.Mutex
	runner []uint16
}

// take hands the runner-up table over, or returns nil if it is gone.
func (sp *spare) take() []uint16 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	r := sp.runner
	sp.runner = nil
	return r
}

func buildStratified(s *Snapshot, prev *Snapshot) error {
	e := newEngine(uint(s.alg.size))
	ms := s.mem
	if uint64(len(ms.ids)) > e.m {
		return fmt.Errorf("%w: %d nodes for %d slots; use more slot bits", ErrTooManyNodes, len(ms.ids), e.m)
	}
	st := &strat{engine: e}
	if p, ok := prevStrat(prev); ok {
		removed, added, small := changes(prev.mem.nodes, ms.nodes)
		if small && e.cheaperThanScratch(p, removed, added) {
			if set, t, ok := e.incremental(p, removed, added); ok && t.healthy(e.m, sum(ms.w)) {
				st.set, st.tables = set, t
			}
		}
	}
	if st.set == nil {
		st.set = newHRWSet(ms)
		st.tables = e.scratch(st.set)
	}
	if st.winner != nil {
		st.slots = applyFloor(st.winner, st.set.ids, st.set.keys, st.counts)
	}
	st.spare.runner, st.runner = st.runner, nil
	s.slots, s.impl, s.names = st.slots, st, st.set.ids
	return nil
}

func sum(w []float64) float64 {
	var s float64
	for _, x := range w {
		s += x
	}
	return s
}

func prevStrat(prev *Snapshot) (*strat, bool) {
	if prev == nil || prev.Len() == 0 {
		return nil, false
	}
	p, ok := prev.impl.(*strat)
	return p, ok
}

// changes lists the IDs that leave the sorted node list old and the nodes
// that join it to reach the sorted list nodes (a weight change is both),
// and whether they are few enough to apply one by one.
func changes(old, nodes []Node) (removed []string, added []Node, small bool) {
	i, j := 0, 0
	for i < len(old) || j < len(nodes) {
		switch {
		case j == len(nodes) || (i < len(old) && old[i].ID < nodes[j].ID):
			removed = append(removed, old[i].ID)
			i++
		case i == len(old) || nodes[j].ID < old[i].ID:
			added = append(added, nodes[j])
			j++
		default:
			if old[i].Weight != nodes[j].Weight {
				removed = append(removed, old[i].ID)
				added = append(added, nodes[j])
			}
			i++
			j++
		}
		if len(removed)+len(added) > maxIncremental {
			return nil, nil, false
		}
	}
	return removed, added, true
}

// cheaperThanScratch estimates, in the units of directCost, whether
// removing and adding nodes one by one to p beats building the final set
// from scratch. A removal scans the tables; the slots of the leaving node
// that lack a runner-up it must also rank, but it counts them exactly
// before it does and gives up if that costs more than starting over (see
// remove), so they are left out here. An addition looks at about ln(m)/n
// of the slots, each a cache miss.
func (e engine) cheaperThanScratch(p *strat, removed []string, added []Node) bool {
	m := float64(e.m)
	n := p.set.live
	cost := 3 * m * float64(len(removed))
	n -= len(removed)
	for range added {
		n++
		cost += 60 * m * min(1, 1.3*float64(e.bits)*math.Ln2/float64(n))
	}
	return cost < e.scratchCost(n)
}

// incremental derives p's tables for p's set less removed plus added by
// applying the changes one node at a time, removals first. The winners
// equal a scratch build's because each step keeps every slot with its
// rendezvous winner among the nodes present; node numbers differ, IDs do
// not. p's placement is left untouched: its tables are copied once, then
// changed in place, except the runner-up table, which is taken over (see
// spare). It reports false when a removal finds a scratch build cheaper.
func (e engine) incremental(p *strat, removed []string, added []Node) (*hrwSet, tables, bool) {
	t := p.tables
	if t.runner = p.spare.take(); t.runner == nil {
		t.runner = make([]uint16, e.m)
		for s := range t.runner {
			t.runner[s] = none
		}
	}
	if len(removed) == 0 && len(added) == 0 {
		return p.set, t, true // nothing changed: share the immutable tables
	}
	set := p.set.clone()
	t.winner = slices.Clone(p.winner)
	t.counts, t.high = slices.Clone(p.counts), slices.Clone(p.high)
	for _, id := range removed {
		if set.live == 1 {
			set, t = newHRWSet(newMembers(nil)), tables{} // the last one leaves
			break
		}
		if !e.remove(set, &t, set.index(id)) {
			return nil, tables{}, false
		}
	}
	for _, n := range added {
		if set.live == 0 {
			set = newHRWSet(newMembers([]Node{n}))
			t = e.scratch(set)
			continue
		}
		e.add(set, &t, n)
	}
	return set, t, true
}

func (st *strat) appendOwners(h uint64, n int, dst []string) []string {
	s := slotOf(h, st.m)
	primary := int(st.slots[s])
	dst = append(dst, st.set.ids[primary])
	if n == 1 {
		return dst
	}
	uniform := st.set.uniform
	score := func(i int) cand { return st.score(st.set, s, i, !uniform) }
	return appendRanked(st.set.ids, uniform, score, n-1, primary, dst)
}

func (st *strat) steps() ([]step, bool) { return tableSteps(st.slots), true }
