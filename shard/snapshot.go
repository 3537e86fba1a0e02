package shard

import (
	"encoding/binary"
	"math"

	"github.com/cespare/xxhash/v2"
)

// Sharder maps keys to nodes. [*Snapshot] and [*Table] implement it; so can
// test fakes in user code. Implementations must be safe for concurrent use.
type Sharder interface {
	// Locate returns the node that owns key, or ok=false when there are no
	// nodes.
	Locate(key string) (node string, ok bool)
	// LocateN appends to dst the IDs of min(n, nodes) distinct owners of
	// key, the owner Locate returns first, and returns the extended slice.
	// It appends nothing when n < 1 or there are no nodes.
	LocateN(key string, n int, dst []string) []string
}

var (
	_ Sharder = (*Snapshot)(nil)
	_ Sharder = (*Table)(nil)
)

// Snapshot is an immutable placement of keys on one set of nodes by one
// algorithm. It is safe for concurrent use, and lookups neither lock nor
// allocate. A nil *Snapshot, like a zero Snapshot, is an empty placement by
// [Default]. Build one with [Build]; derive the next one, after a
// membership change, with [Snapshot.With].
type Snapshot struct {
	alg   Algorithm
	mem   *members
	slots []uint16 // owner per slot for table-based algorithms, else nil
	m     uint64   // len(slots)
	names []string // node IDs by the index slots and steps use
	impl  placement
	// owner places a key hash for the algorithms without a slot table
	// (ring, rendezvous, jump); nil for the others.
	owner func(h uint64) int
	sum   uint64
}

// members is the validated, ID-sorted node set with what hashing needs.
type members struct {
	nodes   []Node
	ids     []string
	keys    []uint64 // KeyHash of each ID
	w       []float64
	uniform bool // every weight equal
}

func newMembers(sorted []Node) *members {
	ms := &members{
		nodes:   sorted,
		ids:     make([]string, len(sorted)),
		keys:    make([]uint64, len(sorted)),
		w:       make([]float64, len(sorted)),
		uniform: true,
	}
	for i, n := range sorted {
		ms.ids[i], ms.keys[i], ms.w[i] = n.ID, KeyHash(n.ID), n.Weight
		if n.Weight != sorted[0].Weight {
			ms.uniform = false
		}
	}
	return ms
}

// placement is what an algorithm adds to a snapshot.
type placement interface {
	// appendOwners appends the IDs of n distinct owners of h, primary first;
	// 1 <= n <= number of nodes.
	appendOwners(h uint64, n int, dst []string) []string
	// steps returns ownership as ascending hash ranges, or false when the
	// algorithm places keys one by one.
	steps() ([]step, bool)
}

// step says that hashes up to and including last (and above the previous
// step's last) belong to node index owner, -1 for none.
type step struct {
	last  uint64
	owner int
}

// Build places keys on nodes with alg. Nodes may come in any order: the
// same set always gives the same placement. It returns a [*NodeError] for an
// empty or duplicate ID or a bad weight, an [ErrInvalidAlgorithm] error for
// a bad parameter, and [ErrTooManyNodes] when alg cannot place that many.
func Build(alg Algorithm, nodes []Node) (*Snapshot, error) {
	return build(alg.withDefaults(), nil, nodes)
}

// With returns the placement of nodes by s's algorithm, reusing s where
// that is cheaper than starting over (the default algorithm rebuilds
// incrementally when a few nodes change). The result is identical to
// Build(s.Algorithm(), nodes), and s still places keys as before. On a nil
// s, With uses [Default]. With is fastest when each snapshot is derived
// from once, as [Table] does: the first derivation takes over bookkeeping
// that a later one from the same snapshot must do without, which is
// correct but slower.
func (s *Snapshot) With(nodes []Node) (*Snapshot, error) {
	if s == nil {
		return Build(Default(), nodes)
	}
	return build(s.alg.withDefaults(), s, nodes)
}

