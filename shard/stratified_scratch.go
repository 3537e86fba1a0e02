package shard

import (
	"math"
	"slices"
)

// Building a stratified table from scratch.

// pack and unpack hold an offer in one word: the score in the high bits,
// and ^index in the tie bits so that, between equal scores, the lower index
// (the smaller ID) is the larger word. A packed word is never zero, so zero
// means no offer yet.
func pack(u uint64, i int) uint64 { return u | uint64(none-i) }

func unpack(x uint64) cand {
	return cand{u: x &^ (1<<tieBits - 1), i: none - int(x&(1<<tieBits-1))}
}

// offerBeats reports whether packed offer x beats packed offer y (nonzero).
func offerBeats(set *hrwSet, x, y uint64) bool {
	if set.uniform {
		return x > y
	}
	a, b := unpack(x), unpack(y)
	a.e, b.e = weigh(a.u, set.w[a.i]), weigh(b.u, set.w[b.i])
	return better(a, b, false, set.ids)
}

// offerE is the weighted score of a packed offer.
func offerE(set *hrwSet, x uint64) float64 {
	c := unpack(x)
	return weigh(c.u, set.w[c.i])
}

// keep2 files offer x into a slot's best two.
func keep2(set *hrwSet, b *[2]uint64, x uint64) {
	if set.uniform { // the larger word is the better offer
		if x > b[0] {
			b[0], b[1] = x, b[0]
		} else if x > b[1] {
			b[1] = x
		}
		return
	}
	switch {
	case b[0] == 0 || offerBeats(set, x, b[0]):
		b[0], b[1] = x, b[0]
	case b[1] == 0 || offerBeats(set, x, b[1]):
		b[1] = x
	}
}

// boundQuantile is the share of runner-ups a scratch build keeps known;
// the rest, and the winners above the bound, are handled one by one.
const boundQuantile = 0.999

// scratch builds the tables for set, which has no free indices, by
// whichever of two exact methods is cheaper for its size: scoring every
// pair, or sweeping.
func (e engine) scratch(set *hrwSet) tables {
	n := len(set.ids)
	if n == 0 {
		return tables{}
	}
	var top2 [][2]uint64
	settledAt := math.Inf(1) // every offer is known when scoring all pairs
	if e.directCost(n) <= e.sweepCost(n) {
		top2 = e.direct(set)
	} else {
		top2, settledAt = e.sweep(set)
	}
	t := tables{winner: make([]uint16, e.m), runner: make([]uint16, e.m), counts: make([]int, n)}
	t.bound, t.weight = e.quantileBound(set, top2, settledAt), sum(set.w)
	for s, b := range top2 {
		w := unpack(b[0]).i
		t.winner[s], t.runner[s] = uint16(w), none
		t.counts[w]++
		if offerE(set, b[0]) > t.bound {
			t.high = append(t.high, uint32(s))
		}
		// A second offer is the true runner-up only if it settled: the
		// sweep stops once the winners have.
		if b[1] != 0 && offerE(set, b[1]) <= t.bound {
			t.runner[s] = uint16(unpack(b[1]).i)
		}
	}
	return t
}

// quantileBound estimates the boundQuantile quantile of the runner-ups'
// scores (of the winners' with one node) from a sample of slots, capped at
// settledAt. Any value is correct; this one keeps additions cheap.
func (e engine) quantileBound(set *hrwSet, top2 [][2]uint64, settledAt float64) float64 {
	which := min(len(set.ids), 2) - 1
	var sample []float64
	for s := 0; s < len(top2); s += max(1, len(top2)>>13) { // about 8192 samples
		if x := top2[s][which]; x != 0 {
			sample = append(sample, offerE(set, x))
		}
	}
	if len(sample) == 0 {
		return 0
	}
	slices.Sort(sample)
	return min(sample[int(boundQuantile*float64(len(sample)-1))], settledAt)
}

// directCost, sweepCost and scratchCost estimate scratch builds of n nodes
// in nanoseconds on a current CPU: scoring every pair is cheap per pair and
// cache-friendly; the sweep offers about a t·ln2 share of the pairs, where
// t ≈ 1.2·bits/n is where the winners settle, at several times the cost.
func (e engine) directCost(n int) float64 { return 6 * float64(n) * float64(e.m) }

