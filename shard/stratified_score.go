package shard

import (
	"math"
	"slices"
)

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
// so no value ever leaves the range). Three rounds give slot counts as even
// as four (measured) for less work. Round r maps x to the top bits of
// x·k[2r] + k[2r+1]; the outer rounds act on the a-bit half and the middle
// one on the b-bit half, so running the network with the rounds' keys in
// reverse order (see reversed) inverts it.
func (e engine) feistel(x uint32, k *roundKeys) uint32 {
	a, b := e.a&15, e.b&15
	l, r := x>>b, x&(1<<b-1)
	l ^= uint32((uint64(r)*k[0] + k[1]) >> ((64 - a) & 63))
	r ^= uint32((uint64(l)*k[2] + k[3]) >> ((64 - b) & 63))
	l ^= uint32((uint64(r)*k[4] + k[5]) >> ((64 - a) & 63))
	return l<<b | r
}

// reversed returns the round keys in reverse round order: the inverse
// permutation's keys.
func (k *roundKeys) reversed() *roundKeys {
	return &roundKeys{k[4], k[5], k[2], k[3], k[0], k[1]}
}

// fwd is the node's permutation of the slots: slot → level.
func (e engine) fwd(x uint32, k *roundKeys) uint32 { return e.feistel(x, k) }

// feistelAll sets out[j] to feistel(xs[j], k). It is the hot loop of every
// build: the rounds are written out so that nothing is called per element
// and consecutive elements overlap in the CPU, and the shift counts are
// masked so that no overflow guard is needed. fwdAll and invAll apply the
// permutation and its inverse to a batch.
func (e engine) feistelAll(k *roundKeys, xs, out []uint32) {
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

func (e engine) fwdAll(k *roundKeys, xs, out []uint32) { e.feistelAll(k, xs, out) }

func (e engine) invAll(k *roundKeys, xs, out []uint32) { e.feistelAll(k.reversed(), xs, out) }

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
