package workqueue

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/distkit/distkit/internal/clock"
	"github.com/distkit/distkit/internal/latency"
	"go.uber.org/zap"
)

// Memory is a work queue held in memory: fast, and gone with the process.
// It is safe for concurrent use. Make one with NewMemory.
type Memory struct {
	o      options
	prefix string        // of generated IDs
	base   time.Time     // when made: times are kept as nanoseconds since
	coarse *clock.Coarse // the real clock, read cheaply; nil on a fake one

	mu        sync.Mutex
	closed    bool
	ids       map[string]*entry // every item held, by ID
	ready     ring              // claimable now, in order
	delayed   entryHeap         // waiting for their time: not-before or backoff
	leases    entryHeap         // claimed, by deadline
	keys      map[string]*keyQueue
	groups    map[string]*group // joins and reduces whose result comes here
	waiters   waiterList        // Claims blocked for want of items
	timer     clock.Timer
	timerAt   mono
	lastAt    mono      // the last Deadline converted, and what it came to:
	lastTime  time.Time // the coarse clock makes many deadlines alike
	token     uint64    // the last claim's; a durable queue's run starts at epoch<<epochShift
	epoch     uint64    // a durable queue's run
	generated uint64    // IDs generated so far, a multiple of idChunk
	genIDs    string    // generated IDs not yet used
	dead      map[string]*entry
	free      []*entry
	behind    int             // items behind an earlier one of their key
	seq       uint64          // items placed, for their order
	j         *journal        // the log, for a durable queue
	latency   *latency.Window // enqueue to ack
	handling  *latency.Window // claim to ack
	st        counters
}

