package election

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/raft"
)

// Lease is the ownership of one named resource, granted through raft. The
// holder's own view of it ends before the cluster's: its clock starts when
// the request is sent, the cluster's when the leader receives it, and it
// ends a twentieth of the TTL early. Use
// Token to fence every write the holder makes while it owns the resource.
type Lease struct {
	n        *Node
	resource string
	id       string
	token    uint64
	ttl      time.Duration

	mu       sync.Mutex
	deadline time.Time
	timer    *time.Timer
	lost     chan struct{}
	isLost   bool
}

// Resource returns the name of the leased resource.
func (l *Lease) Resource() string { return l.resource }

// Token returns the lease's fencing token. Tokens grow with every grant,
// across resources and leader changes; a renewal keeps the token.
func (l *Lease) Token() uint64 { return l.token }

// TTL returns the time to live the lease was granted and is renewed with.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Deadline returns the moment the holder's view of the lease ends unless
// it is renewed first.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Valid reports whether the holder can still be sure it owns the resource.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.isLost && time.Now().Before(l.deadline)
}

// Lost returns a channel that is closed the moment the holder can no
// longer be sure it owns the resource: its deadline passed without a
// renewal, a renewal found it gone, it was released, or its Node closed.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Renew extends the lease by its TTL, counted from when the renewal is
// sent. It returns ErrLeaseLost if the lease is over (Lost is closed then)
// and the context's error if no answer came in time; a failed renewal
// leaves the lease valid until its current deadline.
func (l *Lease) Renew(ctx context.Context) error {
	if !l.Valid() {
		l.markLost()
		return ErrLeaseLost
	}
	sent := time.Now()
	resp, err := l.n.routed(ctx, &rpcRequest{Kind: rpcApply, Cmd: &command{
		Op: opRenew, Resource: l.resource, Lease: l.id, Token: l.token, TTL: int64(l.ttl),
	}})
	if err != nil {
		return fmt.Errorf("election: renew %q: %w", l.resource, err)
	}
	if resp.Result == nil || resp.Result.Code != codeOK {
		l.markLost()
		return fmt.Errorf("%w: renew %q found it gone", ErrLeaseLost, l.resource)
	}
	l.mu.Lock()
	if l.isLost || !time.Now().Before(l.deadline) {
		// The old deadline passed while the renewal was in flight: the
		// holder could not be sure for a moment, so the lease stays over.
		l.mu.Unlock()
		l.markLost()
		return ErrLeaseLost
	}
	defer l.mu.Unlock()
	l.deadline = holderDeadline(sent, l.ttl)
	l.timer.Reset(time.Until(l.deadline))
	return nil
}

// Release ends the lease: Lost is closed at once, so the holder stops
// acting before anyone else can own the resource, then the cluster frees
// it. Releasing a lease the cluster no longer has (it expired, or an
// earlier Release got through) is not an error. If Release fails, the
// resource stays held until the lease's TTL runs out.
func (l *Lease) Release(ctx context.Context) error {
	l.markLost()
	_, err := l.n.routed(ctx, &rpcRequest{Kind: rpcApply, Cmd: &command{
		Op: opRelease, Resource: l.resource, Lease: l.id, Token: l.token,
	}})
	if err != nil {
		return fmt.Errorf("election: release %q: %w", l.resource, err)
	}
	return nil
}

func (l *Lease) markLost() {
	l.mu.Lock()
	if !l.isLost {
		l.isLost = true
		l.timer.Stop()
		close(l.lost)
	}
	l.mu.Unlock()
	l.n.wmu.Lock()
	delete(l.n.leases, l)
	l.n.wmu.Unlock()
}

// holderDeadline is when the holder stops trusting a lease sent for at
// sent: a twentieth of the TTL before the cluster can hand it on, so that
// a late timer or a slightly fast clock still ends the holder's view
// first.
func holderDeadline(sent time.Time, ttl time.Duration) time.Time {
	return sent.Add(ttl - ttl/20)
}