func build(alg Algorithm, prev *Snapshot, nodes []Node) (*Snapshot, error) {
	if err := alg.validate(); err != nil {
		return nil, err
	}
	sorted, err := sortedNodes(nodes)
	if err != nil {
		return nil, err
	}
	if alg.kind == kindJump {
		if err := equalWeights(nodes); err != nil {
			return nil, err
		}
	}
	ms := newMembers(sorted)
	s := &Snapshot{alg: alg, mem: ms, names: ms.ids, sum: checksum(alg, sorted)}
	if prev != nil && prev.alg != alg {
		prev = nil
	}
	switch alg.kind {
	case kindStratified:
		err = buildStratified(s, prev)
	case kindRing:
		err = buildRing(s)
	case kindRendezvous:
		r := rendezvous{ms}
		s.impl, s.owner = r, r.owner
	case kindMaglev:
		err = buildMaglev(s)
	case kindJump:
		err = buildJump(s)
	case kindBounded:
		err = buildBounded(s)
	}
	if err != nil {
		return nil, err
	}
	s.m = uint64(len(s.slots))
	return s, nil
}

func checksum(alg Algorithm, sorted []Node) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(alg.String())
	var b [8]byte
	for _, n := range sorted {
		binary.LittleEndian.PutUint64(b[:], uint64(len(n.ID)))
		_, _ = d.Write(b[:])
		_, _ = d.WriteString(n.ID)
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(n.Weight))
		_, _ = d.Write(b[:])
	}
	return d.Sum64()
}

// Locate returns the node that owns key, or ok=false when there are no
// nodes. It neither locks nor allocates.
func (s *Snapshot) Locate(key string) (node string, ok bool) {
	switch {
	case s == nil:
		return "", false
	case s.slots != nil:
		return s.names[s.slots[slotOf(KeyHash(key), s.m)]], true
	case s.owner != nil && len(s.names) > 0:
		return s.names[s.owner(KeyHash(key))], true
	}
	return "", false
}

// LocateN appends the IDs of min(n, Len()) distinct owners of key to dst,
// the one [Snapshot.Locate] returns first, and returns the extended slice.
// The rest follow in the algorithm's order of preference for the key, so
// they are stable under membership changes as far as the algorithm allows.
// It appends nothing when n < 1 or there are no nodes, and allocates only
// when dst lacks capacity.
func (s *Snapshot) LocateN(key string, n int, dst []string) []string {
	if n < 1 || s.Len() == 0 {
		return dst
	}
	return s.impl.appendOwners(KeyHash(key), min(n, s.Len()), dst)
}

// Len returns the number of nodes.
func (s *Snapshot) Len() int {
	if s == nil || s.mem == nil {
		return 0
	}
	return len(s.mem.ids)
}

// Nodes returns a copy of the nodes, sorted by ID.
func (s *Snapshot) Nodes() []Node {
	if s.Len() == 0 {
		return nil
	}
	return append([]Node(nil), s.mem.nodes...)
}

// Algorithm returns the algorithm that built s.
func (s *Snapshot) Algorithm() Algorithm {
	if s == nil {
		return Default()
	}
	return s.alg.withDefaults()
}

// Checksum identifies the placement: two snapshots with the same checksum
// place every key on the same node, because placement is a function of the
// algorithm and the node set alone. Nodes can exchange checksums to detect
// diverging membership views (as ringpop does) before forwarding requests.
func (s *Snapshot) Checksum() uint64 {
	if s.Len() == 0 {
		return checksum(s.Algorithm(), nil)
	}
	return s.sum
}

// tableSteps turns a slot table into hash ranges, merging neighbours with
// the same owner.
func tableSteps(slots []uint16) []step {
	m := uint64(len(slots))
	var out []step
	for sl, o := range slots {
		if len(out) > 0 && out[len(out)-1].owner == int(o) {
			out[len(out)-1].last = lastOfSlot(uint64(sl), m)
			continue
		}
		out = append(out, step{last: lastOfSlot(uint64(sl), m), owner: int(o)})
	}
	return out
}

func lastOfSlot(s, m uint64) uint64 {
	if s == m-1 {
		return math.MaxUint64
	}
	return slotFirst(s+1, m) - 1
}