// entry is the queue's record of one item.
type entry struct {
	q        *Memory
	item     Item
	state    state
	token    uint64 // the current claim's
	at       mono   // delayed: when claimable; claimed: the deadline; dead: since
	idx      int    // in delayed or leases
	failures int
	expiries int
	reason   string
	next     *entry // behind this one on its key
	given    bool   // its ID was given, so it is in ids
	seq      uint64 // queue order: enqueued or requeued
	enq      mono   // when enqueued, or unknownTime (restored from disk)
	claimed  mono   // when last claimed
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

// NewMemory returns an empty in-memory queue.
func NewMemory(opts ...Option) (*Memory, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	var b [5]byte
	rand.Read(b[:])
	q := &Memory{
		o:      o,
		prefix: base32.HexEncoding.EncodeToString(b[:]) + "-",
		base:   o.clock.Now(),
		ids:    make(map[string]*entry),
		dead:   make(map[string]*entry),
		keys:   make(map[string]*keyQueue),
		groups: make(map[string]*group),
	}
	q.latency, q.handling = latency.New(&q.mu), latency.New(&q.mu)
	if o.clock == clock.Real {
		q.coarse = clock.NewCoarse(q.base)
	}
	return q, nil
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

// deadline is time for a lease's end; q.mu held. Claims in the same tick
// of the coarse clock with the same lease end alike, so it keeps the last.
func (q *Memory) deadline(m mono) time.Time {
	if m != q.lastAt || q.lastTime.IsZero() {
		q.lastAt, q.lastTime = m, q.time(m)
	}
	return q.lastTime
}

// nextID returns a new generated ID: the queue's prefix and a counter in
// idDigits hex digits. They are made idChunk at a time into one string,
// so that each costs no allocation of its own, by counting in place.
func (q *Memory) nextID() string {
	n := len(q.prefix) + idDigits
	if q.genIDs == "" {
		// A chunk starts at a multiple of 64, so its IDs differ only in
		// their last two digits: lay out the first ID, double it up to
		// the chunk with six copies, then write two digits per ID.
		base := q.generated
		q.generated += idChunk
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
		q.genIDs = unsafe.String(&buf[0], len(buf)) // buf is never written again
	}
	id := q.genIDs[:n]
	q.genIDs = q.genIDs[n:]
	return id
}

const hexDigits = "0123456789abcdef"

// maxFree bounds the entries kept for reuse.
const maxFree = 4096

const (
	idDigits = 12 // 2^48 IDs per queue
	idChunk  = 64 // a power of two from 16 to 256: see nextID
)

// Enqueue adds items, all or none: it checks every one first. Items
// whose ID the queue holds, or given twice, are ignored after the first.
func (q *Memory) Enqueue(ctx context.Context, items ...Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range items {
		if err := q.checkItem(i, &items[i]); err != nil {
			return err
		}
	}
	if err := checkBatch(items, maxRecord); err != nil {
		return err
	}
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return err
	}
	g := q.enqueueLocked(items)
	q.mu.Unlock()
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

// enqueueLocked adds checked items; q.mu held. It returns the commit
// that makes them durable, if the queue is.
func (q *Memory) enqueueLocked(items []Item, pre ...record) *commit {
	var now mono // read when first needed
	recs := pre
	for i := range items {
		given := items[i].ID != ""
		if given {
			if _, ok := q.ids[items[i].ID]; ok {
				q.st.duplicates++
				continue
			}
		}
		e := q.newEntry()
		e.item = items[i]
		it := &e.item
		it.Attempt = 0
		if now == 0 {
			now = q.now()
		}
		e.enq = now
		if given {
			q.ids[it.ID], e.given = e, true
		} else {
			it.ID = q.nextID()
		}
		q.st.enqueued++
		if q.j != nil {
			recs = append(recs, record{kind: recEnqueue, id: it.ID, key: it.Key, notBefore: unixNano(it.NotBefore), payload: it.Payload})
		}
		q.place(e, q.mono(it.NotBefore), now)
	}
	if q.j == nil {
		return nil
	}
	return q.j.add(recs...) // with none, the commit a duplicate's original may be in
}

// place queues e behind the items of its key, or schedules it at at.
func (q *Memory) place(e *entry, at, now mono) {
	q.seq++
	e.seq = q.seq
	if key := e.item.Key; key != "" {
		if k := q.keys[key]; k != nil {
			k.tail.next, k.tail = e, e
			e.state = stBehind
			q.behind++
			return
		}
		q.keys[key] = &keyQueue{head: e, tail: e}
	}
	q.schedule(e, at, now)
}

// usable says why the queue cannot be used, if it cannot; q.mu held.
func (q *Memory) usable() error {
	if q.closed {
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
func (q *Memory) schedule(e *entry, at, now mono) {
	if at > now {
		e.state, e.at = stDelayed, at
		q.delayed.push(e)
		q.armLocked(now)
		return
	}
	e.state = stReady
	q.ready.push(e)
	q.waiters.wakeOne()
}

func (q *Memory) newEntry() *entry {
	if n := len(q.free); n > 0 {
		e := q.free[n-1]
		q.free = q.free[:n-1]
		return e
	}
	return &entry{q: q}
}

// Claim takes the next claimable item, leasing it for lease, and blocks
// until there is one, ctx ends, or the queue closes.
func (q *Memory) Claim(ctx context.Context, lease time.Duration) (c Claim, err error) {
	if lease <= 0 {
		return Claim{}, invalid("lease %v: want more than 0", lease)
	}
	var w *waiter
	q.mu.Lock()
	for {
		if err := q.usable(); err != nil {
			q.mu.Unlock()
			return Claim{}, err
		}
		if err := ctx.Err(); err != nil {
			q.mu.Unlock()
			return Claim{}, err
		}
		now := q.now()
		if q.takeLocked(now, lease, &c) {
			if w != nil && q.ready.len() > 0 {
				q.waiters.wakeOne() // more work: pass the wake-up on
			}
			q.mu.Unlock()
			return c, nil
		}
		if w == nil {
			w = &waiter{ch: make(chan struct{}, 1)}
		}
		q.waiters.push(w)
		q.armLocked(now)
		q.mu.Unlock()
		select {
		case <-w.ch:
			q.mu.Lock()
		case <-ctx.Done():
			q.mu.Lock()
			if !q.waiters.remove(w) {
				// Woken as ctx ended: the wake-up was meant for work that
				// someone else should take.
				q.waiters.wakeOne()
			}
			q.mu.Unlock()
			return Claim{}, ctx.Err()
		}
	}
}

// takeLocked claims the next ready item into c, if there is one.
func (q *Memory) takeLocked(now mono, lease time.Duration, c *Claim) bool {
	q.promote(now)
	e := q.ready.pop()
	if e == nil {
		return false
	}
	q.token++
	e.state, e.token, e.at = stClaimed, q.token, now+mono(lease)
	e.item.Attempt++
	q.leases.push(e)
	if q.waiters.len() > 0 {
		q.armLocked(now) // this lease may end before what they wait for
	}
	q.st.claimed++
	e.claimed = now
	*c = Claim{Item: e.item, Token: e.token, Deadline: q.deadline(e.at), Failures: e.failures, Expiries: e.expiries, e: e}
	return true
}

// promote makes delayed items whose time has come ready, and takes back
// the items whose leases have expired.
func (q *Memory) promote(now mono) {
	for e := q.delayed.top(); e != nil && e.at <= now; e = q.delayed.top() {
		q.delayed.pop()
		e.state = stReady
		q.ready.push(e)
		q.waiters.wakeOne()
	}
	for e := q.leases.top(); e != nil && e.at <= now; e = q.leases.top() {
		q.leases.pop()
		e.expiries++
		q.st.expired++
		q.o.log.Debug("lease expired", zap.String("id", e.item.ID), zap.Uint64("token", e.token), zap.Int("expiries", e.expiries))
		if e.expiries >= q.o.retry.MaxExpiries {
			q.bury(e, now, "lease expired "+strconv.Itoa(e.expiries)+" times: the workers crashed, hung or lost touch")
			continue
		}
		e.state = stReady
		q.ready.push(e)
		q.waiters.wakeOne()
	}
}

// held returns the entry of a claim that is still held.
func (q *Memory) held(c *Claim) (*entry, error) {
	if err := q.usable(); err != nil {
		return nil, err
	}
	e := c.e
	if e == nil || e.q != q || e.state != stClaimed || e.token != c.Token || e.item.ID != c.ID {
		return nil, notHeld(*c)
	}
	return e, nil
}

// release ends a held claim's lease, returning with q.mu held, or an
// error with it not held.
func (q *Memory) release(c *Claim) (*entry, error) {
	q.mu.Lock()
	e, err := q.held(c)
	if err != nil {
		q.mu.Unlock()
		return nil, err
	}
	q.leases.remove(e)
	return e, nil
}

// Ack marks a claimed item done. A claim whose lease has run out still
// counts until the queue takes the item back, which a Claim, Stats or a
// timer for a blocked Claim does.
func (q *Memory) Ack(ctx context.Context, c Claim) error {
	e, err := q.release(&c)
	if err != nil {
		return err
	}
	q.st.done++
	now := q.now()
	if e.enq != unknownTime {
		q.latency.AddLocked(time.Duration(now - e.enq))
	}
	q.handling.AddLocked(time.Duration(now - e.claimed))
	var g *commit
	if q.j != nil {
		g = q.j.add(record{kind: recAck, id: e.item.ID})
	}
	q.finish(e)
	q.mu.Unlock()
	return g.wait()
}

// finish forgets a done item and lets the next of its key go.
func (q *Memory) finish(e *entry) {
	if e.given {
		delete(q.ids, e.item.ID)
	}
	q.advanceKey(e, 0)
	*e = entry{q: q}
	if len(q.free) < maxFree { // after a burst, let the GC have the rest
		q.free = append(q.free, e)
	}
}

// advanceKey lets the item behind e on its key go, now that e is done
// or dead.
func (q *Memory) advanceKey(e *entry, now mono) {
	if e.item.Key == "" {
		return
	}
	k := q.keys[e.item.Key]
	if k == nil || k.head != e {
		return
	}
	next := e.next
	e.next = nil
	if next == nil {
		delete(q.keys, e.item.Key)
		return
	}
	k.head = next
	q.behind--
	if !next.item.NotBefore.IsZero() && now == 0 {
		now = q.now()
	}
	q.schedule(next, q.mono(next.item.NotBefore), now)
}

// Nack reports a failed attempt. The item is tried again after the
// retry policy's backoff, or becomes a dead letter when out of failures
// or when reason is Permanent.
func (q *Memory) Nack(ctx context.Context, c Claim, reason error) error {
	e, err := q.release(&c)
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
		g = q.bury(e, now, e.reason)
	} else {
		q.st.retried++
		at := now + mono(q.o.retry.backoff(e.failures))
		if q.j != nil {
			g = q.j.add(record{kind: recRetry, id: e.item.ID, failures: e.failures, expiries: e.expiries, notBefore: q.time(at).UnixNano()})
		}
		q.schedule(e, at, now)
	}
	q.mu.Unlock()
	return g.wait()
}

// bury makes e a dead letter.
func (q *Memory) bury(e *entry, now mono, reason string) (g *commit) {
	e.state, e.at, e.reason = stDead, now, reason
	q.dead[e.item.ID] = e
	if q.j != nil {
		g = q.j.add(record{kind: recDead, id: e.item.ID, failures: e.failures, expiries: e.expiries, at: q.time(now).UnixNano(), reason: reason})
	}
	q.st.deadLettered++
	q.o.log.Info("dead letter", zap.String("id", e.item.ID), zap.Int("failures", e.failures),
		zap.Int("expiries", e.expiries), zap.String("reason", reason))
	q.advanceKey(e, now)
	return g
}

// Extend renews the lease of a held claim to lease from now.
func (q *Memory) Extend(ctx context.Context, c Claim, lease time.Duration) (Claim, error) {
	if lease <= 0 {
		return c, invalid("lease %v: want more than 0", lease)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err := q.held(&c)
	if err != nil {
		return c, err
	}
	now := q.now()
	e.at = now + mono(lease)
	q.leases.fix(e)
	q.armLocked(now)
	c.Deadline = q.deadline(e.at)
	return c, nil
}

// DeadLetters lists the dead letters, oldest first.
func (q *Memory) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return nil, err
	}
	var ds []DeadLetter
	for _, e := range q.dead {
		ds = append(ds, DeadLetter{Item: e.item, Reason: e.reason, Failures: e.failures, Expiries: e.expiries, At: q.time(e.at)})
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
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return err
	}
	for _, id := range ids {
		if q.dead[id] == nil {
			q.mu.Unlock()
			return &notFoundError{id}
		}
	}
	now := q.now()
	var recs []record
	for _, id := range ids {
		e := q.dead[id]
		if e == nil {
			continue // named twice
		}
		delete(q.dead, id)
		e.failures, e.expiries, e.reason = 0, 0, ""
		q.st.requeued++
		recs = append(recs, record{kind: recRequeue, id: id})
		q.place(e, 0, now)
	}
	var g *commit
	if q.j != nil && len(recs) > 0 {
		g = q.j.add(recs...)
	}
	q.mu.Unlock()
	return g.wait()
}

type notFoundError struct{ id string }

func (e *notFoundError) Error() string { return ErrNotFound.Error() + ": " + strconv.Quote(e.id) }
func (e *notFoundError) Unwrap() error { return ErrNotFound }

// Close ends the queue: blocked and later calls return ErrClosed, and
// what it held is dropped. It is idempotent.
func (q *Memory) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
	q.waiters.wakeAll()
	q.mu.Unlock()
	if q.coarse != nil {
		q.coarse.Close()
	}
	if q.j != nil {
		return q.j.close() // writes what is pending first
	}
	return nil
}

// armLocked keeps a timer for the earliest time a delayed item or an
// expired lease could give a blocked Claim work, while any is blocked.
// Without blocked claims nothing needs waking: the next Claim looks.
func (q *Memory) armLocked(now mono) {
	var next mono // 0: no timer
	if q.waiters.len() > 0 && !q.closed {
		if e := q.delayed.top(); e != nil {
			next = e.at
		}
		if e := q.leases.top(); e != nil && (next == 0 || e.at < next) {
			next = e.at
		}
	}
	if next == q.timerAt && (q.timer != nil) == (next != 0) {
		return
	}
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
	q.timerAt = next
	if next != 0 {
		q.timer = q.o.clock.AfterFunc(time.Duration(max(next-now, 0)), q.onTimer)
	}
}

func (q *Memory) onTimer() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.timer, q.timerAt = nil, 0
	if q.closed {
		return
	}
	now := q.now()
	q.promote(now)
	q.armLocked(now)
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
	// Latency is the time from enqueue to ack of recent items (the last
	// one to two thousand), Handling from the last claim to the ack.
	Latency, Handling Percentiles
}

