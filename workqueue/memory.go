package workqueue

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/distkit/distkit/internal/clock"
	"github.com/distkit/distkit/internal/latency"
	"github.com/distkit/distkit/internal/procid"
	"go.uber.org/zap"
)

// Memory is a work queue held in memory: fast, and gone with the process.
// It is safe for concurrent use. Make one with NewMemory.
//
// It keeps its items in shards, one per P (GOMAXPROCS), each with its own
// lock, so that workers on different cores seldom touch the same memory.
// An item with no key and no ID of its own goes to the shard of the P
// that enqueued it, and a claim looks first in its own P's shard (or, for
// a few claims after finding it empty, in the first), then in the
// others. Items with a key or an ID of their own all go to the first
// shard, which dedup and key order need in one place, with the rest of
// their batch; so do the items a durable queue restores. Order is therefore
// FIFO within a shard, and only roughly so across shards: a claim looks
// first in another shard now and then, so that no shard's items wait
// behind the others' for long. WithShards(1) keeps one strict FIFO.
type Memory struct {
	o      options
	prefix string        // of generated IDs
	base   time.Time     // when made: times are kept as nanoseconds since
	coarse *clock.Coarse // the real clock, read cheaply; nil on a fake one
	shards []*shard      // [0] also holds the keyed items, given IDs and groups
	j      *journal      // the log, for a durable queue
	epoch  uint64        // a durable queue's run
	closed atomic.Bool
	// gen counts the IDs handed to shards to generate, idChunk at a time.
	// Padded: each add would take the line of the fields above, which
	// every call reads, from the other cores.
	_   [64]byte
	gen atomic.Uint64
	_   [56]byte

	wmu     sync.Mutex
	waiters waiterList   // Claims blocked for want of items
	nwait   atomic.Int32 // waiters.len(), read without wmu
}

// shard holds some of a Memory's items under its own lock.
type shard struct {
	q          *Memory
	idx        int
	mu         sync.Mutex
	ids        map[string]*entry // items with given IDs, by ID
	ready      ring              // claimable now, in order
	delayed    entryHeap         // waiting for their time: not-before or backoff
	leases     entryHeap         // claimed, by deadline
	keys       map[string]*keyQueue
	groups     map[string]*group // joins and reduces whose result comes here
	timer      clock.Timer
	timerAt    mono
	lastAt     mono      // the last Deadline converted, and what it came to:
	lastTime   time.Time // the coarse clock makes many deadlines alike
	token      uint64    // the last claim's: tokens step by len(shards)
	genIDs     string    // a chunk of generated IDs, used up to genOff
	genOff     int
	genLen     int // of each ID in genIDs
	dead       map[string]*entry
	free       []*entry
	behind     int             // items behind an earlier one of their key
	seq        uint64          // items placed, for their order
	takenAt    atomic.Int64    // mono: when an item was last taken, to the coarse clock's tick
	probeAt    atomic.Int64    // mono: when a claim from here next looks for starving shards
	zeroFirst  atomic.Int32    // claims from here to look in shard 0 first: see tryClaim
	latency    *latency.Window // enqueue to ack
	sampleMask uint64          // Ack records latencies for one ack in sampleMask+1
	sampleRand uint64          // xorshift state: which acks
	sampleN    int             // latencies recorded since sampleAt
	sampleAt   mono
	handling   *latency.Window // claim to ack
	st         counters
	_          [32]byte // to 448 bytes, a multiple of 64: shards share no cache line
}

// entry is the queue's record of one item.
type entry struct {
	s        *shard
	item     Item
	state    state
	token    uint64 // the current claim's
	at       mono   // delayed: when claimable; claimed: the deadline; dead: since
	idx      int    // in delayed or leases
	failures int
	expiries int
	reason   string
	next     *entry   // behind this one on its key
	given    bool     // its ID was given, so it is in ids
	seq      uint64   // queue order: enqueued or requeued
	enq      mono     // when enqueued, or unknownTime (restored from disk)
	claimed  mono     // when last claimed
	_        [48]byte // to 256 bytes: entries of shards on other cores share no cache line
}

// unknownTime marks a time the queue does not know.
const unknownTime = mono(math.MinInt64)

type state uint8

const (
	stReady   state = iota + 1 // in ready
	stDelayed                  // in delayed
	stClaimed                  // in leases
	stBehind                   // behind an earlier item of its key
	stDead                     // a dead letter
)

// keyQueue orders the items of one key: head is the one that may run
// (ready, delayed or claimed); the rest wait behind it.
type keyQueue struct {
	head, tail *entry
}

