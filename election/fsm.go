package election

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Commands replicated through raft. Every command carries the log clock
// (now, in nanoseconds) stamped by the leader that proposed it, so that
// every replica decides expiry from the log alone and never from its own
// wall clock.
const (
	opAcquire = 1 + iota
	opRenew
	opRelease
	opExpire
)

// command is one entry of the replicated log. It is JSON on the wire:
// small, self-describing, and easy to read in a debugger; raft's own costs
// dominate its encoding cost by two orders of magnitude.
type command struct {
	Op       int    `json:"op"`
	Now      int64  `json:"now"`
	Resource string `json:"res,omitempty"`
	Holder   string `json:"holder,omitempty"`
	Lease    string `json:"lease,omitempty"`
	TTL      int64  `json:"ttl,omitempty"`
	Token    uint64 `json:"token,omitempty"`
}

// result is what applying a command returns to the proposer (and, through
// forwarding, to the follower that asked).
type result struct {
	Code    int    `json:"code"` // codeOK, codeHeld, codeLost
	Holder  string `json:"holder,omitempty"`
	Token   uint64 `json:"token,omitempty"`
	Expires int64  `json:"expires,omitempty"` // log clock
	Left    int64  `json:"left,omitempty"`    // Expires minus the command's clock
}

const (
	codeOK = iota
	codeHeld
	codeLost
	codeInvalid
)

// record is one granted lease in the replicated state.
type record struct {
	Holder  string `json:"holder"`
	Lease   string `json:"lease"`
	Token   uint64 `json:"token"`
	TTL     int64  `json:"ttl"`
	Expires int64  `json:"expires"` // log clock
}

// state is the whole replicated state; it is also the snapshot format.
type state struct {
	Clock  int64              `json:"clock"` // highest log clock applied
	Token  uint64             `json:"token"` // last fencing token issued
	Leases map[string]*record `json:"leases"`
}

// fsm applies commands to state. Reads take mu; raft calls Apply, Snapshot
// and Restore from one goroutine.
type fsm struct {
	mu    sync.Mutex
	st    state
	index uint64 // last applied raft index

	// emit is called, under mu, for each ownership change in log order.
	emit func(Event)
	// changed is closed and replaced after every applied command so that
	// waiters (Acquire, the expiry loop) wake without polling.
	changed chan struct{}

	granted, renewed, released, expired, applies uint64
}

func newFSM(emit func(Event)) *fsm {
	return &fsm{
		st:      state{Leases: map[string]*record{}},
		emit:    emit,
		changed: make(chan struct{}),
	}
}

var _ raft.FSM = (*fsm)(nil)

func decodeCommand(b []byte) (command, error) {
	var c command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("election: decode command: %w", err)
	}
	if c.Op < opAcquire || c.Op > opExpire {
		return c, fmt.Errorf("election: decode command: unknown op %d", c.Op)
	}
	return c, nil
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = l.Index
	f.applies++
	defer f.notify()
	if err != nil {
		// A command this version cannot read must not stop the log: every
		// replica skips it alike, and the proposer learns why.
		return result{Code: codeInvalid}
	}
	return f.apply(c, l.Index)
}

func (f *fsm) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// apply runs one decoded command; f.mu is held.
func (f *fsm) apply(c command, index uint64) result {
	if c.Now > f.st.Clock {
		f.st.Clock = c.Now
	}
	now := c.Now
	rec := f.st.Leases[c.Resource]
	switch c.Op {
	case opAcquire:
		if rec != nil && rec.Lease == c.Lease {
			// A retried request that was already granted: idempotent.
			return result{Code: codeOK, Holder: rec.Holder, Token: rec.Token, Expires: rec.Expires}
		}
		if rec != nil && rec.Expires > now {
			return result{Code: codeHeld, Holder: rec.Holder, Token: rec.Token, Expires: rec.Expires, Left: rec.Expires - now}
		}
		if rec != nil {
			f.expire(c.Resource, rec, index)
		}
		f.st.Token++
		rec = &record{Holder: c.Holder, Lease: c.Lease, Token: f.st.Token, TTL: c.TTL, Expires: now + c.TTL}
		f.st.Leases[c.Resource] = rec
		f.granted++
		f.emit(Event{Kind: Acquired, Resource: c.Resource, Holder: rec.Holder, Token: rec.Token, Index: index})
		return result{Code: codeOK, Holder: rec.Holder, Token: rec.Token, Expires: rec.Expires}
	case opRenew:
		if rec == nil || rec.Lease != c.Lease || rec.Token != c.Token {
			return result{Code: codeLost}
		}
		if rec.Expires <= now {
			f.expire(c.Resource, rec, index)
			return result{Code: codeLost}
		}
		rec.Expires = now + c.TTL
		rec.TTL = c.TTL
		f.renewed++
		return result{Code: codeOK, Holder: rec.Holder, Token: rec.Token, Expires: rec.Expires}
	case opRelease:
		if rec == nil || rec.Lease != c.Lease || rec.Token != c.Token {
			return result{Code: codeLost}
		}
		delete(f.st.Leases, c.Resource)
		f.released++
		f.emit(Event{Kind: Released, Resource: c.Resource, Holder: rec.Holder, Token: rec.Token, Index: index})
		return result{Code: codeOK, Holder: rec.Holder, Token: rec.Token}
	case opExpire:
		if rec != nil && rec.Token == c.Token && rec.Expires <= now {
			f.expire(c.Resource, rec, index)
		}
		return result{Code: codeOK}
	}
	return result{Code: codeInvalid}
}

func (f *fsm) expire(resource string, rec *record, index uint64) {
	delete(f.st.Leases, resource)
	f.expired++
	f.emit(Event{Kind: Expired, Resource: resource, Holder: rec.Holder, Token: rec.Token, Index: index})
}

// read calls fn with the state under the lock.
func (f *fsm) read(fn func(st *state)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

// wait returns a channel closed after the next applied command.
func (f *fsm) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(&f.st)
	if err != nil {
		return nil, fmt.Errorf("election: snapshot: %w", err)
	}
	return snapshot(b), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := decodeState(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.notify()
	return nil
}

func decodeState(r io.Reader) (state, error) {
	var st state
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return st, fmt.Errorf("election: restore snapshot: %w", err)
	}
	if st.Leases == nil {
		st.Leases = map[string]*record{}
	}
	for res, rec := range st.Leases {
		if rec == nil {
			return st, errors.New("election: restore snapshot: empty lease record for " + res)
		}
	}
	return st, nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