func (n *Node) loseAllLeases() {
	n.wmu.Lock()
	ls := make([]*Lease, 0, len(n.leases))
	for l := range n.leases {
		ls = append(ls, l)
	}
	n.wmu.Unlock()
	for _, l := range ls {
		l.markLost()
	}
}

func (n *Node) validLease(resource string, ttl time.Duration) error {
	if err := n.validResource(resource); err != nil {
		return err
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return invalid("lease TTL %v for %q is outside [%v, %v]", ttl, resource, MinTTL, MaxTTL)
	}
	return nil
}

func (n *Node) validResource(resource string) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if resource == "" {
		return invalid("empty resource name")
	}
	if len(resource) > MaxResourceLen || !utf8.ValidString(resource) {
		return invalid("resource %.40q: want at most %d bytes of UTF-8", resource, MaxResourceLen)
	}
	return nil
}

// TryAcquire asks for resource once: it returns a Lease if the resource
// was free (or its lease had expired), and a *HeldError wrapping ErrHeld
// if someone holds it. ttl must be within [MinTTL, MaxTTL].
func (n *Node) TryAcquire(ctx context.Context, resource string, ttl time.Duration) (*Lease, error) {
	if err := n.validLease(resource, ttl); err != nil {
		return nil, err
	}
	return n.tryAcquire(ctx, resource, ttl, newLeaseID())
}

func (n *Node) tryAcquire(ctx context.Context, resource string, ttl time.Duration, id string) (*Lease, error) {
	sent := time.Now()
	resp, err := n.routed(ctx, &rpcRequest{Kind: rpcApply, Cmd: &command{
		Op: opAcquire, Resource: resource, Holder: n.id, Lease: id, TTL: int64(ttl),
	}})
	if err != nil {
		return nil, fmt.Errorf("election: acquire %q: %w", resource, err)
	}
	r := resp.Result
	if r == nil {
		return nil, fmt.Errorf("election: acquire %q: leader sent no result", resource)
	}
	switch r.Code {
	case codeOK:
	case codeHeld:
		return nil, &HeldError{Resource: resource, Holder: r.Holder, Token: r.Token, Left: time.Duration(r.Left)}
	default:
		return nil, fmt.Errorf("election: acquire %q: leader refused the command (code %d)", resource, r.Code)
	}
	l := &Lease{n: n, resource: resource, id: id, token: r.Token, ttl: ttl, deadline: holderDeadline(sent, ttl), lost: make(chan struct{})}
	l.timer = time.AfterFunc(time.Until(l.deadline), l.markLost)
	n.wmu.Lock()
	closed := n.closed.Load()
	if !closed {
		n.leases[l] = struct{}{}
	}
	n.wmu.Unlock()
	if closed {
		l.markLost()
		return nil, ErrClosed
	}
	if !l.Valid() {
		// Granted, but too late for the holder to be sure of it.
		l.markLost()
		return nil, fmt.Errorf("%w: acquire %q: the grant arrived after the lease's TTL", ErrLeaseLost, resource)
	}
	return l, nil
}

// Acquire blocks until this node owns resource or ctx ends. While the
// resource is held it waits for a release or expiry, which it learns from
// the replicated log, and asks again. ttl must be within [MinTTL, MaxTTL].
func (n *Node) Acquire(ctx context.Context, resource string, ttl time.Duration) (*Lease, error) {
	if err := n.validLease(resource, ttl); err != nil {
		return nil, err
	}
	id := newLeaseID()
	for {
		changed := n.fsm.wait()
		l, err := n.tryAcquire(ctx, resource, ttl, id)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		// Ask again when the log changes (a release or expiry is applied
		// here too) or when the current lease would have run out.
		wait := held.Left
		if wait <= 0 || wait > n.opts.heartbeat {
			wait = n.opts.heartbeat
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("election: acquire %q: %w (%v)", resource, ctx.Err(), held)
		case <-n.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		}
		t.Stop()
	}
}

