package raftbolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tempPath returns a fresh database path in the test's directory.
func tempPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "raft.db")
}

// open opens path without fsync (these tests never crash the machine) and
// closes it when the test ends.
func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newStore(t *testing.T) *Store {
	t.Helper()
	return open(t, tempPath(t))
}

// storeRange stores entries first..last with term 1 and a small payload.
func storeRange(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte(fmt.Sprint("entry ", i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d..%d): %v", first, last, err)
	}
}

// bounds returns FirstIndex and LastIndex, failing on error.
func bounds(t *testing.T, s *Store) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	return first, last
}

// sameLog reports whether two logs hold the same values; times are compared
// as instants, and nil equals empty for the byte fields.
func sameLog(a, b raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func TestEmptyStore(t *testing.T) {
	s := newStore(t)
	if first, last := bounds(t, s); first != 0 || last != 0 {
		t.Errorf("First/LastIndex of an empty store = %d/%d, want 0/0", first, last)
	}
	var l raft.Log
	if err := s.GetLog(1, &l); err != raft.ErrLogNotFound {
		t.Errorf("GetLog of a missing index = %v, want raft.ErrLogNotFound itself", err)
	}
}

func TestLogRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	tests := []struct {
		name string
		log  raft.Log
	}{
		{"all fields", raft.Log{Index: 1, Term: 2, Type: raft.LogCommand, Data: []byte("data"),
			Extensions: []byte("ext"), AppendedAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)}},
		{"zero time", raft.Log{Index: 2, Term: 2, Type: raft.LogNoop}},
		{"data only", raft.Log{Index: 3, Term: 3, Type: raft.LogConfiguration, Data: []byte{0, 1, 2}}},
		{"extensions only", raft.Log{Index: 4, Term: 3, Type: raft.LogBarrier, Extensions: []byte{9}}},
		{"before 1970", raft.Log{Index: 5, Term: 3, AppendedAt: time.Unix(-1, 5)}},
		{"unknown type", raft.Log{Index: 6, Term: 4, Type: raft.LogType(200), Data: []byte("x")}},
		{"large", raft.Log{Index: 7, Term: 4, Data: big, Extensions: big[:1000]}},
		{"max values", raft.Log{Index: 1<<64 - 1, Term: 1<<64 - 1, Type: 255,
			AppendedAt: time.Unix(0, 1<<63-1)}},
	}
	s := newStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.StoreLog(&tt.log); err != nil {
				t.Fatalf("StoreLog: %v", err)
			}
			// Start from stale values to check that GetLog replaces them all.
			got := raft.Log{Index: 99, Term: 99, Type: 9, Data: []byte("stale"),
				Extensions: []byte("stale"), AppendedAt: time.Now()}
			if err := s.GetLog(tt.log.Index, &got); err != nil {
				t.Fatalf("GetLog: %v", err)
			}
			if !sameLog(got, tt.log) {
				t.Errorf("GetLog = %+v, want %+v", got, tt.log)
			}
		})
	}
}

func TestGetLogReturnsCopies(t *testing.T) {
	s := newStore(t)
	storeRange(t, s, 1, 1)
	var a, b raft.Log
	if err := s.GetLog(1, &a); err != nil {
		t.Fatal(err)
	}
	a.Data[0] = 'X'
	a.Data = append(a.Data, "appended"...)
	if err := s.GetLog(1, &b); err != nil {
		t.Fatal(err)
	}
	if string(b.Data) != "entry 1" {
		t.Errorf("stored data changed through a returned slice: %q", b.Data)
	}
}

func TestStoreLogsIndexes(t *testing.T) {
	s := newStore(t)
	storeRange(t, s, 5, 10)
	storeRange(t, s, 20, 21) // a gap is allowed
	if first, last := bounds(t, s); first != 5 || last != 21 {
		t.Errorf("First/LastIndex = %d/%d, want 5/21", first, last)
	}
	// Overwriting keeps one entry per index.
	if err := s.StoreLog(&raft.Log{Index: 7, Term: 9, Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := s.GetLog(7, &l); err != nil || l.Term != 9 || string(l.Data) != "new" {
		t.Errorf("GetLog(7) = %+v, %v; want the overwritten entry", l, err)
	}
	if err := s.GetLog(15, &l); err != raft.ErrLogNotFound {
		t.Errorf("GetLog in the gap = %v, want raft.ErrLogNotFound", err)
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Errorf("StoreLogs(nil) = %v, want nil", err)
	}
}

func TestStoreLogsIsAllOrNothing(t *testing.T) {
	s := newStore(t)
	err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, nil, {Index: 3, Term: 1}})
	if err == nil || !strings.Contains(err.Error(), "entry 1 of 3 is nil") {
		t.Fatalf("StoreLogs with a nil entry = %v, want an error naming entry 1", err)
	}
	if _, last := bounds(t, s); last != 0 {
		t.Errorf("a failed StoreLogs stored entries: LastIndex = %d", last)
	}
}

