package raftbolt

import (
	"errors"
	"fmt"
)

// ErrKeyNotFound is returned by [Store.Get] and [Store.GetUint64] for a key
// that was never set.
//
// Its message is exactly "not found", without this package's usual
// "raftbolt:" prefix, on purpose: hashicorp/raft v1.8.0 recognises a missing
// stable-store key by comparing err.Error() with "not found" (in NewRaft,
// HasExistingState and vote handling), so any other text, including a
// wrapped one, makes raft refuse to start on a fresh store.
var ErrKeyNotFound = errors.New("not found")

// ErrClosed is returned by every method of a [Store] after Close.
var ErrClosed = errors.New("raftbolt: store closed")

// ErrLocked is returned by [Open] when the file's lock is still held by
// another Store, in this process or another, after Options.Timeout.
var ErrLocked = errors.New("raftbolt: database file is locked by another open Store")

// ErrCorrupt is what every [CorruptLogError] matches with [errors.Is].
var ErrCorrupt = errors.New("raftbolt: corrupt log record")

// CorruptLogError reports a stored log record that cannot be decoded: it is
// truncated, has trailing bytes, an unknown format version, a checksum that
// does not match, or an index that differs from its key. The store cannot
// repair it; the node needs its log restored from a peer or a backup.
type CorruptLogError struct {
	// Index is the raft index of the record, taken from its key.
	Index uint64
	// Reason says what is wrong, for people.
	Reason string
}

// Error names the index and the reason.
func (e *CorruptLogError) Error() string {
	return fmt.Sprintf("raftbolt: corrupt log record at index %d: %s", e.Index, e.Reason)
}

// Unwrap returns [ErrCorrupt], so callers can match any corruption with
// errors.Is.
func (e *CorruptLogError) Unwrap() error { return ErrCorrupt }