// Percentiles of a duration; zero with no samples.
type Percentiles struct {
	P50, P90, P99 time.Duration
}

func percentiles(w *latency.Window) Percentiles {
	q, _ := w.Quantiles(0.5, 0.9, 0.99)
	return Percentiles{q[0], q[1], q[2]}
}

// readyCount is how many items may be claimed now, for a Pool's scaling:
// cheaper than Stats.
func (q *Memory) readyCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.len()
}

// Depth is how many items wait: ready, delayed or behind their key.
func (s Stats) Depth() int { return s.Ready + s.Delayed + s.Behind }

// Stats returns a snapshot, after taking back expired leases.
func (q *Memory) Stats() Stats {
	q.mu.Lock()
	if !q.closed {
		q.promote(q.now())
	}
	s := Stats{
		Ready: q.ready.len(), Delayed: q.delayed.len(), Behind: q.behind, InFlight: q.leases.len(), Dead: len(q.dead),
		Enqueued: q.st.enqueued, Duplicates: q.st.duplicates, Claimed: q.st.claimed, Done: q.st.done,
		Retried: q.st.retried, DeadLettered: q.st.deadLettered, LeaseExpiries: q.st.expired, Requeued: q.st.requeued,
	}
	q.mu.Unlock() // the windows take it
	s.Latency, s.Handling = percentiles(q.latency), percentiles(q.handling)
	return s
}
