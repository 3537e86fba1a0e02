package workqueue

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// The durable queue keeps a write-ahead log of what changed: items
// enqueued, acked, retried, buried and requeued. Claims are not logged:
// after a restart every claimed item is claimable again.
//
// A record is a little-endian uint32 length, a uint32 CRC-32C of the
// body, and the body: a kind byte and its fields, strings and bytes with
// uvarint lengths, numbers as varints. A torn or corrupt tail, as a kill
// leaves, ends the log; opening cuts it off.

const (
	recEnqueue = 'E' // id, key, not-before, payload
	recAck     = 'A' // id
	recRetry   = 'R' // id, failures, expiries, not-before
	recDead    = 'D' // id, failures, expiries, at, reason
	recRequeue = 'Q' // id
	recEpoch   = 'T' // "", epoch (in at): claim tokens start above epoch<<epochShift
	recMember  = 'M' // group (in id), member (in key), size (in failures), value (in payload)
	recFired   = 'F' // group (in id)
	recBatch   = 'B' // "", then whole records: one operation's, all or none
)

// epochShift places a run's epoch above its claim counter in tokens, so
// that tokens keep growing across restarts of a durable queue: 2^23
// runs, and in each 2^40 tokens, which the shards share (each counts by
// the number of shards), so 2^40/n claims a run from each of n shards:
// 1.7×10^10 with the most, 64.
const epochShift = 40

const logName = "queue.log"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one decoded log record. Times are Unix nanoseconds, 0 for
// none.
type record struct {
	kind               byte
	id, key, reason    string
	payload            []byte
	notBefore, at      int64
	failures, expiries int
	batch              []record // of a recBatch
}

func appendRecord(buf []byte, r *record) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, r.kind)
	buf = appendString(buf, r.id)
	switch r.kind {
	case recEnqueue:
		buf = appendString(buf, r.key)
		buf = binary.AppendVarint(buf, r.notBefore)
		buf = appendBytes(buf, r.payload)
	case recRetry:
		buf = binary.AppendVarint(buf, int64(r.failures))
		buf = binary.AppendVarint(buf, int64(r.expiries))
		buf = binary.AppendVarint(buf, r.notBefore)
	case recDead:
		buf = binary.AppendVarint(buf, int64(r.failures))
		buf = binary.AppendVarint(buf, int64(r.expiries))
		buf = binary.AppendVarint(buf, r.at)
		buf = appendString(buf, r.reason)
	case recEpoch:
		buf = binary.AppendVarint(buf, r.at)
	case recMember:
		buf = appendString(buf, r.key)
		buf = binary.AppendVarint(buf, int64(r.failures))
		buf = appendBytes(buf, r.payload)
	case recBatch:
		for i := range r.batch {
			buf = appendRecord(buf, &r.batch[i])
		}
	}
	body := buf[start+8:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, crcTable))
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// maxRecord bounds a record's body: the largest payload, ID, key and
// reason with room to spare. A length beyond it is corruption.
const maxRecord = 1<<30 - 1

var errCorrupt = errors.New("corrupt record")

// decodeRecord decodes a body.
func decodeRecord(body []byte) (record, error) {
	d := decoder{b: body}
	r := record{kind: d.byte()}
	r.id = d.string()
	switch r.kind {
	case recEnqueue:
		r.key = d.string()
		r.notBefore = d.varint()
		r.payload = d.bytes()
	case recAck, recRequeue:
	case recRetry:
		r.failures, r.expiries = int(d.varint()), int(d.varint())
		r.notBefore = d.varint()
	case recDead:
		r.failures, r.expiries = int(d.varint()), int(d.varint())
		r.at = d.varint()
		r.reason = d.string()
	case recEpoch:
		r.at = d.varint()
	case recMember:
		r.key = d.string()
		r.failures = int(d.varint())
		r.payload = d.bytes()
	case recFired:
	case recBatch:
		// The inner records are whole, or the batch is corrupt: one CRC
		// covers them all.
		nested := false
		n := readRecords(bytes.NewReader(d.b), func(in record) {
			nested = nested || in.kind == recBatch
			r.batch = append(r.batch, in)
		})
		if int(n) != len(d.b) || len(r.batch) == 0 || nested {
			return r, fmt.Errorf("%w: batch", errCorrupt)
		}
		d.b = nil
	default:
		return r, fmt.Errorf("%w: kind %q", errCorrupt, r.kind)
	}
	if d.err != nil || len(d.b) != 0 {
		return r, fmt.Errorf("%w: kind %q", errCorrupt, r.kind)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a length-prefixed field as a copy of its own.
func (d *decoder) bytes() []byte {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errCorrupt
		return nil
	}
	b := bytes.Clone(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return b
}

func (d *decoder) string() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

// readLog calls fn for each whole record of the log at path, in order,
// and returns the length of the whole records: what follows is a torn or
// corrupt tail.
func readLog(path string, fn func(record)) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readRecords(bufio.NewReaderSize(f, 1<<20), fn), nil
}

// readRecords calls fn for each whole record read from br, and returns
// the length of the whole records.
func readRecords(br io.Reader, fn func(record)) int64 {
	var good int64
	var head [8]byte
	var body []byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return good // the end, or a torn header
		}
		n := binary.LittleEndian.Uint32(head[:])
		if n == 0 || n > maxRecord {
			return good
		}
		// Memory grows with the bytes actually read, not with what a
		// corrupt length claims.
		body = body[:0]
		for len(body) < int(n) {
			k := min(int(n)-len(body), 1<<20)
			body = slices.Grow(body, k)
			if _, err := io.ReadFull(br, body[len(body):len(body)+k]); err != nil {
				return good
			}
			body = body[:len(body)+k]
		}
		if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(head[4:]) {
			return good
		}
		r, err := decodeRecord(body)
		if err != nil {
			return good
		}
		fn(r)
		good += 8 + int64(n)
	}
}