type counters struct {
	enqueued, duplicates, claimed, done, retried, deadLettered, expired, requeued uint64
}

// add adds o's counts to c's.
func (c *counters) add(o *counters) {
	c.enqueued += o.enqueued
	c.duplicates += o.duplicates
	c.claimed += o.claimed
	c.done += o.done
	c.retried += o.retried
	c.deadLettered += o.deadLettered
	c.expired += o.expired
	c.requeued += o.requeued
}

// NewMemory returns an empty in-memory queue.
func NewMemory(opts ...Option) (*Memory, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	var b [5]byte
	crand.Read(b[:])
	q := &Memory{
		o:      o,
		prefix: base32.HexEncoding.EncodeToString(b[:]) + "-",
		base:   o.clock.Now(),
	}
	n := min(runtime.GOMAXPROCS(0), maxShards)
	if o.shards > 0 {
		n = o.shards
	}
	for i := range n {
		s := &shard{
			q: q, idx: i,
			ids:    make(map[string]*entry),
			dead:   make(map[string]*entry),
			keys:   make(map[string]*keyQueue),
			groups: make(map[string]*group),
			token:  uint64(i),
			// Any seed but 0; the same each run is fine.
			sampleRand: uint64(i+1) * 0x9e3779b97f4a7c15,
		}
		// Made here, and 128 bytes or more, so that no shard's slices
		// share a cache line with another's.
		s.ready.buf = make([]*entry, 16)
		s.leases = make(entryHeap, 0, 16)
		s.free = make([]*entry, 0, 16)
		s.latency, s.handling = latency.New(&s.mu), latency.New(&s.mu)
		q.shards = append(q.shards, s)
	}
	if o.clock == clock.Real {
		q.coarse = clock.NewCoarse(q.base)
	}
	return q, nil
}

const (
	// maxShards bounds the shards, whatever GOMAXPROCS says: a claim
	// that finds its own empty looks through them all.
	maxShards = 64
	// starveAfter: a shard that has had nothing taken for this long is
	// looked at first by the claims of the others, at most once each
	// starveAfter, so that its items are claimed even while its own
	// workers are busy with their own, or absent.
	starveAfter = mono(time.Millisecond)
	// zeroFirstRun is how many claims look in shard 0 before their own
	// shard, after one found its own empty and took from shard 0.
	zeroFirstRun = 16
)

// local returns the shard of the caller's P.
func (q *Memory) local() *shard {
	switch {
	case len(q.shards) == 1:
		return q.shards[0]
	case q.o.pick != nil:
		return q.shards[q.o.pick()%len(q.shards)]
	}
	id := procid.Get()
	if id >= len(q.shards) { // GOMAXPROCS grew since
		id %= len(q.shards)
	}
	return q.shards[id]
}

// mono is a time on the queue's clock, in nanoseconds since base: cheaper
// to read and compare than a time.Time, and every claim reads one.
type mono int64

// now reads the queue's clock. The real clock is read through a Coarse
// clock, up to about a millisecond behind: a claim's Deadline may be that
// much earlier than now plus its lease, never later, and the queue takes
// an item back no earlier than the Deadline it reported.
func (q *Memory) now() mono {
	if q.coarse != nil {
		return mono(q.coarse.Since())
	}
	return mono(q.o.clock.Now().Sub(q.base))
}

// mono converts t to the queue's clock, t zero to 0 (long past).
func (q *Memory) mono(t time.Time) mono {
	if t.IsZero() {
		return 0
	}
	return mono(t.Sub(q.base))
}

// time converts m to a time.Time.
func (q *Memory) time(m mono) time.Time { return q.base.Add(time.Duration(m)) }

// deadline is time for a lease's end; s.mu held. Claims in the same tick
// of the coarse clock with the same lease end alike, so it keeps the last.
func (s *shard) deadline(m mono) time.Time {
	if m != s.lastAt || s.lastTime.IsZero() {
		s.lastAt, s.lastTime = m, s.q.time(m)
	}
	return s.lastTime
}

// nextID returns a new generated ID: the queue's prefix and a count in
// hex, two digits or more. They are made idChunk at a time into one
// string (refillIDs), so that each costs no allocation of its own;
// shards take their chunks from one count, so that no two generate the
// same ID and the IDs stay short (15 bytes for the first 16M items), for
// each is allocated, and allocation paces the GC.
func (s *shard) nextID() string {
	if s.genOff == len(s.genIDs) {
		s.refillIDs()
	}
	// An offset, not a shorter string: writing a pointer into the shard
	// costs a write barrier while the GC marks.
	off := s.genOff
	s.genOff += s.genLen
	return s.genIDs[off:s.genOff]
}

