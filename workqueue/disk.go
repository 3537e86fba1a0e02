package workqueue

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Disk is a durable work queue: a Memory whose changes are logged to a
// file in its directory, so that it survives the process being killed
// with nothing lost. Enqueue, Ack, Nack and Requeue return once their
// change is on disk (fsynced); changes made meanwhile by other callers
// share one write and one fsync, so throughput grows with the number of
// callers while each waits about one fsync.
//
// Claims are not logged: after a restart every item that was claimed is
// claimable again, as if its lease had expired, but without counting an
// expiry, since the queue cannot tell a crashed worker from its own
// crash. An item acked just before a crash may therefore run again after
// it if its Ack had not returned; an item whose Ack returned never does.
//
// One process at a time may open a directory; a second gets an error.
type Disk struct {
	*Memory
	unlock    func()
	closeOnce sync.Once
	closeErr  error
}

// OpenDisk opens the durable queue in dir, creating the directory if it
// does not exist, and restores what it held. The options are those of
// NewMemory.
func OpenDisk(dir string, opts ...Option) (*Disk, error) {
	if dir == "" {
		return nil, invalid("empty directory")
	}
	q, err := NewMemory(opts...)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		q.Close()
		return nil, fmt.Errorf("workqueue: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		q.Close()
		return nil, err
	}
	fail := func(err error) (*Disk, error) {
		q.Close()
		unlock()
		return nil, fmt.Errorf("workqueue: opening %s: %w", dir, err)
	}
	live, groups, epoch, size, err := replay(dir)
	if err != nil {
		return fail(err)
	}
	epoch++
	q.lockAll()
	s0 := q.shards[0] // every item restored has an ID, so goes there
	s0.groups = groups
	q.epoch = epoch
	for _, s := range q.shards {
		s.token = epoch<<epochShift + uint64(s.idx)
	}
	now := q.now()
	for _, l := range live {
		s0.restore(l, now)
	}
	var snap []byte
	if size >= compactMin {
		snap = q.snapshotLocked()
	}
	q.unlockAll()
	if snap != nil && int64(len(snap)) <= size/2 {
		// Mostly done items: start from what is left.
		if err := writeSnapshot(dir, snap); err != nil {
			return fail(err)
		}
		size = int64(len(snap))
	}
	j, err := openJournal(dir, size)
	if err != nil {
		return fail(err)
	}
	q.j = j
	j.snapshot = func() ([]byte, *commit) {
		q.lockAll()
		defer q.unlockAll()
		return q.snapshotLocked(), j.cut()
	}
	go j.commit()
	// This run's epoch is on disk before any claim carries it.
	g := j.add(record{kind: recEpoch, at: int64(epoch)})
	if err := g.wait(); err != nil {
		q.Close()
		unlock()
		return nil, fmt.Errorf("workqueue: opening %s: %w", dir, err)
	}
	return &Disk{Memory: q, unlock: unlock}, nil
}

// Close writes what is pending, closes the log and unlocks the
// directory. It is idempotent.
func (d *Disk) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = d.Memory.Close()
		d.unlock()
	})
	return d.closeErr
}

// liveItem is an item the log says the queue holds.
type liveItem struct {
	seq                int // order: enqueued or requeued
	item               Item
	failures, expiries int
	retryAt            int64 // Unix ns after a failure, or 0
	dead               bool
	deadAt             int64
	reason             string
}

// replay reads the log and returns what it holds, in queue order, its
// join groups, the last run's epoch, and the length of its whole records.
func replay(dir string) ([]*liveItem, map[string]*group, uint64, int64, error) {
	byID := map[string]*liveItem{}
	groups := map[string]*group{}
	var epoch uint64
	n := 0
	var apply func(r record)
	apply = func(r record) {
		if r.kind == recBatch {
			for _, in := range r.batch {
				apply(in)
			}
			return
		}
		n++
		l := byID[r.id]
		switch r.kind {
		case recEnqueue:
			if l == nil {
				it := Item{ID: r.id, Key: r.key, Payload: r.payload}
				if r.notBefore != 0 {
					it.NotBefore = time.Unix(0, r.notBefore)
				}
				byID[r.id] = &liveItem{seq: n, item: it}
			}
		case recAck:
			delete(byID, r.id)
		case recRetry:
			if l != nil {
				l.failures, l.expiries, l.retryAt = r.failures, r.expiries, r.notBefore
			}
		case recDead:
			if l != nil {
				l.dead, l.failures, l.expiries, l.deadAt, l.reason = true, r.failures, r.expiries, r.at, r.reason
			}
		case recRequeue:
			if l != nil {
				*l = liveItem{seq: n, item: l.item}
			}
		case recEpoch:
			epoch = max(epoch, uint64(r.at))
		case recMember:
			g := groups[r.id]
			if g == nil {
				g = &group{size: r.failures, values: map[string][]byte{}}
				groups[r.id] = g
			}
			if !g.fired {
				g.values[r.key] = r.payload
			}
		case recFired:
			groups[r.id] = &group{fired: true}
		}
	}
	size, err := readLog(filepath.Join(dir, logName), apply)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	live := make([]*liveItem, 0, len(byID))
	for _, l := range byID {
		live = append(live, l)
	}
	slices.SortFunc(live, func(a, b *liveItem) int { return a.seq - b.seq })
	return live, groups, epoch, size, nil
}

