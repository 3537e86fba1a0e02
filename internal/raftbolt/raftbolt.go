// Package raftbolt is a durable [raft.LogStore] and [raft.StableStore] in a
// single bbolt file, for raft nodes that must survive restarts.
//
// It exists because hashicorp/raft-boltdb cannot be used with raft v1.8.0:
// its v2 module needs an old go-metrics that conflicts with the one raft
// requires. The storage layout is this package's own: log entries are
// encoded as described in codec.go (versioned, checksummed), keyed by
// big-endian index in the "logs" bucket, and stable-store keys live in the
// "conf" bucket. Files written by raft-boltdb are not readable here.
//
// A [Store] is safe for concurrent use, as raft requires: reads run in
// parallel, writes are serialised by bbolt. Every write is one bbolt
// transaction, fsynced before it returns unless [Options].NoSync is set.
//
// Use one Store per raft node, as both its LogStore and its StableStore.
// bbolt locks the file, so a second Store (or process) opening the same
// path fails with [ErrLocked] instead of corrupting it.
package raftbolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names. They are part of the file format.
const (
	logsBucket = "logs"
	confBucket = "conf"
)

// DefaultTimeout is how long [Open] waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// lockRetry is how often bbolt retries a held file lock (its unexported
// flockRetryTimeout). bbolt gives up once less than one retry interval is
// left, so it waits up to Timeout minus 50ms, and not at all for 50ms or
// less; Open adds this much to honour "at least Timeout".
const lockRetry = 50 * time.Millisecond

// Options tunes [Open]. The zero value is the safe choice: every write is
// synced, and Open waits [DefaultTimeout] for the file lock.
type Options struct {
	// NoSync skips fsync after each write transaction. Writes become much
	// faster but a machine crash (not a process crash) can lose or tear
	// recent entries, which breaks raft's guarantees; use it only for tests
	// and throwaway clusters. Default: false.
	NoSync bool

	// Timeout is how long Open waits for bbolt's exclusive lock on the file
	// when another Store or process holds it, before failing with
	// [ErrLocked]. The lock is retried every 50ms, so Open fails between
	// Timeout and Timeout+50ms after it started. It must not be negative. Default: 0, meaning
	// [DefaultTimeout] (1s); there is no way to wait forever, since a lock
	// that is not released within seconds is almost always a second copy
	// of the node that should not start.
	Timeout time.Duration
}

// Store keeps a raft node's log and stable state in one bbolt file. Create
// it with [Open] and release it with [Close]. All methods are safe for
// concurrent use; after Close they return [ErrClosed].
type Store struct {
	db   *bolt.DB
	path string

	closeOnce sync.Once
	closeErr  error
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens the store at path, creating the file (mode 0600, before the
// umask) and its buckets if needed. The directory must exist.
//
// Three things can happen: it returns a ready Store; it fails at once with
// an error naming the path or the bad option; or, when another Store or
// process has the file open, it waits up to opts.Timeout and fails with an
// error that matches [ErrLocked].
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("raftbolt: Open: path is empty")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("raftbolt: Open %s: Options.Timeout is %v, want 0 (for %v) or more",
			path, opts.Timeout, DefaultTimeout)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout + lockRetry, NoSync: opts.NoSync})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s still locked after %v", ErrLocked, path, timeout)
	case err != nil:
		return nil, fmt.Errorf("raftbolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{logsBucket, confBucket} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("raftbolt: open %s: %w", path, err), db.Close())
	}
	return &Store{db: db, path: path}, nil
}

// Close releases the file and its lock. It waits for transactions in
// progress, is safe to call more than once and concurrently, and returns the
// same result every time. Afterwards every other method returns
// [ErrClosed].
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("raftbolt: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// FirstIndex returns the lowest index in the log, or 0 when it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	var index uint64
	err := s.view("FirstIndex", func(tx *bolt.Tx) (err error) {
		if k, _ := tx.Bucket([]byte(logsBucket)).Cursor().First(); k != nil {
			index, err = keyIndex(k)
		}
		return err
	})
	return index, err
}

// LastIndex returns the highest index in the log, or 0 when it is empty.
func (s *Store) LastIndex() (uint64, error) {
	var index uint64
	err := s.view("LastIndex", func(tx *bolt.Tx) (err error) {
		if k, _ := tx.Bucket([]byte(logsBucket)).Cursor().Last(); k != nil {
			index, err = keyIndex(k)
		}
		return err
	})
	return index, err
}

