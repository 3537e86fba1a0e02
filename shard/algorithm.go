package shard

import (
	"fmt"
	"math"
)

// Defaults of the algorithm parameters.
const (
	// DefaultSlotBits is the default table size of [Stratified]: 2^19 slots,
	// a 1 MiB lookup table. Enough for about 1% spread in the shares of 64
	// nodes, so that key noise, not the table, dominates.
	DefaultSlotBits = 19
	// DefaultVnodes is the default number of ring points of a node of
	// average weight in [Ring] (and in the ring of [Bounded]).
	DefaultVnodes = 160
	// DefaultMaglevSize is the default (prime) table size of [Maglev], the
	// paper's small table.
	DefaultMaglevSize = 65537
	// DefaultLoad is the default load bound of [Bounded], as in HAProxy's
	// hash-balance-factor 125.
	DefaultLoad = 1.25
	// DefaultPartitions is the default number of partitions of [Bounded].
	DefaultPartitions = 1 << 14
)

type algKind uint8

const (
	kindStratified algKind = iota // the zero Algorithm is the default
	kindRing
	kindRendezvous
	kindMaglev
	kindJump
	kindBounded
)

// Algorithm selects a placement algorithm and its parameters. Build one with
// [Default], [Stratified], [Ring], [Rendezvous], [Maglev], [Jump] or
// [Bounded]; parameters are checked when a table is built, and a bad one is
// an [ErrInvalidAlgorithm] error. The zero Algorithm is [Default]().
// Algorithms are comparable values.
type Algorithm struct {
	kind algKind
	size int     // slot bits, vnodes, table size or partitions
	load float64 // bounded only
	set  bool    // made by a constructor; false only in the zero Algorithm
}

// Default returns the algorithm tables use unless told otherwise:
// [Stratified] with [DefaultSlotBits]. It is the one that does well on
// every count at once (see the package documentation): table-lookup speed,
// balance within a few percent, movement within a few percent of the
// minimum, and one-node changes in under a millisecond at hundreds of
// nodes.
func Default() Algorithm { return Stratified(DefaultSlotBits) }

// Stratified returns the stratified rendezvous table with 2^slotBits slots,
// slotBits in [8, 24]. Keys map to slots by hash range; each slot belongs to
// the node that wins weighted rendezvous hashing on it, where each node
// scores the slots with its own pseudo-random permutation, so that every
// node holds exactly one slot at every score level. That stratification
// evens out the slot counts (0.7 times the spread of independent scores)
// and lets a build visit only the pairs that can win. Lookup is one hash
// and one table read; adding or removing a node moves only the slots that
// must move. Use more bits for clusters beyond a few thousand nodes.
func Stratified(slotBits int) Algorithm {
	return Algorithm{kind: kindStratified, size: slotBits, set: true}
}

// Ring returns a consistent-hash ring (Karger et al.) with vnodes points
// for a node of average weight, vnodes·weight/mean weight for others (at
// least one), vnodes in [1, 4096]. Lookup is a binary search. Balance
// improves with the square root of vnodes, at the cost of memory and build
// time. With unequal weights a membership change moves the mean weight,
// and every other node gains or loses points in proportion: movement is
// minimal only for equal weights.
func Ring(vnodes int) Algorithm { return Algorithm{kind: kindRing, size: vnodes, set: true} }

// Rendezvous returns weighted highest-random-weight hashing (Thaler and
// Ravishankar; weights after Schindelhauer and Schomaker) evaluated per key:
// perfect movement and no table, but each lookup scores every node, so it
// costs O(nodes).
func Rendezvous() Algorithm { return Algorithm{kind: kindRendezvous, set: true} }

// Maglev returns Google's Maglev table (Eisenbud et al., NSDI '16) with size
// entries; size must be a prime in [3, 2^24] and at least the number of
// nodes (the paper advises 100 per node). Perfectly even tables and fast
// lookups, but a membership change moves more keys than the minimum.
// Weights are honoured by giving each node turns in proportion to its
// weight.
func Maglev(size int) Algorithm { return Algorithm{kind: kindMaglev, size: size, set: true} }

// Jump returns jump consistent hashing (Lamping and Veach, 2014) for
// numbered shards: nodes are numbered in the natural order of their IDs
// ("shard-2" before "shard-10"), and only adding or removing the
// highest-numbered node moves the minimum. Any other change renumbers the
// nodes after it and moves far more. Jump does not support weights: every
// node must have the same weight.
func Jump() Algorithm { return Algorithm{kind: kindJump, set: true} }

// Bounded returns consistent hashing with bounded loads (Mirrokni, Thorup
// and Zadimoghaddam, 2016) over a fixed number of partitions: each
// partition, in order, goes to the first node clockwise on a ring (of
// [DefaultVnodes] points for a node of average weight) that holds fewer than
// ⌈load·partitions·weight/total weight⌉ partitions. load must be a finite
// number in [1, 100]; below 1 the nodes could not hold every partition.
// partitions must be in [1, 2^24] and at least the number of nodes. The
// bound is on shares of the key space, so it is the same on every node that
// sees the same members; it is not a bound on live request load.
func Bounded(load float64, partitions int) Algorithm {
	return Algorithm{kind: kindBounded, size: partitions, load: load, set: true}
}

// withDefaults turns the zero Algorithm into Default().
func (a Algorithm) withDefaults() Algorithm {
	if !a.set {
		return Default()
	}
	return a
}

// String describes the algorithm and its parameters, for example
// "stratified(slot-bits=18)".
func (a Algorithm) String() string {
	a = a.withDefaults()
	switch a.kind {
	case kindStratified:
		return fmt.Sprintf("stratified(slot-bits=%d)", a.size)
	case kindRing:
		return fmt.Sprintf("ring(vnodes=%d)", a.size)
	case kindRendezvous:
		return "rendezvous"
	case kindMaglev:
		return fmt.Sprintf("maglev(size=%d)", a.size)
	case kindJump:
		return "jump"
	case kindBounded:
		return fmt.Sprintf("bounded(load=%g, partitions=%d)", a.load, a.size)
	}
	return fmt.Sprintf("unknown(%d)", a.kind)
}

// validate reports a parameter out of range, naming it.
func (a Algorithm) validate() error {
	a = a.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidAlgorithm, fmt.Sprintf(format, args...))
	}
	switch a.kind {
	case kindStratified:
		if a.size < 8 || a.size > 24 {
			return bad("Stratified slotBits must be in [8, 24], got %d", a.size)
		}
	case kindRing:
		if a.size < 1 || a.size > 4096 {
			return bad("Ring vnodes must be in [1, 4096], got %d", a.size)
		}
	case kindRendezvous, kindJump:
	case kindMaglev:
		if a.size < 3 || a.size > 1<<24 || !isPrime(a.size) {
			return bad("Maglev size must be a prime in [3, 2^24], got %d", a.size)
		}
	case kindBounded:
		if math.IsNaN(a.load) || a.load < 1 || a.load > 100 {
			return bad("Bounded load must be in [1, 100], got %v", a.load)
		}
		if a.size < 1 || a.size > 1<<24 {
			return bad("Bounded partitions must be in [1, 2^24], got %d", a.size)
		}
	default:
		return bad("unknown algorithm %d", a.kind)
	}
	return nil
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