// applyLocal stamps c with the log clock and commits it; this node must
// lead.
func (n *Node) applyLocal(ctx context.Context, c command) (result, error) {
	ep, err := n.leaderEpoch(ctx)
	if err != nil {
		return result{}, err
	}
	c.Now = ep.now()
	b, err := json.Marshal(&c)
	if err != nil {
		return result{}, invalid("encode command: %v", err)
	}
	var f raft.ApplyFuture
	err = n.wait(func() raft.Future {
		f = n.raft.Apply(b, timeoutOf(ctx))
		return f
	})
	if err != nil {
		return result{}, n.raftErr("apply", err)
	}
	r, _ := f.Response().(result)
	return r, nil
}

// Owner describes who holds a resource.
type Owner struct {
	Resource string        `json:"res"`
	Holder   string        `json:"holder"` // ID of the holding node
	Token    uint64        `json:"token"`
	Left     time.Duration `json:"left"` // as the leader saw it when answering
}

// Owner asks the leader who holds resource. It returns ErrNoOwner when
// nobody does. The answer is the leader's and is current when it is sent;
// holders decide for themselves through their Lease.
func (n *Node) Owner(ctx context.Context, resource string) (Owner, error) {
	if err := n.validResource(resource); err != nil {
		return Owner{}, err
	}
	resp, err := n.routed(ctx, &rpcRequest{Kind: rpcOwner, Resource: resource})
	if err != nil {
		if errors.Is(err, ErrNoOwner) {
			return Owner{}, fmt.Errorf("%w: %q", ErrNoOwner, resource)
		}
		return Owner{}, fmt.Errorf("election: owner of %q: %w", resource, err)
	}
	if resp.Owner == nil {
		return Owner{}, fmt.Errorf("election: owner of %q: leader sent no answer", resource)
	}
	return *resp.Owner, nil
}

func (n *Node) ownerLocal(ctx context.Context, resource string) (Owner, error) {
	ep, err := n.leaderEpoch(ctx)
	if err != nil {
		return Owner{}, err
	}
	// A deposed leader must not answer from its stale state: confirm
	// leadership unless a quorum acknowledged it recently.
	n.lmu.Lock()
	verified := n.session != nil && n.session.ctx.Err() == nil
	n.lmu.Unlock()
	if !verified {
		if err := n.wait(n.raft.VerifyLeader); err != nil {
			return Owner{}, n.raftErr("verify leader", err)
		}
	}
	var o Owner
	found := false
	n.fsm.read(func(st *state) {
		if rec := st.Leases[resource]; rec != nil {
			left := rec.Expires - ep.now()
			if left > 0 {
				o, found = Owner{Resource: resource, Holder: rec.Holder, Token: rec.Token, Left: time.Duration(left)}, true
			}
		}
	})
	if !found {
		return Owner{}, ErrNoOwner
	}
	return o, nil
}

// expireLoop frees leases whose time has run out, so that watchers learn
// of it and the state does not grow. Acquire does not depend on it: an
// expired lease is replaced by the next acquire anyway.
func (n *Node) expireLoop(ctx context.Context, ep *epoch) {
	const rescan = 100 * time.Millisecond
	type due struct {
		res   string
		token uint64
	}
	for {
		now := ep.now()
		next := now + int64(rescan)
		var expired []due
		n.fsm.read(func(st *state) {
			for res, rec := range st.Leases {
				if rec.Expires <= now {
					expired = append(expired, due{res, rec.Token})
				} else if rec.Expires < next {
					next = rec.Expires
				}
			}
		})
		for _, d := range expired {
			if _, err := n.applyLocal(ctx, command{Op: opExpire, Resource: d.res, Token: d.token}); err != nil {
				return
			}
		}
		t := time.NewTimer(time.Duration(next - now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func newLeaseID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
