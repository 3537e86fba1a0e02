package shard

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// KeyHash returns the 64-bit hash under which every algorithm places key:
// xxHash64 with seed 0. [Move] ranges are ranges of this hash, so a
// resharding job can tell which of its keys a move covers.
func KeyHash(key string) uint64 { return xxhash.Sum64String(key) }

// golden is 2^64/φ, the usual odd constant for spreading small integers.
const golden = 0x9e3779b97f4a7c15

// mix is MurmurHash3's 64-bit finaliser: a bijection whose every output bit
// depends on every input bit. It turns structured inputs (slot numbers,
// hash^node) into independent-looking scores.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// slotOf maps a key hash onto [0, m) keeping order (Lemire's multiply-shift),
// so that each slot owns one contiguous range of hashes.
func slotOf(h, m uint64) uint64 {
	hi, _ := bits.Mul64(h, m)
	return hi
}

// slotFirst is the smallest hash that slotOf maps to slot s: ⌈s·2^64/m⌉.
func slotFirst(s, m uint64) uint64 {
	q, r := bits.Div64(s, 0, m)
	if r != 0 {
		q++
	}
	return q
}

//go:generate go run gen_log2.go

// negLog2 returns -log2(u/2^64) in 32.32 fixed point: the exponential
// variate that weighted rendezvous hashing divides by a node's weight.
// It uses integers and a committed table only, so every platform computes
// the same value; it is monotone (non-increasing) in u, which keeps the
// weighted and unweighted orders of candidates consistent.
func negLog2(u uint64) uint64 {
	if u == 0 {
		return 65 << 32
	}
	lz := bits.LeadingZeros64(u)
	x := u << lz // x/2^63 is the mantissa m in [1, 2)
	idx := (x >> 53) & 1023
	frac := (x >> 31) & (1<<22 - 1)
	lo, hi := log2Table[idx], log2Table[idx+1]
	lg := lo + ((hi-lo)*frac)>>22 // log2(m), interpolated
	return uint64(1+lz)<<32 - lg
}

// cand is one node's standing for one key or slot under rendezvous
// hashing. Candidates are totally ordered: lower e (weighted score) first,
// then higher u (raw score), then smaller node ID.
type cand struct {
	e float64 // negLog2(u)/weight; only compared when weights differ
	u uint64
	i int
}

// better reports whether a outranks b; ids names the nodes by index.
// When every weight is equal, e is monotone in u, so comparing u alone
// gives the same order faster. Equal scores (one pair in 2^48) fall back
// to the IDs, so the order never depends on how nodes are numbered.
func better(a, b cand, uniform bool, ids []string) bool {
	if !uniform && a.e != b.e {
		return a.e < b.e
	}
	if a.u != b.u {
		return a.u > b.u
	}
	return ids[a.i] < ids[b.i]
}