func TestDeleteRange(t *testing.T) {
	tests := []struct {
		name        string
		first, last uint64
		want        []uint64 // indexes left of 1..10
	}{
		{"head", 1, 3, []uint64{4, 5, 6, 7, 8, 9, 10}},
		{"tail", 8, 10, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"middle", 4, 6, []uint64{1, 2, 3, 7, 8, 9, 10}},
		{"one", 5, 5, []uint64{1, 2, 3, 4, 6, 7, 8, 9, 10}},
		{"all and more", 0, 1<<64 - 1, nil},
		{"beyond", 11, 20, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"reversed", 5, 4, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			storeRange(t, s, 1, 10)
			if err := s.DeleteRange(tt.first, tt.last); err != nil {
				t.Fatalf("DeleteRange: %v", err)
			}
			if got := present(t, s, 1, 10); !equalIndexes(got, tt.want) {
				t.Errorf("left %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDeleteRangeAcrossPages deletes a range spanning many bbolt pages in
// one transaction, which is where deleting under a cursor could skip keys.
func TestDeleteRangeAcrossPages(t *testing.T) {
	s := newStore(t)
	const n = 3000
	storeRange(t, s, 1, n)
	if err := s.DeleteRange(101, n-100); err != nil {
		t.Fatalf("DeleteRange: %v", err)
	}
	got := present(t, s, 1, n)
	if len(got) != 200 || got[99] != 100 || got[100] != n-99 {
		t.Errorf("left %d entries (%v…), want 1..100 and %d..%d", len(got), got[:min(len(got), 5)], n-99, n)
	}
	if first, last := bounds(t, s); first != 1 || last != n {
		t.Errorf("First/LastIndex = %d/%d, want 1/%d", first, last, n)
	}
}

// present lists which indexes from first to last GetLog finds.
func present(t *testing.T, s *Store, first, last uint64) []uint64 {
	t.Helper()
	var got []uint64
	for i := first; i <= last; i++ {
		var l raft.Log
		switch err := s.GetLog(i, &l); err {
		case nil:
			got = append(got, i)
		case raft.ErrLogNotFound:
		default:
			t.Fatalf("GetLog(%d): %v", i, err)
		}
	}
	return got
}

func equalIndexes(a, b []uint64) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestStable(t *testing.T) {
	s := newStore(t)
	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Errorf("Get = %q, %v; want v", v, err)
	}
	if err := s.Set([]byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get([]byte("k"))
	if err != nil || string(v) != "v2" {
		t.Errorf("Get after overwrite = %q, %v; want v2", v, err)
	}
	v[0] = 'X'
	if v, _ := s.Get([]byte("k")); string(v) != "v2" {
		t.Errorf("stored value changed through a returned slice: %q", v)
	}

	if err := s.SetUint64([]byte("n"), 1<<40+7); err != nil {
		t.Fatalf("SetUint64: %v", err)
	}
	if n, err := s.GetUint64([]byte("n")); err != nil || n != 1<<40+7 {
		t.Errorf("GetUint64 = %d, %v; want %d", n, err, uint64(1<<40+7))
	}

	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Errorf("Get of an empty value = %#v, %v; want empty, non-nil, no error", v, err)
	}
}

func TestStableErrors(t *testing.T) {
	s := newStore(t)
	if err := s.Set([]byte("kk"), []byte("short")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want string // exact error text
	}{
		{"Get missing", func() error { _, err := s.Get([]byte("missing")); return err }, "not found"},
		{"Get prefix of a key", func() error { _, err := s.Get([]byte("k")); return err }, "not found"},
		{"GetUint64 missing", func() error { _, err := s.GetUint64([]byte("missing")); return err }, "not found"},
		{"GetUint64 of a Set value", func() error { _, err := s.GetUint64([]byte("kk")); return err },
			`raftbolt: GetUint64 "kk": stored value is 5 bytes, want 8`},
		{"Set empty key", func() error { return s.Set(nil, []byte("v")) }, "raftbolt: Set: key is empty"},
		{"SetUint64 empty key", func() error { return s.SetUint64([]byte{}, 1) }, "raftbolt: Set: key is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || err.Error() != tt.want {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
	if n, err := s.GetUint64([]byte("missing")); n != 0 || !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("GetUint64 missing = %d, %v; want 0, ErrKeyNotFound", n, err)
	}
}

// TestRaftSeesAFreshStore checks the store against raft's own test for
// existing state, which matches a missing key by its error text.
func TestRaftSeesAFreshStore(t *testing.T) {
	s := newStore(t)
	snaps := raft.NewInmemSnapshotStore()
	if has, err := raft.HasExistingState(s, s, snaps); err != nil || has {
		t.Errorf("HasExistingState of a fresh store = %v, %v; want false, nil", has, err)
	}
	storeRange(t, s, 1, 1)
	if has, err := raft.HasExistingState(s, s, snaps); err != nil || !has {
		t.Errorf("HasExistingState with a log = %v, %v; want true, nil", has, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := tempPath(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := raft.Log{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte("d"),
		Extensions: []byte("e"), AppendedAt: time.Unix(1700000000, 42)}
	storeRange(t, s, 1, 2)
	if err := errors.Join(s.StoreLog(&want), s.Set([]byte("k"), []byte("v")),
		s.SetUint64([]byte("CurrentTerm"), 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, path)
	if first, last := bounds(t, s); first != 1 || last != 3 {
		t.Errorf("First/LastIndex after reopen = %d/%d, want 1/3", first, last)
	}
	var got raft.Log
	if err := s.GetLog(3, &got); err != nil || !sameLog(got, want) {
		t.Errorf("GetLog after reopen = %+v, %v; want %+v", got, err, want)
	}
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Errorf("Get after reopen = %q, %v", v, err)
	}
	if n, err := s.GetUint64([]byte("CurrentTerm")); err != nil || n != 2 {
		t.Errorf("GetUint64 after reopen = %d, %v", n, err)
	}
}

func TestFileMode(t *testing.T) {
	path := tempPath(t)
	open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
		t.Errorf("file mode = %v, want at most 0600", perm)
	}
}

func TestOpenLockedFailsAfterTimeout(t *testing.T) {
	path := tempPath(t)
	s := open(t, path)
	const timeout = 50 * time.Millisecond
	start := time.Now()
	s2, err := Open(path, Options{Timeout: timeout})
	waited := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of an open file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "50ms") {
		t.Errorf("error = %v, want ErrLocked naming the path and the timeout", err)
	}
	if waited < timeout {
		t.Errorf("gave up after %v, before the %v timeout", waited, timeout)
	}
	// Once the first store closes, the file opens again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, path)
}

func TestOpenErrors(t *testing.T) {
	missingDir := filepath.Join(t.TempDir(), "no", "such", "dir", "raft.db")
	tests := []struct {
		name string
		path string
		opts Options
		want string // in the error text
	}{
		{"empty path", "", Options{}, "path is empty"},
		{"negative timeout", tempPath(t), Options{Timeout: -time.Second}, "Options.Timeout is -1s"},
		{"missing directory", missingDir, Options{}, missingDir},
		{"path is a directory", t.TempDir(), Options{}, "raftbolt: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(tempPath(t), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 1, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	var l raft.Log
	tests := []struct {
		name string
		call func() error
	}{
		{"FirstIndex", func() error { _, err := s.FirstIndex(); return err }},
		{"LastIndex", func() error { _, err := s.LastIndex(); return err }},
		{"GetLog", func() error { return s.GetLog(1, &l) }},
		{"StoreLog", func() error { return s.StoreLog(&raft.Log{Index: 2}) }},
		{"DeleteRange", func() error { return s.DeleteRange(1, 1) }},
		{"Set", func() error { return s.Set([]byte("k"), nil) }},
		{"Get", func() error { _, err := s.Get([]byte("k")); return err }},
		{"SetUint64", func() error { return s.SetUint64([]byte("k"), 1) }},
		{"GetUint64", func() error { _, err := s.GetUint64([]byte("k")); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != ErrClosed {
				t.Errorf("after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestCorruptRecords plants bad records with bbolt directly and checks that
// reading them fails with an error naming the index.
func TestCorruptRecords(t *testing.T) {
	path := tempPath(t)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(logsBucket))
		good := bytes.Clone(b.Get(indexKey(1)))
		return errors.Join(
			b.Put(indexKey(2), good[:len(good)-1]), // truncated
			b.Put(indexKey(3), good),               // holds index 1
		)
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	for _, index := range []uint64{2, 3} {
		var l raft.Log
		err := s.GetLog(index, &l)
		var ce *CorruptLogError
		if !errors.As(err, &ce) || ce.Index != index || !errors.Is(err, ErrCorrupt) ||
			!strings.Contains(err.Error(), fmt.Sprintf("index %d:", index)) {
			t.Errorf("GetLog(%d) = %v, want a CorruptLogError for index %d", index, err, index)
		}
	}
}

func TestCorruptKey(t *testing.T) {
	path := tempPath(t)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(logsBucket)).Put([]byte("bad"), []byte("x"))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	if _, err := s.FirstIndex(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("FirstIndex with a 3-byte key = %v, want ErrCorrupt", err)
	}
}