// refillIDs makes the next chunk of generated IDs. A chunk starts at a
// multiple of 64, so its IDs have as many digits (the count gains one at
// powers of 16) and differ only in their last two: it lays out the first
// ID, doubles it up to the chunk with six copies, then writes two digits
// per ID.
func (s *shard) refillIDs() {
	q := s.q
	base := q.gen.Add(idChunk) - idChunk
	digits := max(2, (bits.Len64(base+idChunk-1)+3)/4)
	n := len(q.prefix) + digits
	buf := make([]byte, idChunk*n)
	copy(buf, q.prefix)
	for k, v := n-1, base; k >= len(q.prefix); k-- {
		buf[k] = hexDigits[v&15]
		v >>= 4
	}
	for m := n; m < len(buf); m *= 2 {
		copy(buf[m:], buf[:m])
	}
	hi := base >> 4 & 15 // 0, 4, 8 or 12: room for j>>4
	for j := range uint64(idChunk) {
		end := int(j+1) * n
		buf[end-1] = hexDigits[j&15]
		buf[end-2] = hexDigits[hi|j>>4]
	}
	s.genIDs, s.genOff, s.genLen = unsafe.String(&buf[0], len(buf)), 0, n // buf is never written again
}

const hexDigits = "0123456789abcdef"

// maxFree bounds the entries kept for reuse.
const maxFree = 4096

const idChunk = 64 // nextID's two last digits count to 256: 16 to 256, a power of two

// Enqueue adds items, all or none: it checks every one first. Items
// whose ID the queue holds, or given twice, are ignored after the first.
func (q *Memory) Enqueue(ctx context.Context, items ...Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Items with a key or an ID of their own go to the first shard,
	// where dedup and key order need them all; the rest to the caller's.
	s, total := (*shard)(nil), int64(0)
	for i := range items {
		it := &items[i]
		// A plain item, the common one, passes here without a call: a
		// payload within the limit, and no ID, key or NotBefore. (The
		// calls cost 5% of the time of a fast queue.)
		if n := len(it.Payload); n == 0 || n > q.o.maxPayload || it.ID != "" || it.Key != "" || !it.NotBefore.IsZero() {
			if err := q.checkItem(i, it); err != nil {
				return err
			}
			if it.ID != "" || it.Key != "" {
				s = q.shards[0]
			}
		}
		total += it.logSize()
	}
	if err := checkBatchSize(len(items), total, maxRecord); err != nil {
		return err
	}
	if s == nil {
		s = q.local()
	}
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return err
	}
	g := s.enqueueLocked(items)
	s.mu.Unlock()
	return g.wait()
}

// checkItem checks item i of a call: its limits, and that a given ID
// cannot be taken for one this queue generates, which dedup would miss.
func (q *Memory) checkItem(i int, it *Item) error {
	if err := q.o.check(i, it); err != nil {
		return err
	}
	if strings.HasPrefix(it.ID, q.prefix) {
		return invalid("item %d: ID %q has the prefix of the IDs this queue generates (%q): give an ID of your own, or none", i, it.ID, q.prefix)
	}
	return nil
}

// enqueueLocked adds checked items; s.mu held. It returns the commit
// that makes them durable, if the queue is.
func (s *shard) enqueueLocked(items []Item, pre ...record) *commit {
	var now mono // read when first needed
	recs := pre
	for i := range items {
		given := items[i].ID != ""
		if given {
			if _, ok := s.ids[items[i].ID]; ok {
				s.st.duplicates++
				continue
			}
		}
		id := items[i].ID
		if !given {
			id = s.nextID()
		}
		e := s.newEntry(&items[i], id)
		it := &e.item
		if now == 0 {
			now = s.q.now()
		}
		e.enq = now
		if given {
			s.ids[id], e.given = e, true
		}
		s.st.enqueued++
		if s.q.j != nil {
			recs = append(recs, record{kind: recEnqueue, id: it.ID, key: it.Key, notBefore: unixNano(it.NotBefore), payload: it.Payload})
		}
		s.place(e, s.q.mono(it.NotBefore), now)
	}
	if s.q.j == nil {
		return nil
	}
	return s.q.j.add(recs...) // with none, the commit a duplicate's original may be in
}

