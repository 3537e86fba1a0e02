package shard

import "slices"

// Changing a stratified table one node at a time.

// add enters node n into the tables: it takes every slot where it beats
// the winner (who becomes the runner-up) and becomes the runner-up where it
// beats a known one. Only n's levels that can score <= t.bound can do
// either outside t.high, so only those are looked at, and the slots of
// t.high are checked one by one. Those levels' slots are scattered over the
// tables; visiting them in slot order, after a counting sort by slot range,
// turns cache misses into streaming reads.
func (e engine) add(set *hrwSet, t *tables, n Node) {
	p := set.put(n)
	if p == len(t.counts) {
		t.counts = append(t.counts, 0)
	}
	withE := !set.uniform
	lo := e.cut(set, p, e.m, t.bound)
	offers := make([]offer, 0, e.m-lo) // s: slot, x: p's level there
	var xs, ss [batch]uint32
	for v := lo; v < e.m; v += batch {
		lv := count(xs[:min(batch, e.m-v)], uint32(v))
		e.invAll(&set.rk[p], lv, ss[:])
		for j, s := range ss[:len(lv)] {
			offers = append(offers, offer{x: uint64(lv[j]), s: s})
		}
	}
	offers = sortOffers(offers, make([]offer, len(offers)), e.bits)
	// Load every slot's winner and runner-up first: the loads are
	// independent, so the CPU overlaps their cache misses, which the
	// comparisons below would otherwise wait for one at a time.
	held := make([][2]uint16, len(offers))
	for k, o := range offers {
		held[k] = [2]uint16{t.winner[o.s], t.runner[o.s]}
	}
	for k, o := range offers {
		s, w, r := uint64(o.s), int(held[k][0]), held[k][1]
		if w != p && e.beats(set, s, o.x, p, w, withE) {
			e.takeOver(set, t, s, p, w)
		} else if r != none && e.beats(set, s, o.x, p, int(r), withE) {
			t.runner[s] = uint16(p)
		}
	}
	for _, s := range t.high { // their runner-ups are unknown: winners only
		if w := int(t.winner[s]); w != p && e.beats(set, uint64(s), uint64(e.fwd(s, &set.rk[p])), p, w, withE) {
			e.takeOver(set, t, uint64(s), p, w)
		}
	}
	t.high = e.stillHigh(set, t)
}

// beats reports whether node p, at level v on slot s, outranks node o
// there. Unweighted, levels decide unless they are equal, which saves
// computing the low bits of both scores.
func (e engine) beats(set *hrwSet, s, v uint64, p, o int, withE bool) bool {
	vo := uint64(e.fwd(uint32(s), &set.rk[o]))
	if !withE && v != vo {
		return v > vo
	}
	return better(e.scoreAt(set, v, p, withE), e.scoreAt(set, vo, o, withE), set.uniform, set.ids)
}

// takeOver makes node p the winner of slot s in place of w, who becomes
// the runner-up if it scores within the bound.
func (e engine) takeOver(set *hrwSet, t *tables, s uint64, p, w int) {
	t.runner[s] = none
	if weigh(e.raw(set, uint64(e.fwd(uint32(s), &set.rk[w])), w), set.w[w]) <= t.bound {
		t.runner[s] = uint16(w)
	}
	t.winner[s] = uint16(p)
	t.counts[w]--
	t.counts[p]++
}

// stillHigh returns, in a new slice without repeats, the slots of t.high
// whose winner still scores above t.bound.
func (e engine) stillHigh(set *hrwSet, t *tables) []uint32 {
	var out []uint32
	for _, s := range t.high {
		w := int(t.winner[s])
		if weigh(e.raw(set, uint64(e.fwd(s, &set.rk[w])), w), set.w[w]) > t.bound {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// remove takes the node at index q out of set and the tables. Where q won
// a slot its runner-up takes over and the slot's runner-up becomes unknown;
// where q was the runner-up, it becomes unknown. Only the slots q won
// without a known runner-up are scored again, against every other node;
// their new winners join t.high if they score above the bound, and their
// runner-ups are kept only if they score within it. When scoring those
// slots would cost more than a scratch build of the rest (q held most of
// the table, say), remove stops, reports false and leaves the tables half
// changed: the caller builds from scratch instead.
func (e engine) remove(set *hrwSet, t *tables, q int) bool {
	set.free(q)
	won := find16(t.winner, uint16(q), nil)
	for _, s := range find16(t.runner, uint16(q), nil) {
		t.runner[s] = none
	}
	var lost []uint32
	for _, s := range won {
		if r := t.runner[s]; r != none {
			t.winner[s], t.runner[s] = r, none
			t.counts[r]++
		} else {
			lost = append(lost, s)
		}
	}
	t.counts[q] = 0
	if 8*float64(len(lost))*float64(set.live) > e.scratchCost(set.live) {
		return false
	}
	best := e.rank2(set, lost)
	for k, s := range lost {
		b := best[k]
		t.winner[s] = uint16(b[0].i)
		t.counts[b[0].i]++
		if weigh(b[0].u, set.w[b[0].i]) > t.bound {
			t.high = append(t.high, s)
		}
		t.runner[s] = none
		if b[1].i >= 0 && weigh(b[1].u, set.w[b[1].i]) <= t.bound {
			t.runner[s] = uint16(b[1].i)
		}
	}
	t.high = e.stillHigh(set, t)
	return true
}

// rank2 scores every live node on each of the slots and returns each
// slot's best two (the second with index -1 when only one node is live).
// It goes node by node over the slots, which keeps the working set in cache
// and the scoring loop free of dependencies.
func (e engine) rank2(set *hrwSet, slots []uint32) [][2]cand {
	best := make([][2]cand, len(slots))
	for k := range best {
		best[k][0].i, best[k][1].i = -1, -1
	}
	lv := make([]uint32, len(slots))
	for i, id := range set.ids {
		if id == "" {
			continue
		}
		e.fwdAll(&set.rk[i], slots, lv)
		for k := range slots {
			b := &best[k]
			v := uint64(lv[k])
			if set.uniform && b[1].i >= 0 && v < b[1].u>>(64-e.bits) {
				continue // a lower level cannot place, whatever its low bits
			}
			c := e.scoreAt(set, v, i, !set.uniform)
			switch {
			case b[0].i < 0 || better(c, b[0], set.uniform, set.ids):
				b[0], b[1] = c, b[0]
			case b[1].i < 0 || better(c, b[1], set.uniform, set.ids):
				b[1] = c
			}
		}
	}
	return best
}
