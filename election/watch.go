package election

import (
	"context"
	"sync"
)

// EventKind says what happened to a resource's ownership.
type EventKind int

// Kinds of ownership events.
const (
	Acquired EventKind = iota + 1 // a lease was granted
	Released                      // its holder released it
	Expired                       // its TTL ran out without renewal
)

// String names the kind of event.
func (k EventKind) String() string {
	switch k {
	case Acquired:
		return "acquired"
	case Released:
		return "released"
	case Expired:
		return "expired"
	}
	return "unknown"
}

// Event is one ownership change, in the order of the replicated log.
type Event struct {
	Kind     EventKind
	Resource string
	Holder   string // node ID of the lease's holder
	Token    uint64
	Index    uint64 // raft log index of the change
}

// maxQueued bounds a watcher's backlog. Past it, older events for a
// resource are dropped in favour of its newest one, so a slow reader never
// blocks raft and never misses the latest state of any resource.
const maxQueued = 4096

type ownerWatch struct {
	out       chan Event
	wake      chan struct{}
	done      chan struct{}
	once      sync.Once
	stopAfter func() bool

	mu sync.Mutex
	q  []Event
}

// WatchOwners returns a channel of ownership changes as this node applies
// them, starting with the next one. Events for one resource arrive in log
// order; a reader that falls far behind gets, for each resource, at least
// its newest event. The channel is closed when ctx ends or the node
// closes.
func (n *Node) WatchOwners(ctx context.Context) <-chan Event {
	w := &ownerWatch{out: make(chan Event), wake: make(chan struct{}, 1), done: make(chan struct{})}
	n.wmu.Lock()
	if n.closed.Load() {
		n.wmu.Unlock()
		close(w.out)
		return w.out
	}
	n.owatches[w] = struct{}{}
	n.wmu.Unlock()
	w.stopAfter = context.AfterFunc(ctx, func() {
		n.wmu.Lock()
		delete(n.owatches, w)
		n.wmu.Unlock()
		w.stop()
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		w.run()
	}()
	return w.out
}

func (w *ownerWatch) stop() {
	w.once.Do(func() { close(w.done) })
}

func (w *ownerWatch) push(e Event) {
	w.mu.Lock()
	w.q = append(w.q, e)
	if len(w.q) > maxQueued {
		w.q = coalesce(w.q)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// coalesce keeps the newest event of each resource, in log order.
func coalesce(q []Event) []Event {
	last := make(map[string]int, len(q))
	for i, e := range q {
		last[e.Resource] = i
	}
	out := q[:0]
	for i, e := range q {
		if last[e.Resource] == i {
			out = append(out, e)
		}
	}
	return out
}

func (w *ownerWatch) run() {
	defer close(w.out)
	defer func() {
		if w.stopAfter != nil {
			w.stopAfter()
		}
	}()
	for {
		w.mu.Lock()
		var e Event
		ok := len(w.q) > 0
		if ok {
			e = w.q[0]
			w.q = w.q[1:]
		}
		w.mu.Unlock()
		if !ok {
			select {
			case <-w.wake:
				continue
			case <-w.done:
				return
			}
		}
		select {
		case w.out <- e:
		case <-w.done:
			return
		}
	}
}

// emit hands an applied change to every watcher; called under the FSM's
// lock, so it must not block.
func (n *Node) emit(e Event) {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	for w := range n.owatches {
		w.push(e)
	}
}
