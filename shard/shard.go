package shard

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Table is the current placement of keys on a changing set of nodes. Reads
// (Locate, LocateN, Snapshot) load the current immutable [Snapshot]
// atomically: they never lock, never allocate and never see a half-built
// placement. Writes (Update, Add, Remove) build the next snapshot and swap
// it in; they are serialised with each other, and a write that fails
// changes nothing.
//
// The zero Table is empty and uses [Default]. A Table must not be copied
// after first use.
type Table struct {
	cur atomic.Pointer[Snapshot]
	mu  sync.Mutex // serialises writers, so each builds on the latest snapshot
	alg Algorithm
}

// New returns a table holding nodes, in any order. It returns an error, and
// no table, for an empty or duplicate ID, a bad weight, or an algorithm
// parameter out of range; see [Build].
func New(nodes []Node, opts ...Option) (*Table, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s, err := Build(o.alg, nodes)
	if err != nil {
		return nil, err
	}
	t := &Table{alg: s.alg}
	t.cur.Store(s)
	return t, nil
}

// Snapshot returns the current placement. Use it to make several lookups
// against one consistent view, or to [Diff] against the next one.
func (t *Table) Snapshot() *Snapshot {
	if s := t.cur.Load(); s != nil {
		return s
	}
	return t.empty()
}

func (t *Table) empty() *Snapshot {
	s, _ := Build(t.alg, nil) // an empty set with a validated algorithm cannot fail
	return s
}

// Locate returns the node that owns key, or ok=false when the table is
// empty. It neither locks nor allocates.
func (t *Table) Locate(key string) (node string, ok bool) {
	return t.cur.Load().Locate(key)
}

// LocateN appends the IDs of min(n, Len()) distinct owners of key to dst,
// primary first; see [Snapshot.LocateN].
func (t *Table) LocateN(key string, n int, dst []string) []string {
	return t.cur.Load().LocateN(key, n, dst)
}

// Len returns the number of nodes.
func (t *Table) Len() int { return t.cur.Load().Len() }

// Nodes returns a copy of the nodes, sorted by ID.
func (t *Table) Nodes() []Node { return t.cur.Load().Nodes() }

// Update makes nodes, in any order, the table's node set: the placement
// becomes exactly the one [Build] gives for that set, whatever the history
// of the table. Feed it the member list from a membership service. On error
// the table is unchanged.
func (t *Table) Update(nodes []Node) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.swap(nodes)
}

// Add adds nodes to the table. It returns a [*NodeError] naming the first
// bad node by its position among nodes: one already present or given twice
// ([ErrDuplicateID]), an empty ID or a bad weight. On any error the table
// is unchanged.
func (t *Table) Add(nodes ...Node) error {
	if _, err := sortedNodes(nodes); err != nil {
		return err // checked alone first, so that errors index nodes
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.Snapshot().Nodes()
	for i, n := range nodes {
		k, found := slices.BinarySearchFunc(next, n.ID, byID)
		if found {
			return &NodeError{Index: i, ID: n.ID, Err: ErrDuplicateID}
		}
		next = slices.Insert(next, k, n) // kept sorted, so build need not sort
	}
	return t.swap(next)
}

// Remove removes the nodes with the given IDs. It returns an error wrapping
// [ErrUnknownNode] if one is absent, and leaves the table unchanged on any
// error.
func (t *Table) Remove(ids ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.Snapshot()
	keep := cur.Nodes()
	for i, id := range ids {
		k, found := slices.BinarySearchFunc(keep, id, byID)
		if !found {
			return &NodeError{Index: i, ID: id, Err: fmt.Errorf("%w (or given twice)", ErrUnknownNode)}
		}
		keep = slices.Delete(keep, k, k+1)
	}
	return t.swap(keep)
}

func byID(n Node, id string) int {
	switch {
	case n.ID < id:
		return -1
	case n.ID > id:
		return 1
	}
	return 0
}

// swap builds the next snapshot from the current one; t.mu must be held.
func (t *Table) swap(nodes []Node) error {
	next, err := build(t.Snapshot().alg, t.cur.Load(), nodes)
	if err != nil {
		return err
	}
	t.cur.Store(next)
	return nil
}