// place queues e behind the items of its key, or schedules it at at.
func (s *shard) place(e *entry, at, now mono) {
	s.seq++
	e.seq = s.seq
	if key := e.item.Key; key != "" {
		if k := s.keys[key]; k != nil {
			k.tail.next, k.tail = e, e
			e.state = stBehind
			s.behind++
			return
		}
		s.keys[key] = &keyQueue{head: e, tail: e}
	}
	s.schedule(e, at, now)
}

// usable is its queue's.
func (s *shard) usable() error { return s.q.usable() }

// usable says why the queue cannot be used, if it cannot.
func (q *Memory) usable() error {
	if q.closed.Load() {
		return ErrClosed
	}
	if q.j != nil {
		return q.j.failed()
	}
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// schedule makes e ready, or delays it until at if that is after now.
func (s *shard) schedule(e *entry, at, now mono) {
	if at > now {
		e.state, e.at = stDelayed, at
		s.delayed.push(e)
		s.armLocked(now)
		return
	}
	e.state = stReady
	s.ready.push(e)
	s.q.wake()
}

// newEntry returns an entry for it under id, reused if one is free.
func (s *shard) newEntry(it *Item, id string) *entry {
	n := len(s.free)
	if n == 0 {
		e := &entry{s: s, item: *it}
		e.item.ID, e.item.Attempt = id, 0
		return e
	}
	e := s.free[n-1]
	s.free = s.free[:n-1]
	// What finish left is overwritten field by field, so that pointers
	// are written only where they change: each write of one costs a
	// barrier while the GC marks, and most items have no key and no
	// NotBefore, as the item before had none.
	e.item.ID, e.item.Payload, e.item.Attempt = id, it.Payload, 0
	if e.item.Key != it.Key {
		e.item.Key = it.Key
	}
	if e.item.NotBefore != it.NotBefore {
		e.item.NotBefore = it.NotBefore
	}
	e.state, e.token, e.at, e.idx, e.failures, e.expiries = 0, 0, 0, 0, 0, 0
	e.given, e.seq, e.enq, e.claimed = false, 0, 0, 0
	if e.reason != "" {
		e.reason = ""
	}
	if e.next != nil {
		e.next = nil
	}
	return e
}

// Latencies are sampled so that a window of them (the last 1024 to 2048)
// spans a second or more in each shard: every ack while a shard acks
// fewer than about a thousand items a second, and a random one in up to
// maxSampleEvery when it acks more. A random sample is unbiased; a
// sample by time (the first ack in each millisecond) favoured the acks
// that ended a quiet spell, the slow ones.
const (
	sampleWindow   = 1024 // samples a second at most: as many as latency.Window keeps at least
	maxSampleEvery = 64   // a power of two
)

// random returns the next of s's pseudo-random numbers; s.mu held.
func (s *shard) random() uint64 {
	x := s.sampleRand // xorshift64: never 0 from a seed that is not
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	s.sampleRand = x
	return x
}

// sampled counts a recorded latency and, every sampleWindow of them or
// four seconds, sets how many acks to sample from the rate they came
// at, in one step, so that a burst's sparse sampling ends with it; s.mu
// held.
func (s *shard) sampled(now mono) {
	s.sampleN++
	span := time.Duration(now - s.sampleAt)
	if s.sampleN < sampleWindow && span <= 4*time.Second {
		return
	}
	mask := uint64(maxSampleEvery - 1) // no time passed: as fast as can be
	if span > 0 {
		perSecond := float64(s.sampleN) * float64(s.sampleMask+1) / span.Seconds()
		for mask = 0; mask < maxSampleEvery-1 && perSecond > float64(sampleWindow*(mask+1)); {
			mask = mask<<1 | 1
		}
	}
	s.sampleMask, s.sampleN, s.sampleAt = mask, 0, now
}

// Claim takes the next claimable item, leasing it for lease, and blocks
// until there is one, ctx ends, or the queue closes.
func (q *Memory) Claim(ctx context.Context, lease time.Duration) (c Claim, err error) {
	if lease <= 0 {
		return Claim{}, invalid("lease %v: want more than 0", lease)
	}
	home := q.local()
	var w *waiter
	for {
		if err := ctx.Err(); err != nil {
			if w != nil && !q.unwait(w) {
				q.wake() // woken as ctx ended: the work is someone else's
			}
			return Claim{}, err
		}
		s, e, more, err := q.tryClaim(home, lease)
		if e != nil {
			c.set(e, s.deadline(e.at))
			s.mu.Unlock()
		}
		if err != nil || e != nil {
			if w != nil && !q.unwait(w) && (more || e != nil) {
				q.wake() // woken: the wake may have been for another shard's item
			}
			return c, err
		}
		if w == nil {
			w = &waiter{ch: make(chan struct{}, 1)}
		}
		if q.listWaiter(w) {
			continue // look again, now that an enqueue will wake it
		}
		q.armAll()
		select {
		case <-w.ch:
		case <-ctx.Done():
		}
	}
}

// tryClaim claims a ready item from home, or else from another shard,
// returning it with its shard's lock held, and whether the shard has
// more; with none, it holds no lock.
func (q *Memory) tryClaim(home *shard, lease time.Duration) (s *shard, e *entry, more bool, err error) {
	n := len(q.shards)
	// The clock is read again once a shard's lock is held: a wait for it
	// must not make the lease start in the past.
	now := q.now()
	if n > 1 && mono(home.probeAt.Load()) <= now {
		// Once in a while, look first for a shard that has had nothing
		// taken for a time, though it may hold items: its own workers
		// are busy, or gone. TryLock: a busy shard is not starving.
		home.probeAt.Store(int64(now + starveAfter))
		for i := 1; i < n; i++ {
			s := q.shards[(home.idx+i)%n]
			if now-mono(s.takenAt.Load()) < starveAfter || !s.mu.TryLock() {
				continue
			}
			if e, more, err := s.take(q.now(), lease); e != nil || err != nil {
				return s, e, more, err
			}
		}
	}
	// Items with IDs or keys of their own are all in shard 0. A claim
	// that found its own shard empty and took from shard 0 makes the
	// next few claims from its shard look there first (zeroFirst), so
	// that a worker on another P does not lock its empty shard for each
	// such item; its own shard is looked at first again after them.
	start := home.idx
	if start != 0 && home.zeroFirst.Load() > 0 {
		home.zeroFirst.Add(-1)
		start = 0
	}
	for i, j := 0, start; i < n; i, j = i+1, j+1 {
		if j == n {
			j = 0
		}
		s := q.shards[j]
		s.mu.Lock()
		if e, more, err := s.take(q.now(), lease); e != nil || err != nil {
			if j == 0 && start != 0 && i > 0 {
				home.zeroFirst.Store(zeroFirstRun)
			}
			return s, e, more, err
		}
	}
	return nil, nil, false, nil
}

// take claims s's next ready item, if it has one, and reports whether
// s has more; s.mu held, and still held on return with an item.
func (s *shard) take(now mono, lease time.Duration) (e *entry, more bool, err error) {
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, false, err
	}
	if e = s.takeLocked(now, lease); e == nil {
		s.mu.Unlock()
		return nil, false, nil
	}
	return e, s.ready.len() > 0, nil
}

