package workqueue

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var propertyRuns = flag.Int("workqueue.runs", 200, "seeded histories TestProperty runs")

// TestProperty runs seeded random histories of enqueue, claim, ack, nack,
// extend, requeue and clock advances (so leases expire and backoffs end)
// on a fake clock, and checks after every step that no item is lost or
// in two places, that no item is held by two claims, that an item's key
// holds at most one claim and releases its items in enqueue order, and
// that tokens only grow. At the end it drains the queue and checks that
// every item is done or a dead letter that earned it.
func TestProperty(t *testing.T) {
	for seed := range uint64(*propertyRuns) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runHistory(t, seed, 300) })
	}
}

// model is what the test knows of the queue from outside.
type model struct {
	t        *testing.T
	f        *fixture
	r        *rand.Rand
	claims   []Claim             // every claim granted, held or not
	enqueued map[string]bool     // IDs the queue accepted and still holds or did
	done     map[string]bool     // acked
	keyOf    map[string]string   // item → key
	order    map[string][]string // key → IDs in enqueue order, not yet first claimed
	started  map[string]bool     // items claimed at least once since (re)queued
	failures map[string]int      // nacks since last (re)queued
	perm     map[string]bool     // last nack was permanent
	lastTok  map[string]uint64   // item → its last claim's token
}

func runHistory(t *testing.T, seed uint64, steps int) {
	m := &model{
		t: t, r: rand.New(rand.NewPCG(seed, 1)), lastTok: map[string]uint64{},
		enqueued: map[string]bool{}, done: map[string]bool{}, keyOf: map[string]string{},
		order: map[string][]string{}, started: map[string]bool{}, failures: map[string]int{}, perm: map[string]bool{},
	}
	// Three shards, the caller's picked at random: items move between
	// them only by claims that look beyond their own.
	m.f = newFixture(t, WithShards(3), withPick(func() int { return m.r.IntN(3) }))
	ctx := context.Background()
	for step := range steps {
		switch op := m.r.IntN(100); {
		case op < 25:
			m.enqueue()
		case op < 50:
			m.claim()
		case op < 65:
			if c, ok := m.pickClaim(); ok {
				err := m.f.Ack(ctx, c)
				m.checkFenced(c, err)
				if err == nil {
					m.done[c.ID] = true
				}
			}
		case op < 75:
			if c, ok := m.pickClaim(); ok {
				reason := errors.New("fail")
				if m.r.IntN(8) == 0 {
					reason = Permanent(reason)
				}
				err := m.f.Nack(ctx, c, reason)
				m.checkFenced(c, err)
				if err == nil {
					m.failures[c.ID]++
					m.perm[c.ID] = IsPermanent(reason)
				}
			}
		case op < 80:
			if c, ok := m.pickClaim(); ok {
				c2, err := m.f.Extend(ctx, c, time.Duration(1+m.r.IntN(5))*time.Second)
				m.checkFenced(c, err)
				if err == nil {
					m.claims = append(m.claims, c2)
				}
			}
		case op < 83:
			m.requeue()
		default:
			m.f.clk.Advance(time.Duration(m.r.IntN(3000)) * time.Millisecond)
		}
		m.check(fmt.Sprintf("step %d", step))
	}
	m.drain()
}

