package workqueue

import (
	"context"
	"slices"
)

// A group gathers the members of a join or reduce in the queue that will
// receive its result, so that recording the last member and enqueueing
// the result are one step of that queue, logged together when it is
// durable: the result goes in exactly once, whatever crashes in between.
type group struct {
	size   int
	values map[string][]byte // by member
	fired  bool
}

// members returns the names of the group's members, in order.
func (g *group) members() []string {
	ms := make([]string, 0, len(g.values))
	for m := range g.values {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}

// Joiner is what Join and Reduce stages need of their output queue:
// Memory and Disk are Joiners.
type Joiner interface {
	Queue
	// Join records member (with its value) in group, which has size
	// members. Once all have been recorded, and until the group fires,
	// it returns complete and the members' values in member order. A
	// member recorded twice counts once; a group that has fired ignores
	// members.
	Join(ctx context.Context, group string, size int, member string, value []byte) (values [][]byte, complete bool, err error)
	// Fire enqueues result as the group's result, unless the group has
	// fired already; it reports whether this call fired it.
	Fire(ctx context.Context, group string, result Item) (fired bool, err error)
}

// Join records a member of a group; see Joiner.
func (q *Memory) Join(ctx context.Context, name string, size int, member string, value []byte) ([][]byte, bool, error) {
	switch {
	case name == "" || member == "":
		return nil, false, invalid("join: empty group or member name")
	case len(name) > MaxIDLen || len(member) > MaxIDLen:
		return nil, false, invalid("join: group or member name over %d bytes", MaxIDLen)
	case size < 1:
		return nil, false, invalid("join %q: size %d, want 1 or more", name, size)
	case len(value) > q.o.maxPayload:
		return nil, false, invalid("join %q: value of %d bytes, over the limit of %d", name, len(value), q.o.maxPayload)
	}
	s := q.shards[0] // the groups', and the results' with their IDs
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, false, err
	}
	g := s.groups[name]
	if g == nil {
		g = &group{size: size, values: map[string][]byte{}}
		s.groups[name] = g
	}
	var wait *commit
	if q.j != nil {
		wait = q.j.add() // a member seen, or a group fired, may still be on its way
	}
	switch _, seen := g.values[member]; {
	case g.fired:
		s.mu.Unlock()
		return nil, false, wait.wait()
	case g.size != size:
		s.mu.Unlock()
		return nil, false, invalid("join %q: size %d, but its members so far said %d", name, size, g.size)
	case !seen && len(g.values) == g.size:
		s.mu.Unlock()
		return nil, false, invalid("join %q: member %q is one more than its size, %d", name, member, g.size)
	case !seen:
		g.values[member] = value
		if q.j != nil {
			wait = q.j.add(record{kind: recMember, id: name, key: member, failures: size, payload: value})
		}
	}
	var values [][]byte
	complete := len(g.values) == g.size
	if complete {
		for _, m := range g.members() {
			values = append(values, g.values[m])
		}
	}
	s.mu.Unlock()
	if err := wait.wait(); err != nil {
		return nil, false, err
	}
	return values, complete, nil
}

// Fire enqueues result as the group's result, once; see Joiner.
func (q *Memory) Fire(ctx context.Context, name string, result Item) (bool, error) {
	if err := q.checkItem(0, &result); err != nil {
		return false, err
	}
	if result.ID == "" {
		return false, invalid("fire %q: the result needs an ID, so that it is enqueued once", name)
	}
	s := q.shards[0]
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return false, err
	}
	g := s.groups[name]
	switch {
	case g != nil && g.fired:
		var wait *commit
		if q.j != nil {
			wait = q.j.add() // its firing may still be on its way
		}
		s.mu.Unlock()
		return false, wait.wait()
	case g == nil || len(g.values) < g.size:
		s.mu.Unlock()
		return false, invalid("fire %q: the group is not complete", name)
	}
	g.fired, g.values = true, nil
	// The fired mark and the result go in one batch record: both or
	// neither survive a crash.
	var pre []record
	if q.j != nil {
		pre = append(pre, record{kind: recFired, id: name})
	}
	wait := s.enqueueLocked([]Item{result}, pre...)
	s.mu.Unlock()
	return true, wait.wait()
}