// GetLog reads the entry at index into log, replacing all its fields; the
// byte slices are the caller's to keep. It returns [raft.ErrLogNotFound]
// itself, unwrapped, for a missing index (raft compares with ==), and a
// [*CorruptLogError] for a record that fails to decode.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	return s.view("GetLog", func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(logsBucket)).Get(indexKey(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		return decodeLog(index, v, log)
	})
}

// StoreLog writes one entry, replacing any entry at the same index.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs writes logs in one transaction: either all of them are stored
// or, on error, none is. An entry replaces any entry at the same index.
// Indexes need not be contiguous. A nil entry is an error.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	// Encode everything before taking bbolt's write lock, into one buffer
	// sized exactly, so that it never moves: bbolt needs keys and values to
	// stay valid until the commit.
	size := 0
	for i, l := range logs {
		if l == nil {
			return fmt.Errorf("raftbolt: StoreLogs: entry %d of %d is nil", i, len(logs))
		}
		size += 8 + encodedLen(l)
	}
	buf := make([]byte, 0, size)
	ends := make([]int, len(logs))
	for i, l := range logs {
		var err error
		buf = binary.BigEndian.AppendUint64(buf, l.Index)
		if buf, err = encodeLog(buf, l); err != nil {
			return err
		}
		ends[i] = len(buf)
	}
	return s.update("StoreLogs", func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(logsBucket))
		start := 0
		for i, end := range ends {
			rec := buf[start:end:end]
			if err := b.Put(rec[:8:8], rec[8:]); err != nil {
				return fmt.Errorf("put log %d: %w", logs[i].Index, err)
			}
			start = end
		}
		return nil
	})
}

// DeleteRange deletes the entries with indexes from first to last, both
// included, in one transaction. Missing indexes are skipped; first > last
// deletes nothing.
func (s *Store) DeleteRange(first, last uint64) error {
	if first > last {
		return nil
	}
	return s.update("DeleteRange", func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(logsBucket)).Cursor()
		// The cursor keeps walking the pages as they were when the
		// transaction began, so Next after Delete does not skip entries
		// (hashicorp/raft-boltdb relies on the same bbolt behaviour, and
		// TestDeleteRangeAcrossPages checks it).
		for k, _ := c.Seek(indexKey(first)); k != nil; k, _ = c.Next() {
			index, err := keyIndex(k)
			if err != nil {
				return err
			}
			if index > last {
				break
			}
			if err := c.Delete(); err != nil {
				return fmt.Errorf("delete log %d: %w", index, err)
			}
		}
		return nil
	})
}

// Set stores val under key, replacing any value. key must not be empty.
func (s *Store) Set(key, val []byte) error {
	if len(key) == 0 {
		return errors.New("raftbolt: Set: key is empty")
	}
	return s.update("Set", func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(confBucket)).Put(key, val)
	})
}

// Get returns a copy of the value stored under key: non-nil, and empty if
// an empty value was set. A key that was never set returns [ErrKeyNotFound],
// whose text raft checks.
func (s *Store) Get(key []byte) ([]byte, error) {
	var val []byte
	err := s.view("Get", func(tx *bolt.Tx) error {
		// Seek rather than Get, so that a stored empty value is not
		// mistaken for a missing key.
		k, v := tx.Bucket([]byte(confBucket)).Cursor().Seek(key)
		if k == nil || !bytes.Equal(k, key) {
			return ErrKeyNotFound
		}
		val = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return val, nil
}

// SetUint64 stores val under key as 8 big-endian bytes. It shares its keys
// with Set and Get.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key. A key that was
// never set returns 0 and [ErrKeyNotFound], whose text raft checks; a value
// that is not 8 bytes long (one written by Set) is an error naming the key.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftbolt: GetUint64 %q: stored value is %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// view runs fn in a read transaction; see translate for its errors.
func (s *Store) view(op string, fn func(*bolt.Tx) error) error {
	return translate(op, s.db.View(fn))
}

// update runs fn in a write transaction; see translate for its errors.
func (s *Store) update(op string, fn func(*bolt.Tx) error) error {
	return translate(op, s.db.Update(fn))
}

// translate turns bbolt's "database not open" into ErrClosed, passes the
// errors raft matches by identity or text (and corruption, which already
// names its index) through untouched, and prefixes the rest with op.
func translate(op string, err error) error {
	switch {
	case err == nil, err == raft.ErrLogNotFound, err == ErrKeyNotFound, errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	default:
		return fmt.Errorf("raftbolt: %s: %w", op, err)
	}
}