// wake wakes the Claim that has waited longest, if any waits.
func (q *Memory) wake() {
	if q.nwait.Load() == 0 {
		return
	}
	q.wmu.Lock()
	q.waiters.wakeOne()
	q.nwait.Store(int32(q.waiters.len()))
	q.wmu.Unlock()
}

// listWaiter lists w, unless it is listed, and reports whether it did.
// Listed first, then looking again, a Claim cannot miss an item: an
// enqueue that its look missed came after the listing, and wakes it.
func (q *Memory) listWaiter(w *waiter) bool {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if q.closed.Load() {
		return true // look again: the look sees ErrClosed
	}
	if w.listed {
		return false
	}
	select {
	case <-w.ch: // a wake-up since its last look: the look to come is the answer
	default:
	}
	q.waiters.push(w)
	q.nwait.Store(int32(q.waiters.len()))
	return true
}

// unwait unlists w, reporting whether it was listed; false for nil.
func (q *Memory) unwait(w *waiter) bool {
	if w == nil {
		return false
	}
	q.wmu.Lock()
	defer q.wmu.Unlock()
	ok := q.waiters.remove(w)
	q.nwait.Store(int32(q.waiters.len()))
	return ok
}

// armAll arms each shard's timer for its next delayed item or lease end,
// for the Claims that wait.
func (q *Memory) armAll() {
	now := q.now()
	for _, s := range q.shards {
		s.mu.Lock()
		s.armLocked(now)
		s.mu.Unlock()
	}
}

// set makes c the Claim of e, just taken, whose lease ends at deadline.
// Inlined, it writes the caller's variable in place: a Claim built apart
// and then copied cost a stalled copy, whose loads came before the
// stores of the fields were done. A Claim on the stack needs no write
// barriers.
func (c *Claim) set(e *entry, deadline time.Time) {
	c.Item, c.Token, c.Deadline = e.item, e.token, deadline
	c.Failures, c.Expiries, c.e = e.failures, e.expiries, e
}

