package discovery

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// EventKind says what happened to a member.
type EventKind int

// Kinds of membership events.
const (
	// EventJoin: a member appeared (or reappeared after failing or
	// leaving). Watch starts with one per current member.
	EventJoin EventKind = iota + 1
	// EventUpdate: a member changed its health, services or address.
	EventUpdate
	// EventLeave: a member left gracefully.
	EventLeave
	// EventFail: a member failed; it is gone from Members.
	EventFail
	// EventSuspect: a member is suspected; Suspicion says by whom when
	// known.
	EventSuspect
	// EventRefuted: a suspected member proved to be alive.
	EventRefuted
)

// String names the kind of event.
func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventSuspect:
		return "suspect"
	case EventRefuted:
		return "refuted"
	}
	return "unknown"
}

// Event is one change to one member, as this node observed it.
type Event struct {
	Kind   EventKind
	Member Member    // the member's state after the change
	Time   time.Time // when this node observed it
	// Suspicion is the audit record behind an EventSuspect raised by a
	// failed probe, when known.
	Suspicion *Suspicion
	// Coalesced counts earlier events for this member that were folded
	// into this one because the reader was behind.
	Coalesced int
}

// Watch returns a channel of membership events, starting with an
// EventJoin for every current member (itself included), then each change
// as it happens. Events for one member arrive in order. A reader that
// falls behind never slows gossip: each member's undelivered events fold
// into its newest one (a pending EventJoin stays a join), so the reader
// always gets every member's latest state; treat EventJoin and EventUpdate
// alike as "this is the member now". The channel is closed when ctx ends
// or the node closes.
func (n *Node) Watch(ctx context.Context) <-chan Event {
	w := &watcher{
		out:     make(chan Event),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[string]*Event),
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		close(w.out)
		return w.out
	}
	now := time.Now()
	names := make([]string, 0, len(n.members))
	for name := range n.members {
		names = append(names, name)
	}
	slices.SortFunc(names, cmp.Compare)
	for _, name := range names {
		w.push(Event{Kind: EventJoin, Member: n.members[name].member(name, n.audit.suspected(name)), Time: now})
	}
	n.watchers[w] = struct{}{}
	n.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		delete(n.watchers, w)
		n.mu.Unlock()
		w.stop()
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer stop()
		w.run()
	}()
	return w.out
}

type watcher struct {
	out  chan Event
	wake chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	order   []string          // members with a pending event, oldest first
	pending map[string]*Event // each member's newest undelivered event
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

// push queues e, folding it into the member's pending event if there is
// one; it never blocks.
func (w *watcher) push(e Event) {
	name := e.Member.Name
	w.mu.Lock()
	if p, ok := w.pending[name]; ok {
		folded := p.Coalesced + 1
		kind := e.Kind
		if p.Kind == EventJoin && (kind == EventUpdate || kind == EventSuspect || kind == EventRefuted) {
			kind = EventJoin
		}
		*p = e
		p.Kind, p.Coalesced = kind, folded
	} else {
		w.pending[name] = &e
		w.order = append(w.order, name)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) next() (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.order) == 0 {
		return Event{}, false
	}
	name := w.order[0]
	w.order = w.order[1:]
	e := *w.pending[name]
	delete(w.pending, name)
	return e, true
}

func (w *watcher) run() {
	defer close(w.out)
	for {
		e, ok := w.next()
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

// emit hands an event to every watcher; called with n.mu held.
func (n *Node) emit(e Event) {
	for w := range n.watchers {
		w.push(e)
	}
}