// journal appends records to the log and makes them durable in groups:
// the operations that append while one group is being written and
// synced wait for the next, which writes them all with one fsync.
type journal struct {
	dir string

	mu      sync.Mutex
	f       *os.File
	size    int64   // bytes in the file
	buf     []byte  // appended, not yet written
	cur     *commit // what buf will be written as
	writing *commit // what the committer is writing, if anything
	err     error   // a failed write or sync: the log is no longer whole
	closing bool
	wake    chan struct{} // buffered: buf has records
	done    chan struct{} // closed when the committer has stopped

	compactAt   int64                    // size at which to compact
	snapshot    func() ([]byte, *commit) // the queue's state as records, and cut's commit
	compactions int
}

// commit is the records one write and fsync make durable.
type commit struct {
	done chan struct{} // closed once written and synced, or failed
	err  error
}

func newCommit() *commit { return &commit{done: make(chan struct{})} }

// wait waits until the commit is durable; a nil commit (no log) at once.
func (g *commit) wait() error {
	if g == nil {
		return nil
	}
	<-g.done
	return g.err
}

// openJournal opens the log in dir for appending after its first size
// bytes (the whole records), cutting off a torn tail.
func openJournal(dir string, size int64) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, logName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	j := &journal{dir: dir, f: f, size: size, cur: newCommit(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	j.compactAt = max(compactMin, 4*size)
	return j, nil
}

// compactMin is the least log size at which the log is compacted; then
// again each time it has grown to four times its size after the last
// compaction.
var compactMin int64 = 64 << 20

// writeSnapshot replaces the log in dir with snap, atomically: a crash
// leaves the old log or the new one.
func writeSnapshot(dir string, snap []byte) error {
	tmp := filepath.Join(dir, logName+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(snap); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, logName)); err != nil {
		return err
	}
	return syncDir(dir)
}

// cut drops the pending records, whose effect a snapshot taken under
// the queue's lock holds, and returns the commit they were waiting for,
// which compact completes. Records appended after it go to the new log.
func (j *journal) cut() *commit {
	j.mu.Lock()
	defer j.mu.Unlock()
	g := j.cur
	// g is on its way to disk, in the snapshot: an operation that
	// repeats a change in it must wait for it, as for any commit.
	j.buf, j.cur, j.writing = j.buf[:0], newCommit(), g
	return g
}

// compact replaces the log with snap and completes g, the commit cut
// returned. The committer calls it between groups, without the queue's
// lock: operations go on meanwhile, and their records follow the
// snapshot in the new log.
func (j *journal) compact(snap []byte, g *commit) {
	err := writeSnapshot(j.dir, snap)
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(filepath.Join(j.dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	}
	j.mu.Lock()
	if err != nil {
		err = fmt.Errorf("workqueue: compacting the log: %w", err)
		if j.err == nil {
			j.err = err
		}
	} else {
		j.f.Close()
		j.f, j.size = f, int64(len(snap))
		j.compactAt = max(compactMin, 4*j.size)
		j.compactions++
	}
	j.writing = nil
	g.err = err
	close(g.done)
	j.mu.Unlock()
}

// add appends an operation's records, in one batch record if more than
// one, so that a crash keeps all or none; it returns the commit that will
// make them durable.
//
// With no records it returns the pending commit: an operation that
// changed nothing (a duplicate, say) must still not return before the
// change it repeats, which may be in that commit, is durable.
func (j *journal) add(rs ...record) *commit {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(rs) == 0 {
		if len(j.buf) == 0 {
			return j.writing // nil if nothing is on its way to disk
		}
		return j.cur // written after j.writing, so waiting on it covers both
	}
	if len(rs) == 1 {
		j.buf = appendRecord(j.buf, &rs[0])
	} else {
		j.buf = appendRecord(j.buf, &record{kind: recBatch, batch: rs})
	}
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return j.cur
}

// failed returns the error that broke the log, if any.
func (j *journal) failed() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// commit writes and syncs groups until the journal closes.
func (j *journal) commit() {
	defer close(j.done)
	var spare []byte
	for {
		<-j.wake
		j.mu.Lock()
		buf, g, closing := j.buf, j.cur, j.closing
		j.buf, j.cur, j.writing = spare[:0], newCommit(), g
		f, err := j.f, j.err
		j.mu.Unlock()
		if err == nil && len(buf) > 0 {
			if _, err = f.Write(buf); err == nil {
				err = f.Sync()
			}
			if err != nil {
				err = fmt.Errorf("workqueue: writing the log: %w", err)
			}
		}
		j.mu.Lock()
		if err != nil && j.err == nil {
			j.err = err
		}
		if err == nil {
			j.size += int64(len(buf))
		}
		g.err = err
		close(g.done)
		j.writing = nil
		due := j.err == nil && j.size >= j.compactAt
		j.mu.Unlock()
		spare = buf
		if closing {
			return
		}
		if due {
			j.compact(j.snapshot())
		}
	}
}

// close writes what is pending, stops the committer and closes the file.
func (j *journal) close() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		<-j.done
		return nil
	}
	j.closing = true
	select {
	case j.wake <- struct{}{}:
	default:
	}
	j.mu.Unlock()
	<-j.done
	err := j.failed()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a directory's entries durable (a created or renamed file).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
