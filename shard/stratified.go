package shard

import (
	"fmt"
	"math"
	"slices"
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
// bits break ties between nodes at the same level. Weighted, the node with the smallest
// e = -log2(u/2^64)/weight wins (the exponential race); unweighted, the
// largest u. Because P_i can be inverted, a build can walk each node's
// slots from its best level down and stop once no remaining pair can win,
// instead of scoring every (slot, node) pair.

// maxIncremental bounds how many node changes With applies one by one;
// past it, or past the cost of a scratch build (see cheaperThanScratch), it
// rebuilds from scratch.
const maxIncremental = 64

// hrwSet is the node set of a stratified table, indexed by a stable
// number: a node keeps its index for as long as it stays and a joining node
// takes the lowest free one, so that a membership change touches only the
// slots that change hands. ids[i] == "" marks a free index. A set built
// from scratch has no free indices and numbers nodes in ID order.
type hrwSet struct {
	ids     []string
	keys    []uint64 // KeyHash of each ID
	w       []float64
	rk      []roundKeys // Feistel round keys
	live    int
	uniform bool // every live weight equal
}

func newHRWSet(ms *members) *hrwSet {
	set := &hrwSet{ids: ms.ids, keys: ms.keys, w: ms.w, live: len(ms.ids), uniform: ms.uniform}
	set.rk = make([]roundKeys, len(ms.ids))
	for i, k := range ms.keys {
		set.rk[i] = nodeKeys(k)
	}
	return set
}

// roundKeys holds, for each of the three Feistel rounds, an odd multiplier
// and an offset: round r maps x to the top bits of x·rk[2r] + rk[2r+1], a
// universal hash (Dietzfelbinger's multiply-add-shift). A multiplier of
// its own per node and round matters: with one shared multiplier the
// rounds of all nodes walk the same sequence, and small tables come out
// two to three times less even than chance.
type roundKeys [6]uint64

func nodeKeys(k uint64) (rk roundKeys) {
	for j := range rk {
		rk[j] = mix(k + uint64(j+1)*golden)
	}
	rk[0], rk[2], rk[4] = rk[0]|1, rk[2]|1, rk[4]|1
	return rk
}

func (set *hrwSet) clone() *hrwSet {
	c := *set
	c.ids, c.keys, c.w = slices.Clone(set.ids), slices.Clone(set.keys), slices.Clone(set.w)
	c.rk = slices.Clone(set.rk)
	return &c
}

// index returns the index of id, or -1.
func (set *hrwSet) index(id string) int { return slices.Index(set.ids, id) }

// put adds n at the lowest free index and returns it.
func (set *hrwSet) put(n Node) int {
	k := KeyHash(n.ID)
	rk := nodeKeys(k)
	i := set.index("")
	if i < 0 {
		i = len(set.ids)
		set.ids, set.keys, set.w = append(set.ids, ""), append(set.keys, 0), append(set.w, 0)
		set.rk = append(set.rk, rk)
	}
	set.ids[i], set.keys[i], set.w[i], set.rk[i] = n.ID, k, n.Weight, rk
	set.live++
	set.uniform = allEqual(set.ids, set.w)
	return i
}

// free removes the node at index i.
func (set *hrwSet) free(i int) {
	set.ids[i] = ""
	set.live--
	set.uniform = allEqual(set.ids, set.w)
}

// allEqual reports whether every live node has the same weight.
func allEqual(ids []string, w []float64) bool {
	first := -1
	for i, id := range ids {
		if id == "" {
			continue
		}
		if first < 0 {
			first = i
		} else if w[i] != w[first] {
			return false
		}
	}
	return true
}

// engine holds the table geometry and the keyed permutation.
type engine struct {
	bits uint   // log2 of the slot count
	m    uint64 // slot count
	a, b uint   // the Feistel halves: a = bits/2 high bits, b = bits-a low bits
}

func newEngine(bits uint) engine {
	return engine{bits: bits, m: 1 << bits, a: bits / 2, b: bits - bits/2}
}

// feistel is a three-round Feistel network on the a+b bits of a slot
// number: a bijection of [0, m) for any keys (unbalanced when bits is odd,
// so no value ever leaves the range), inverted by running the rounds
// backwards. Three rounds give slot counts as even as four (measured) for
// less work.
func (e engine) feistel(x uint32, k *roundKeys) uint32 {
	a, b := e.a&15, e.b&15
	l, r := x>>b, x&(1<<b-1)
	l ^= round(r, k[0], k[1], a)
	r ^= round(l, k[2], k[3], b)
	l ^= round(r, k[4], k[5], a)
	return l<<b | r
}

func (e engine) feistelInv(x uint32, k *roundKeys) uint32 {
	a, b := e.a&15, e.b&15
	l, r := x>>b, x&(1<<b-1)
	l ^= round(r, k[4], k[5], a)
	r ^= round(l, k[2], k[3], b)
	l ^= round(r, k[0], k[1], a)
	return l<<b | r
}

// round is the top w bits of x·m + c.
func round(x uint32, m, c uint64, w uint) uint32 {
	return uint32((uint64(x)*m + c) >> ((64 - w) & 63))
}

// fwd is the node's permutation of the slots: slot → level.
func (e engine) fwd(x uint32, k *roundKeys) uint32 { return e.feistel(x, k) }

// inv is its inverse: level → slot.
func (e engine) inv(x uint32, k *roundKeys) uint32 { return e.feistelInv(x, k) }

// fwdAll sets out[j] to the node's level at slot xs[j], and invAll to the
// slot at level xs[j]. They are the hot loops of every build: the rounds
// are written out so that nothing is called per element and consecutive
// elements overlap in the CPU, and the shift counts are masked so that no
// overflow guard is needed.
func (e engine) fwdAll(k *roundKeys, xs, out []uint32) {
	a, b := e.a&15, e.b&15
	sa, sb := (64-a)&63, (64-b)&63
	mask := uint32(1)<<b - 1
	out = out[:len(xs)]
	for j, x := range xs {
		l, r := x>>b, x&mask
		l ^= uint32((uint64(r)*k[0] + k[1]) >> sa)
		r ^= uint32((uint64(l)*k[2] + k[3]) >> sb)
		l ^= uint32((uint64(r)*k[4] + k[5]) >> sa)
		out[j] = l<<b | r
	}
}

func (e engine) invAll(k *roundKeys, xs, out []uint32) {
	a, b := e.a&15, e.b&15
	sa, sb := (64-a)&63, (64-b)&63
	mask := uint32(1)<<b - 1
	out = out[:len(xs)]
	for j, x := range xs {
		l, r := x>>b, x&mask
		l ^= uint32((uint64(r)*k[4] + k[5]) >> sa)
		r ^= uint32((uint64(l)*k[2] + k[3]) >> sb)
		l ^= uint32((uint64(r)*k[0] + k[1]) >> sa)
		out[j] = l<<b | r
	}
}

// batch is how many slots or levels the build loops permute at a time.
const batch = 1024

// count fills xs with lo, lo+1, ...
func count(xs []uint32, lo uint32) []uint32 {
	for j := range xs {
		xs[j] = lo + uint32(j)
	}
	return xs
}

// tieBits low bits of every score are cleared: a table build packs the
// winning node's index there, so that one word per slot holds the winner.
// Clearing them everywhere keeps every comparison in the package the same.
const tieBits = 16

// raw is node i's score u for a slot where its level is v: the level in
// the high bits, then the unused low bits of the last Feistel round's
// product, which break ties between nodes at the same level and make u
// uniform for the weighted race at the cost of one multiply.
func (e engine) raw(set *hrwSet, v uint64, i int) uint64 {
	k := &set.rk[i]
	t := (v&(1<<e.b-1))*k[4] + k[5]
	return (v<<(64-e.bits) | (t<<e.a)>>e.bits) &^ (1<<tieBits - 1)
}

// weigh is the weighted score of u for a node of weight w.
func weigh(u uint64, w float64) float64 { return float64(negLog2(u)) / w }

// scoreAt returns node i's candidate for a slot where its level is v;
// withE computes the weighted score, which only matters when weights differ.
func (e engine) scoreAt(set *hrwSet, v uint64, i int, withE bool) cand {
	c := cand{u: e.raw(set, v, i), i: i}
	if withE {
		c.e = weigh(c.u, set.w[i])
	}
	return c
}

func (e engine) score(set *hrwSet, s uint64, i int, withE bool) cand {
	return e.scoreAt(set, uint64(e.fwd(uint32(s), &set.rk[i])), i, withE)
}

// top is the best (smallest) weighted score node i can have at level v:
// that of the largest u in the level.
func (e engine) top(set *hrwSet, i int, v uint64) float64 {
	u := (v+1)<<(64-e.bits) - 1 // wraps to 2^64-1 for the highest level
	return weigh(u, set.w[i])
}

// cut returns the lowest level v < hi from which node i can still score
// at most t: top is non-increasing in v, so every level in [v, hi) can.
func (e engine) cut(set *hrwSet, i int, hi uint64, t float64) uint64 {
	lo := uint64(0)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if e.top(set, i, mid) <= t {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// minU returns the smallest u whose weighted score at weight w is <= t
// (math.MaxUint64 when even that one scores more).
func minU(w, t float64) uint64 {
	lo, hi := uint64(0), uint64(math.MaxUint64)
	if weigh(hi, w) > t {
		return hi
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if weigh(mid, w) <= t {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

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

// tables is what a stratified table keeps between builds, indexed by the
// set's stable node numbers.
type tables struct {
	winner []uint16 // rendezvous winner of each slot, before applyFloor
	runner []uint16 // second-best node of each slot, or none when unknown
	counts []int    // slots won by each node
	// bound limits how far down an addition must look. No known runner-up
	// scores above it, and every slot whose winner scores above it is in
	// high. It is a high quantile of the runner-ups' scores rather than
	// their maximum: a few extreme slots would otherwise set it for all.
	bound float64
	high  []uint32
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
	t.bound = e.quantileBound(set, top2, settledAt)
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
	for s := 0; s < len(top2); s += 64 {
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

// directCost and sweepCost estimate the two scratch methods in
// nanoseconds on a current CPU: scoring every pair is cheap per pair and
// cache-friendly; the sweep offers about a t·ln2 share of the pairs, where
// t ≈ 1.2·bits/n is where the winners settle, at several times the cost.
func (e engine) directCost(n int) float64 { return 6 * float64(n) * float64(e.m) }

func (e engine) sweepCost(n int) float64 {
	share := min(1, 1.2*float64(e.bits)*math.Ln2/float64(n))
	return 20 * share * float64(n) * float64(e.m)
}

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
				b := &blk[k]
				if set.uniform {
					if uint64(v) < b[1]>>shift {
						continue // a lower level cannot place, whatever its low bits
					}
					x := pack(e.raw(set, uint64(v), i), i)
					if x > b[0] {
						b[0], b[1] = x, b[0]
					} else if x > b[1] {
						b[1] = x
					}
					continue
				}
				keep2(set, b, pack(e.raw(set, uint64(v), i), i))
			}
		}
	}
	return top2
}

// sweep raises a threshold t; in each round every node offers its slots at
// the levels that can score <= t, in one pass from its best level down, and
// each slot keeps its two best offers. Once every slot's second offer (its
// only one, with one node) scores <= t, every pair that could beat either
// has been offered, so both are exact. Offers land on random slots, so they
// are buffered and applied in slot order (see bySlotRange): the table stays
// out of cache, but each range of it is visited once per buffer.
func (e engine) sweep(set *hrwSet) ([][2]uint64, float64) {
	n := len(set.ids)
	top2 := make([][2]uint64, e.m)
	cursor := make([]uint64, n)
	var sumW float64
	for i := range cursor {
		cursor[i] = e.m
		sumW += set.w[i]
	}
	// The largest winning score is about bits/sumW (in units of 2^32):
	// start below it so that the first rounds offer little.
	t := 0.5 * float64(e.bits) * (1 << 32) / sumW
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

// offer is a packed score on offer for slot s.
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
	offers := make([]uint64, 0, e.m-lo) // slot<<32 | level
	var xs, ss [batch]uint32
	for v := lo; v < e.m; v += batch {
		lv := count(xs[:min(batch, e.m-v)], uint32(v))
		e.invAll(&set.rk[p], lv, ss[:])
		for j, s := range ss[:len(lv)] {
			offers = append(offers, uint64(s)<<32|uint64(lv[j]))
		}
	}
	for _, o := range bySlotRange(offers, e.bits) {
		s, v := o>>32, o&(1<<32-1)
		if e.takeOver(set, t, s, v, p, withE) {
			continue
		}
		if r := t.runner[s]; r != none && e.beats(set, s, v, p, int(r), withE) {
			t.runner[s] = uint16(p)
		}
	}
	for _, s := range t.high { // their runner-ups are unknown: winners only
		e.takeOver(set, t, uint64(s), uint64(e.fwd(s, &set.rk[p])), p, withE)
	}
	t.high = e.stillHigh(set, t)
}

// beats reports whether node p, at level v on slot s, outranks node o
// there. Unweighted, levels decide unless they are equal, which saves
// computing the low bits of both scores.
func (e engine) beats(set *hrwSet, s, v uint64, p, o int, withE bool) bool {
	vo := uint64(e.feistel(uint32(s), &set.rk[o]))
	if !withE && v != vo {
		return v > vo
	}
	return better(e.scoreAt(set, v, p, withE), e.scoreAt(set, vo, o, withE), set.uniform, set.ids)
}

// takeOver makes node p, at level v on slot s, the winner if it beats the
// current one, who becomes the runner-up if it scores within the bound.
func (e engine) takeOver(set *hrwSet, t *tables, s, v uint64, p int, withE bool) bool {
	w := int(t.winner[s])
	if w == p || !e.beats(set, s, v, p, w, withE) {
		return false
	}
	t.winner[s], t.runner[s] = uint16(p), none
	if weigh(e.raw(set, uint64(e.fwd(uint32(s), &set.rk[w])), w), set.w[w]) <= t.bound {
		t.runner[s] = uint16(w)
	}
	t.counts[w]--
	t.counts[p]++
	return true
}

// stillHigh returns the slots of t.high whose winner still scores above
// t.bound, in a new slice.
func (e engine) stillHigh(set *hrwSet, t *tables) []uint32 {
	var out []uint32
	for _, s := range t.high {
		w := int(t.winner[s])
		if weigh(e.raw(set, uint64(e.fwd(s, &set.rk[w])), w), set.w[w]) > t.bound {
			out = append(out, s)
		}
	}
	return out
}

// bySlotRange orders offers (slot<<32 | level) by the top bits of the slot,
// so that consecutive offers touch nearby table entries.
func bySlotRange(offers []uint64, bits uint) []uint64 {
	const rangeBits = 10
	shift := 32 + bits - min(bits, rangeBits)
	var start [1<<rangeBits + 1]int
	for _, o := range offers {
		start[o>>shift+1]++
	}
	for r := 1; r < len(start); r++ {
		start[r] += start[r-1]
	}
	out := make([]uint64, len(offers))
	for _, o := range offers {
		r := o >> shift
		out[start[r]] = o
		start[r]++
	}
	return out
}

// remove takes the node at index q out of set and the tables. Where q won
// a slot its runner-up takes over and the slot's runner-up becomes unknown;
// where q was the runner-up, it becomes unknown. Only the slots q won
// without a known runner-up are scored again, against every other node;
// their new winners join t.high if they score above the bound, and their
// runner-ups are kept only if they score within it.
func (e engine) remove(set *hrwSet, t *tables, q int) {
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
	best := e.rank2(set, lost)
	for k, s := range lost {
		b := best[k]
		t.winner[s], t.runner[s] = uint16(b[0].i), none
		t.counts[b[0].i]++
		if weigh(b[0].u, set.w[b[0].i]) > t.bound {
			t.high = append(t.high, s)
		}
		if b[1].i >= 0 && weigh(b[1].u, set.w[b[1].i]) <= t.bound {
			t.runner[s] = uint16(b[1].i)
		}
	}
	t.high = e.stillHigh(set, t)
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

// strat is the placement of a stratified table.
type strat struct {
	engine
	tables
	set   *hrwSet
	slots []uint16 // what lookups read: winner, unless applyFloor moved some
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
		if small && e.cheaperThanScratch(prev.Len(), len(removed), len(added)) {
			st.set, st.tables = e.incremental(p, removed, added)
		}
	}
	if st.set == nil {
		st.set = newHRWSet(ms)
		st.tables = e.scratch(st.set)
	}
	if st.winner != nil {
		st.slots = applyFloor(st.winner, st.set.ids, st.set.keys, st.counts)
	}
	s.slots, s.impl, s.names = st.slots, st, st.set.ids
	return nil
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
// removing and adding nodes one by one to a table of n nodes beats building
// the final set from scratch. A removal scans the tables; an addition looks
// at about ln(m)/n of the slots, each a cache miss.
func (e engine) cheaperThanScratch(n, removed, added int) bool {
	m := float64(e.m)
	cost := 3 * m * float64(removed)
	for k := range added {
		cost += 60 * m * min(1, 1.3*float64(e.bits)*math.Ln2/float64(n-removed+k))
	}
	final := n - removed + added
	return cost < min(e.directCost(final), e.sweepCost(final))
}

// incremental derives p's tables for p's set less removed plus added by
// applying the changes one node at a time, removals first. The winners
// equal a scratch build's because each step keeps every slot with its
// rendezvous winner among the nodes present; node numbers differ, IDs do
// not. p is left untouched: the tables are copied once, then changed in
// place.
func (e engine) incremental(p *strat, removed []string, added []Node) (*hrwSet, tables) {
	if len(removed) == 0 && len(added) == 0 {
		return p.set, p.tables // nothing changed: share the immutable tables
	}
	set := p.set.clone()
	t := tables{
		winner: slices.Clone(p.winner), runner: slices.Clone(p.runner),
		counts: slices.Clone(p.counts), bound: p.bound, high: slices.Clone(p.high),
	}
	for _, id := range removed {
		if set.live == 1 {
			set, t = newHRWSet(newMembers(nil)), tables{} // the last one leaves
			break
		}
		e.remove(set, &t, set.index(id))
	}
	for _, n := range added {
		if set.live == 0 {
			set = newHRWSet(newMembers([]Node{n}))
			t = e.scratch(set)
			continue
		}
		e.add(set, &t, n)
	}
	return set, t
}

func (st *strat) owner(h uint64) int { return int(st.slots[slotOf(h, st.m)]) }

func (st *strat) appendOwners(h uint64, n int, dst []string) []string {
	s := slotOf(h, st.m)
	primary := int(st.slots[s])
	dst = append(dst, st.set.ids[primary])
	if n == 1 {
		return dst
	}
	if r := st.runner[s]; n == 2 && r != none && int(st.winner[s]) == primary {
		return append(dst, st.set.ids[r]) // the stored runner-up is the next in rank
	}
	uniform := st.set.uniform
	score := func(i int) cand { return st.score(st.set, s, i, !uniform) }
	return appendRanked(st.set.ids, uniform, score, n-1, primary, dst)
}

func (st *strat) steps() ([]step, bool) { return tableSteps(st.slots), true }
