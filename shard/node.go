package shard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Weight bounds. Weights outside them are rejected rather than silently
// starving a node or overflowing a score.
const (
	// MinWeight is the smallest accepted node weight.
	MinWeight = 1e-9
	// MaxWeight is the largest accepted node weight.
	MaxWeight = 1e9
)

// MaxNodes is the largest number of nodes any algorithm places. Table-based
// algorithms further need at least as many slots as nodes.
const MaxNodes = 1<<16 - 1

// Node is one member of a table: an identity and a relative capacity.
type Node struct {
	// ID names the node. It must be non-empty and unique within a table.
	// Use a stable identity (a member name), not an address that changes
	// when the node restarts: placement hashes the ID.
	ID string
	// Weight is the node's capacity relative to the others: a node of
	// weight 2 gets twice the share of a node of weight 1. It must be a
	// finite number in [MinWeight, MaxWeight]; the zero value is rejected
	// so that a forgotten weight is an error, not a silent default. Use
	// [Nodes] for equal weights.
	Weight float64
}

// Nodes returns nodes of weight 1 with the given IDs, in order.
func Nodes(ids ...string) []Node {
	ns := make([]Node, len(ids))
	for i, id := range ids {
		ns[i] = Node{ID: id, Weight: 1}
	}
	return ns
}

// validWeight returns nil for an acceptable weight, else a reason.
func validWeight(w float64) error {
	switch {
	case math.IsNaN(w) || math.IsInf(w, 0):
		return fmt.Errorf("%w: %v is not finite", ErrInvalidWeight, w)
	case w <= 0:
		return fmt.Errorf("%w: %v is not positive", ErrInvalidWeight, w)
	case w < MinWeight || w > MaxWeight:
		return fmt.Errorf("%w: %v is outside [%g, %g]", ErrInvalidWeight, w, float64(MinWeight), float64(MaxWeight))
	}
	return nil
}

// sortedNodes validates nodes and returns a copy sorted by ID. The sorted
// order is what makes every algorithm set-deterministic: the input order,
// like the order gossip delivered the members in, never matters.
func sortedNodes(nodes []Node) ([]Node, error) {
	for i, n := range nodes {
		if n.ID == "" {
			return nil, &NodeError{Index: i, ID: n.ID, Err: ErrEmptyID}
		}
		if err := validWeight(n.Weight); err != nil {
			return nil, &NodeError{Index: i, ID: n.ID, Err: err}
		}
	}
	if len(nodes) > MaxNodes {
		return nil, fmt.Errorf("%w: %d nodes, at most %d", ErrTooManyNodes, len(nodes), MaxNodes)
	}
	if slices.IsSortedFunc(nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) }) {
		// Tables pass sorted lists: only duplicates are left to find.
		for i := 1; i < len(nodes); i++ {
			if nodes[i].ID == nodes[i-1].ID {
				return nil, &NodeError{Index: i, ID: nodes[i].ID, Err: ErrDuplicateID}
			}
		}
		return slices.Clone(nodes), nil
	}
	idx := make([]int, len(nodes))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(nodes[a].ID, nodes[b].ID) })
	sorted := make([]Node, len(nodes))
	for k, i := range idx {
		sorted[k] = nodes[i]
		if k > 0 && sorted[k-1].ID == nodes[i].ID {
			return nil, &NodeError{Index: i, ID: nodes[i].ID, Err: ErrDuplicateID}
		}
	}
	return sorted, nil
}