func (m *model) enqueue() {
	var items []Item
	for range 1 + m.r.IntN(3) {
		it := Item{Payload: []byte("x")}
		if m.r.IntN(4) > 0 {
			it.ID = fmt.Sprint("i", m.r.IntN(40))
			// Keyed items have given IDs, so that the model knows their
			// enqueue order without asking the queue.
			if k := m.r.IntN(5); k < 2 {
				it.Key = fmt.Sprint("k", k)
			}
		}
		if m.r.IntN(5) == 0 {
			it.NotBefore = m.f.clk.Now().Add(time.Duration(m.r.IntN(4000)) * time.Millisecond)
		}
		items = append(items, it)
	}
	before := m.f.Stats().Enqueued
	if err := m.f.Enqueue(context.Background(), items...); err != nil {
		m.t.Fatal(err)
	}
	want, inBatch := 0, map[string]bool{}
	for _, it := range items {
		switch {
		case it.ID == "":
			want++
		case m.enqueued[it.ID] && !m.done[it.ID], inBatch[it.ID]:
			// held, or earlier in the batch: a duplicate
		default:
			inBatch[it.ID] = true
			delete(m.done, it.ID) // done and forgotten: a new item
			m.accept(it.ID, it.Key)
			want++
		}
	}
	if got := int(m.f.Stats().Enqueued - before); got != want {
		m.t.Fatalf("enqueued %d of %+v, the model expected %d", got, items, want)
	}
	// Generated IDs are learnt from the queue's records.
	m.f.lockAll()
	defer m.f.unlockAll()
	for _, e := range m.allEntries() {
		if !m.enqueued[e.item.ID] {
			m.accept(e.item.ID, e.item.Key)
		}
	}
}

// accept records a new item.
func (m *model) accept(id, key string) {
	m.enqueued[id] = true
	m.keyOf[id] = key
	m.started[id] = false
	m.failures[id] = 0
	m.perm[id] = false
	if key != "" {
		m.order[key] = append(m.order[key], id)
	}
}

func (m *model) claim() {
	c, ok := m.f.tryClaim(time.Duration(1+m.r.IntN(5)) * time.Second)
	if !ok {
		return
	}
	if last := m.lastTok[c.ID]; c.Token <= last {
		m.t.Fatalf("%s: token %d after %d", c.ID, c.Token, last)
	}
	m.lastTok[c.ID] = c.Token
	if !m.enqueued[c.ID] {
		m.t.Fatalf("claimed %s, which was never enqueued (or was done)", c.ID)
	}
	if k := m.keyOf[c.ID]; k != "" && !m.started[c.ID] {
		// The first claim of a keyed item must be the oldest of its key.
		if q := m.order[k]; len(q) == 0 || q[0] != c.ID {
			m.t.Fatalf("key %s released %s before %v", k, c.ID, q)
		}
		m.order[k] = m.order[k][1:]
	}
	m.started[c.ID] = true
	m.claims = append(m.claims, c)
}

// pickClaim returns a claim granted earlier, held or not, mostly recent.
func (m *model) pickClaim() (Claim, bool) {
	if len(m.claims) == 0 {
		return Claim{}, false
	}
	i := len(m.claims) - 1 - m.r.IntN(min(len(m.claims), 6))
	return m.claims[i], true
}

// checkFenced checks that an operation on c succeeded only if c was the
// latest claim of its item.
func (m *model) checkFenced(c Claim, err error) {
	if err != nil {
		if !errors.Is(err, ErrNotHeld) {
			m.t.Fatalf("%s: %v", c.ID, err)
		}
		return
	}
	for _, d := range m.claims {
		if d.ID == c.ID && d.Token > c.Token {
			m.t.Fatalf("claim %s/%d accepted after claim %d of the same item", c.ID, c.Token, d.Token)
		}
	}
}

func (m *model) requeue() {
	ds, err := m.f.DeadLetters(context.Background())
	if err != nil || len(ds) == 0 {
		return
	}
	d := ds[m.r.IntN(len(ds))]
	if err := m.f.Requeue(context.Background(), d.ID); err != nil {
		m.t.Fatal(err)
	}
	m.started[d.ID], m.failures[d.ID], m.perm[d.ID] = false, 0, false
	if k := m.keyOf[d.ID]; k != "" {
		m.order[k] = append(m.order[k], d.ID)
	}
}

// allEntries lists the entries in the shards' structures, checking that
// each is in its own shard's; every shard's lock held.
func (m *model) allEntries() []*entry {
	var es []*entry
	for _, q := range m.f.shards {
		n := len(es)
		for i := range q.ready.size {
			es = append(es, q.ready.at(i))
		}
		es = append(es, q.delayed...)
		es = append(es, q.leases...)
		for _, k := range q.keys {
			for e := k.head.next; e != nil; e = e.next {
				es = append(es, e)
			}
		}
		for _, e := range q.dead {
			es = append(es, e)
		}
		for _, e := range es[n:] {
			if e.s != q {
				m.t.Fatalf("%s is in shard %d's structures, but its entry says %d", e.item.ID, q.idx, e.s.idx)
			}
			if (e.item.Key != "" || e.given) && q.idx != 0 {
				m.t.Fatalf("%s has a key or a given ID, but is in shard %d", e.item.ID, q.idx)
			}
		}
	}
	return es
}