// takeLocked claims the next ready item, if there is one.
func (s *shard) takeLocked(now mono, lease time.Duration) *entry {
	s.promote(now)
	e := s.ready.pop()
	if e == nil {
		return nil
	}
	s.token += uint64(len(s.q.shards))
	e.state, e.token, e.at = stClaimed, s.token, now+mono(lease)
	e.item.Attempt++
	s.leases.push(e)
	if s.q.nwait.Load() > 0 {
		s.armLocked(now) // this lease may end before what they wait for
	}
	s.st.claimed++
	if mono(s.takenAt.Load()) != now { // a store only once a tick
		s.takenAt.Store(int64(now))
	}
	e.claimed = now
	return e
}

// promote makes delayed items whose time has come ready, and takes back
// the items whose leases have expired.
func (s *shard) promote(now mono) {
	for e := s.delayed.top(); e != nil && e.at <= now; e = s.delayed.top() {
		s.delayed.pop()
		e.state = stReady
		s.ready.push(e)
		s.q.wake()
	}
	for e := s.leases.top(); e != nil && e.at <= now; e = s.leases.top() {
		s.leases.pop()
		e.expiries++
		s.st.expired++
		s.q.o.log.Debug("lease expired", zap.String("id", e.item.ID), zap.Uint64("token", e.token), zap.Int("expiries", e.expiries))
		if e.expiries >= s.q.o.retry.MaxExpiries {
			s.bury(e, now, "lease expired "+strconv.Itoa(e.expiries)+" times: the workers crashed, hung or lost touch")
			continue
		}
		e.state = stReady
		s.ready.push(e)
		s.q.wake()
	}
}

// held returns the entry of a claim that is still held, with its
// shard's lock held, or an error with it not held. An entry's shard
// never changes (entries are reused only within it), so e.s may be read
// before taking the lock.
func (q *Memory) held(c *Claim) (*shard, *entry, error) {
	e := c.e
	if e == nil || e.s.q != q {
		return nil, nil, notHeld(*c)
	}
	s := e.s
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	if e.state != stClaimed || e.token != c.Token || e.item.ID != c.ID {
		s.mu.Unlock()
		return nil, nil, notHeld(*c)
	}
	return s, e, nil
}

// release ends a held claim's lease, returning with its shard's lock
// held, or an error with it not held.
func (q *Memory) release(c *Claim) (*shard, *entry, error) {
	s, e, err := q.held(c)
	if err != nil {
		return nil, nil, err
	}
	s.leases.remove(e)
	return s, e, nil
}

// Ack marks a claimed item done. A claim whose lease has run out still
// counts until the queue takes the item back, which a Claim, Stats or a
// timer for a blocked Claim does.
func (q *Memory) Ack(ctx context.Context, c Claim) error {
	s, e, err := q.release(&c)
	if err != nil {
		return err
	}
	s.st.done++
	// Latencies are recorded for a random one ack in 2^k (see
	// sampleWindow): recording each cost 5% of the time of a fast queue.
	if s.sampleMask == 0 || s.random()&s.sampleMask == 0 {
		now := q.now()
		if e.enq != unknownTime {
			s.latency.AddLocked(time.Duration(now - e.enq))
		}
		s.handling.AddLocked(time.Duration(now - e.claimed))
		s.sampled(now)
	}
	var g *commit
	if q.j != nil {
		g = q.j.add(record{kind: recAck, id: e.item.ID})
	}
	s.finish(e)
	s.mu.Unlock()
	return g.wait()
}

// finish forgets a done item and lets the next of its key go.
func (s *shard) finish(e *entry) {
	if e.given {
		delete(s.ids, e.item.ID)
	}
	s.advanceKey(e, 0)
	// No claim holds it now, nor after reuse (tokens differ). Its payload
	// may be large: let it go; newEntry sets the rest.
	e.state, e.item.Payload = 0, nil
	if len(s.free) < maxFree { // after a burst, let the GC have the rest
		s.free = append(s.free, e)
	}
}

// advanceKey lets the item behind e on its key go, now that e is done
// or dead.
func (s *shard) advanceKey(e *entry, now mono) {
	if e.item.Key == "" {
		return
	}
	k := s.keys[e.item.Key]
	if k == nil || k.head != e {
		return
	}
	next := e.next
	e.next = nil
	if next == nil {
		delete(s.keys, e.item.Key)
		return
	}
	k.head = next
	s.behind--
	if !next.item.NotBefore.IsZero() && now == 0 {
		now = s.q.now()
	}
	s.schedule(next, s.q.mono(next.item.NotBefore), now)
}

