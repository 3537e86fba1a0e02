package shard

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors about one node come wrapped in a [*NodeError]
// that names it; match them with [errors.Is].
var (
	// ErrEmptyID reports a node whose ID is the empty string.
	ErrEmptyID = errors.New("shard: empty node ID")
	// ErrDuplicateID reports a node ID given twice, or added when present.
	ErrDuplicateID = errors.New("shard: duplicate node ID")
	// ErrInvalidWeight reports a weight that is not a finite number in
	// [MinWeight, MaxWeight].
	ErrInvalidWeight = errors.New("shard: invalid node weight")
	// ErrUnknownNode reports a removal of a node the table does not hold.
	ErrUnknownNode = errors.New("shard: unknown node")
	// ErrTooManyNodes reports a node set larger than the algorithm can place.
	ErrTooManyNodes = errors.New("shard: too many nodes")
	// ErrInvalidAlgorithm reports an algorithm parameter out of range, such
	// as a bounded-load factor below 1.
	ErrInvalidAlgorithm = errors.New("shard: invalid algorithm")
	// ErrNoRanges reports a [Diff] involving an algorithm that places each
	// key on its own (rendezvous, jump) rather than by ranges of key hashes.
	ErrNoRanges = errors.New("shard: algorithm does not place keys by hash ranges")
)

// NodeError names the node that a validation error is about.
type NodeError struct {
	// Index is the node's position in the slice that was passed in.
	Index int
	// ID is the node's ID, possibly empty.
	ID string
	// Err is one of the sentinels above, possibly wrapped with detail.
	Err error
}

// Error describes the problem and names the node by position and ID.
func (e *NodeError) Error() string {
	return fmt.Sprintf("shard: node %d (%q): %v", e.Index, e.ID, e.Err)
}

// Unwrap returns the underlying sentinel.
func (e *NodeError) Unwrap() error { return e.Err }