func (m *model) check(when string) {
	q := m.f.Memory
	q.lockAll()
	defer q.unlockAll()
	// Every item the model knows is in exactly one place, or done; the
	// queue holds nothing else.
	seen := map[string]state{}
	for _, e := range m.allEntries() {
		if s, ok := seen[e.item.ID]; ok {
			m.t.Fatalf("%s: %s is in two places (%d and %d)", when, e.item.ID, s, e.state)
		}
		seen[e.item.ID] = e.state
		if !m.enqueued[e.item.ID] || m.done[e.item.ID] {
			m.t.Fatalf("%s: the queue holds %s, which the model has done or never saw", when, e.item.ID)
		}
	}
	for id := range m.enqueued {
		if _, ok := seen[id]; !ok && !m.done[id] {
			m.t.Fatalf("%s: %s is lost: neither held nor done", when, id)
		}
	}
	// No item is held by two claims; a key holds at most one claim.
	heldBy, keyHeld := map[string]uint64{}, map[string]string{}
	for _, c := range m.claims {
		if e := c.e; e == nil || e.state != stClaimed || e.token != c.Token || e.item.ID != c.ID {
			continue // not held
		}
		if tok, ok := heldBy[c.ID]; ok && tok != c.Token {
			m.t.Fatalf("%s: %s held by tokens %d and %d", when, c.ID, tok, c.Token)
		}
		heldBy[c.ID] = c.Token
		if k := m.keyOf[c.ID]; k != "" {
			if other, ok := keyHeld[k]; ok && other != c.ID {
				m.t.Fatalf("%s: key %s held by %s and %s", when, k, other, c.ID)
			}
			keyHeld[k] = c.ID
		}
	}
	var s Stats
	for _, q := range q.shards {
		s.Ready, s.Delayed, s.Behind = s.Ready+q.ready.len(), s.Delayed+q.delayed.len(), s.Behind+q.behind
		s.InFlight, s.Dead = s.InFlight+q.leases.len(), s.Dead+len(q.dead)
	}
	if n := s.Depth() + s.InFlight + s.Dead; n != len(seen) {
		m.t.Fatalf("%s: stats count %d items, the structures %d", when, n, len(seen))
	}
}

// drain advances past every lease and backoff and works off the queue,
// then checks that each item is done, or dead with reason.
func (m *model) drain() {
	for range 10000 {
		m.f.clk.Advance(time.Hour)
		c, ok := m.f.tryClaim(time.Minute)
		if !ok {
			if s := m.f.Stats(); s.Depth()+s.InFlight == 0 {
				break
			}
			continue
		}
		m.claims = append(m.claims, c)
		if err := m.f.Ack(context.Background(), c); err != nil {
			m.t.Fatal(err)
		}
		m.done[c.ID] = true
		m.check("drain")
	}
	ds, _ := m.f.DeadLetters(context.Background())
	dead := map[string]DeadLetter{}
	for _, d := range ds {
		dead[d.ID] = d
	}
	var ids []string
	for id := range m.enqueued {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d, isDead := dead[id]
		switch {
		case m.done[id] && isDead:
			m.t.Fatalf("%s both done and dead", id)
		case !m.done[id] && !isDead:
			m.t.Fatalf("%s neither done nor dead after the drain", id)
		case isDead && d.Failures != m.failures[id]:
			m.t.Fatalf("dead letter %s: %d failures, the model saw %d nacks", id, d.Failures, m.failures[id])
		case isDead && !(m.perm[id] || d.Failures >= testRetry.MaxFailures || d.Expiries >= testRetry.MaxExpiries):
			m.t.Fatalf("dead letter %s did not earn it: %+v", id, d)
		}
	}
}