// Nack reports a failed attempt. The item is tried again after the
// retry policy's backoff, or becomes a dead letter when out of failures
// or when reason is Permanent.
func (q *Memory) Nack(ctx context.Context, c Claim, reason error) error {
	s, e, err := q.release(&c)
	if err != nil {
		return err
	}
	e.failures++
	e.reason = "failed"
	if reason != nil {
		e.reason = reason.Error()
	}
	now := q.now()
	var g *commit
	if e.failures >= q.o.retry.MaxFailures || IsPermanent(reason) {
		g = s.bury(e, now, e.reason)
	} else {
		s.st.retried++
		at := now + mono(q.o.retry.backoff(e.failures))
		if q.j != nil {
			g = q.j.add(record{kind: recRetry, id: e.item.ID, failures: e.failures, expiries: e.expiries, notBefore: q.time(at).UnixNano()})
		}
		s.schedule(e, at, now)
	}
	s.mu.Unlock()
	return g.wait()
}

// bury makes e a dead letter.
func (s *shard) bury(e *entry, now mono, reason string) (g *commit) {
	q := s.q
	e.state, e.at, e.reason = stDead, now, reason
	s.dead[e.item.ID] = e
	if q.j != nil {
		g = q.j.add(record{kind: recDead, id: e.item.ID, failures: e.failures, expiries: e.expiries, at: q.time(now).UnixNano(), reason: reason})
	}
	s.st.deadLettered++
	q.o.log.Info("dead letter", zap.String("id", e.item.ID), zap.Int("failures", e.failures),
		zap.Int("expiries", e.expiries), zap.String("reason", reason))
	s.advanceKey(e, now)
	return g
}

// Extend renews the lease of a held claim to lease from now.
func (q *Memory) Extend(ctx context.Context, c Claim, lease time.Duration) (Claim, error) {
	if lease <= 0 {
		return c, invalid("lease %v: want more than 0", lease)
	}
	s, e, err := q.held(&c)
	if err != nil {
		return c, err
	}
	defer s.mu.Unlock()
	now := q.now()
	e.at = now + mono(lease)
	s.leases.fix(e)
	s.armLocked(now)
	c.Deadline = s.deadline(e.at)
	return c, nil
}

// DeadLetters lists the dead letters, oldest first.
func (q *Memory) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if err := q.usable(); err != nil {
		return nil, err
	}
	var ds []DeadLetter
	for _, s := range q.shards {
		s.mu.Lock()
		for _, e := range s.dead {
			ds = append(ds, DeadLetter{Item: e.item, Reason: e.reason, Failures: e.failures, Expiries: e.expiries, At: q.time(e.at)})
		}
		s.mu.Unlock()
	}
	slices.SortFunc(ds, func(a, b DeadLetter) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ds, nil
}

// Requeue puts dead letters back with fresh counts, all or none. An item
// with a key goes behind the items of its key now in the queue.
func (q *Memory) Requeue(ctx context.Context, ids ...string) error {
	q.lockAll()
	g, err := q.requeueLocked(ids)
	q.unlockAll()
	if err != nil {
		return err
	}
	return g.wait()
}

// requeueLocked is Requeue with every shard's lock held.
func (q *Memory) requeueLocked(ids []string) (*commit, error) {
	if err := q.usable(); err != nil {
		return nil, err
	}
	home := make([]*shard, len(ids))
	for i, id := range ids {
		for _, s := range q.shards {
			if s.dead[id] != nil {
				home[i] = s
			}
		}
		if home[i] == nil {
			return nil, &notFoundError{id}
		}
	}
	now := q.now()
	var recs []record
	for i, id := range ids {
		s := home[i]
		e := s.dead[id]
		if e == nil {
			continue // named twice
		}
		delete(s.dead, id)
		e.failures, e.expiries, e.reason = 0, 0, ""
		s.st.requeued++
		recs = append(recs, record{kind: recRequeue, id: id})
		s.place(e, 0, now)
	}
	if q.j == nil || len(recs) == 0 {
		return nil, nil
	}
	return q.j.add(recs...), nil
}

// lockAll takes every shard's lock, in order; unlockAll lets them go.
func (q *Memory) lockAll() {
	for _, s := range q.shards {
		s.mu.Lock()
	}
}

func (q *Memory) unlockAll() {
	for _, s := range q.shards {
		s.mu.Unlock()
	}
}

type notFoundError struct{ id string }