// restore puts back an item from the log; s.mu held.
func (s *shard) restore(l *liveItem, now mono) {
	e := s.newEntry(&l.item, l.item.ID)
	e.enq = unknownTime
	// Attempts are not logged; those the counts show are a lower bound.
	e.item.Attempt = l.failures + l.expiries
	e.failures, e.expiries, e.reason = l.failures, l.expiries, l.reason
	s.ids[e.item.ID], e.given = e, true
	if l.dead {
		s.seq++
		e.seq = s.seq
		e.state, e.at = stDead, s.q.mono(time.Unix(0, l.deadAt))
		s.dead[e.item.ID] = e
		return
	}
	at := s.q.mono(e.item.NotBefore)
	if l.retryAt != 0 {
		at = s.q.mono(time.Unix(0, l.retryAt))
	}
	s.place(e, at, now)
}

// snapshotLocked returns the queue's state as log records, in queue
// order: each item's enqueue, and its retry or dead-letter state. Claims
// are left out, as in the log. Every shard's lock held.
func (q *Memory) snapshotLocked() []byte {
	var es []*entry
	for _, s := range q.shards {
		es = s.appendEntries(es)
	}
	// Keyed items, whose order matters, are all in the first shard.
	slices.SortFunc(es, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.s.idx, b.s.idx))
	})
	buf := appendRecord(nil, &record{kind: recEpoch, at: int64(q.epoch)})
	groups := q.shards[0].groups
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g := groups[name]
		if g.fired {
			buf = appendRecord(buf, &record{kind: recFired, id: name})
			continue
		}
		for _, m := range g.members() {
			buf = appendRecord(buf, &record{kind: recMember, id: name, key: m, failures: g.size, payload: g.values[m]})
		}
	}
	for _, e := range es {
		it := &e.item
		buf = appendRecord(buf, &record{kind: recEnqueue, id: it.ID, key: it.Key, notBefore: unixNano(it.NotBefore), payload: it.Payload})
		switch {
		case e.state == stDead:
			buf = appendRecord(buf, &record{kind: recDead, id: it.ID, failures: e.failures, expiries: e.expiries, at: q.time(e.at).UnixNano(), reason: e.reason})
		case e.failures > 0 || e.expiries > 0:
			r := record{kind: recRetry, id: it.ID, failures: e.failures, expiries: e.expiries}
			if e.state == stDelayed && e.failures > 0 {
				r.notBefore = q.time(e.at).UnixNano()
			}
			buf = appendRecord(buf, &r)
		}
	}
	return buf
}

// appendEntries appends every entry the shard holds; s.mu held.
func (s *shard) appendEntries(es []*entry) []*entry {
	for _, e := range s.ids {
		es = append(es, e)
	}
	for _, e := range s.dead {
		if !e.given {
			es = append(es, e)
		}
	}
	// Generated items that are not dead are in no map: find them where
	// they wait. Each entry is in one place: a key's head is ready,
	// delayed or claimed; the rest of its chain is behind.
	generated := func(e *entry) {
		if !e.given {
			es = append(es, e)
		}
	}
	for i := range s.ready.size {
		generated(s.ready.at(i))
	}
	for _, e := range s.delayed {
		generated(e)
	}
	for _, e := range s.leases {
		generated(e)
	}
	for _, k := range s.keys {
		for e := k.head.next; e != nil; e = e.next {
			generated(e)
		}
	}
	return es
}