func (e engine) sweepCost(n int) float64 {
	share := min(1, 1.2*float64(e.bits)*math.Ln2/float64(n))
	return 20 * share * float64(n) * float64(e.m)
}

func (e engine) scratchCost(n int) float64 { return min(e.directCost(n), e.sweepCost(n)) }

// direct scores every node on every slot, a block of slots at a time so
// that the block stays in cache while each node scores it.
func (e engine) direct(set *hrwSet) [][2]uint64 {
	top2 := make([][2]uint64, e.m)
	shift := 64 - e.bits
	var xs, lv [batch]uint32
	for lo := 0; lo < len(top2); lo += batch {
		blk := top2[lo:min(lo+batch, len(top2))]
		slots := count(xs[:len(blk)], uint32(lo))
		for i := range set.ids {
			e.fwdAll(&set.rk[i], slots, lv[:])
			for k, v := range lv[:len(blk)] {
				if set.uniform && uint64(v) < blk[k][1]>>shift {
					continue // below the second offer's level: cannot place
				}
				keep2(set, &blk[k], pack(e.raw(set, uint64(v), i), i))
			}
		}
	}
	return top2
}

// sweep raises a threshold t; in each round every node offers its slots at
// the levels that can score <= t, in one pass from its best level down, and
// each slot keeps its two best offers. Once every slot's best offer scores
// <= t, every pair that could beat it has been offered, so the winners are
// exact, and so is every second offer that scores <= t; sweep returns that
// t. Offers land on random slots, so they are buffered and applied in slot
// order (see sortOffers): the table stays out of cache, but each range of
// it is visited once per buffer.
func (e engine) sweep(set *hrwSet) ([][2]uint64, float64) {
	n := len(set.ids)
	top2 := make([][2]uint64, e.m)
	cursor := make([]uint64, n)
	for i := range cursor {
		cursor[i] = e.m
	}
	// The largest winning score is about bits/(total weight), in units of
	// 2^32: start below it so that the first rounds offer little.
	t := 0.5 * float64(e.bits) * (1 << 32) / sum(set.w)
	var xs, ss [batch]uint32
	offers, sorted := make([]offer, 0, offerBuffer), make([]offer, offerBuffer)
	flush := func() {
		for _, o := range sortOffers(offers, sorted, e.bits) {
			keep2(set, &top2[o.s], o.x)
		}
		offers = offers[:0]
	}
	for {
		for i := range cursor {
			lo := e.cut(set, i, cursor[i], t)
			for v := lo; v < cursor[i]; v += batch {
				lv := count(xs[:min(batch, cursor[i]-v)], uint32(v))
				e.invAll(&set.rk[i], lv, ss[:])
				for j, s := range ss[:len(lv)] {
					offers = append(offers, offer{x: pack(e.raw(set, uint64(lv[j]), i), i), s: s})
				}
				if len(offers) > offerBuffer-batch {
					flush()
				}
			}
			cursor[i] = lo
		}
		flush()
		if e.settled(set, top2, t) {
			return top2, t
		}
		t *= 1.25
	}
}

// offer is a word on offer for slot s: a packed score, or a level.
type offer struct {
	x uint64
	s uint32
}

// offerBuffer is how many offers sweep collects before it applies them.
const offerBuffer = 1 << 16

// sortOffers orders offers by the top bits of their slot with one counting
// sort into out, so that consecutive offers touch nearby table entries.
func sortOffers(offers, out []offer, bits uint) []offer {
	const rangeBits = 10
	shift := bits - min(bits, rangeBits)
	var start [1<<rangeBits + 1]int
	for _, o := range offers {
		start[o.s>>shift+1]++
	}
	for r := 1; r < len(start); r++ {
		start[r] += start[r-1]
	}
	out = out[:len(offers)]
	for _, o := range offers {
		r := o.s >> shift
		out[start[r]] = o
		start[r]++
	}
	return out
}

// settled reports whether every slot's best offer scores <= t.
func (e engine) settled(set *hrwSet, top2 [][2]uint64, t float64) bool {
	if set.uniform {
		// Scores are monotone in u here: compare words, not logarithms.
		floor := minU(set.w[0], t)
		for _, b := range top2 {
			if b[0] == 0 || b[0]&^(1<<tieBits-1) < floor {
				return false
			}
		}
		return true
	}
	for _, b := range top2 {
		if b[0] == 0 || offerE(set, b[0]) > t {
			return false
		}
	}
	return true
}