func (e *notFoundError) Error() string { return ErrNotFound.Error() + ": " + strconv.Quote(e.id) }
func (e *notFoundError) Unwrap() error { return ErrNotFound }

// Close ends the queue: blocked and later calls return ErrClosed, and
// what it held is dropped. It is idempotent.
func (q *Memory) Close() error {
	q.lockAll()
	if q.closed.Load() {
		q.unlockAll()
		return nil
	}
	q.closed.Store(true)
	for _, s := range q.shards {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	}
	q.unlockAll()
	q.wmu.Lock()
	q.waiters.wakeAll()
	q.nwait.Store(0)
	q.wmu.Unlock()
	if q.coarse != nil {
		q.coarse.Close()
	}
	if q.j != nil {
		return q.j.close() // writes what is pending first
	}
	return nil
}

// armLocked keeps a timer for the earliest time a delayed item or an
// expired lease of the shard could give a blocked Claim work, while any
// is blocked; s.mu held.
// Without blocked claims nothing needs waking: the next Claim looks.
func (s *shard) armLocked(now mono) {
	var next mono // 0: no timer
	if s.q.nwait.Load() > 0 && !s.q.closed.Load() {
		if e := s.delayed.top(); e != nil {
			next = e.at
		}
		if e := s.leases.top(); e != nil && (next == 0 || e.at < next) {
			next = e.at
		}
	}
	if next == s.timerAt && (s.timer != nil) == (next != 0) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.timerAt = next
	if next != 0 {
		s.timer = s.q.o.clock.AfterFunc(time.Duration(max(next-now, 0)), s.onTimer)
	}
}

func (s *shard) onTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer, s.timerAt = nil, 0
	if s.q.closed.Load() {
		return
	}
	now := s.q.now()
	s.promote(now)
	s.armLocked(now)
}

// Stats is a snapshot of a queue's state and counters.
type Stats struct {
	// Ready items may be claimed now; Delayed wait for their NotBefore or
	// a backoff; Behind wait behind an earlier item of their key.
	Ready, Delayed, Behind int
	// InFlight items are claimed; Dead are dead letters.
	InFlight, Dead int
	// Enqueued counts items added, Duplicates those ignored for an ID
	// the queue held.
	Enqueued, Duplicates uint64
	// Claimed counts claims granted, Done acks, Retried failures that
	// were retried, DeadLettered items that became dead letters,
	// LeaseExpiries leases that ran out, Requeued dead letters put back.
	Claimed, Done, Retried, DeadLettered, LeaseExpiries, Requeued uint64
	// Latency is the time from enqueue to ack of recent items, Handling
	// from the last claim to the ack: of the last one to two thousand
	// recorded in each shard, which is every item while a shard acks
	// fewer than about a thousand a second, and a random one in up to 64
	// when it acks more.
	Latency, Handling Percentiles
}

// Percentiles of a duration; zero with no samples.
type Percentiles struct {
	P50, P90, P99 time.Duration
}

func percentiles(ws []*latency.Window) Percentiles {
	q, _ := latency.Merged(ws, 0.5, 0.9, 0.99)
	return Percentiles{q[0], q[1], q[2]}
}

// readyCount is how many items may be claimed now, for a Pool's scaling:
// cheaper than Stats.
func (q *Memory) readyCount() int {
	n := 0
	for _, s := range q.shards {
		s.mu.Lock()
		n += s.ready.len()
		s.mu.Unlock()
	}
	return n
}

// Depth is how many items wait: ready, delayed or behind their key.
func (s Stats) Depth() int { return s.Ready + s.Delayed + s.Behind }

// Stats returns a snapshot, after taking back expired leases.
func (q *Memory) Stats() Stats {
	var st Stats
	var c counters
	var lat, hand []*latency.Window
	now := q.now()
	for _, s := range q.shards {
		s.mu.Lock()
		if !q.closed.Load() {
			s.promote(now)
		}
		st.Ready += s.ready.len()
		st.Delayed += s.delayed.len()
		st.Behind += s.behind
		st.InFlight += s.leases.len()
		st.Dead += len(s.dead)
		c.add(&s.st)
		s.mu.Unlock() // the windows take it
		lat, hand = append(lat, s.latency), append(hand, s.handling)
	}
	st.Enqueued, st.Duplicates, st.Claimed, st.Done = c.enqueued, c.duplicates, c.claimed, c.done
	st.Retried, st.DeadLettered, st.LeaseExpiries, st.Requeued = c.retried, c.deadLettered, c.expired, c.requeued
	st.Latency, st.Handling = percentiles(lat), percentiles(hand)
	return st
}
