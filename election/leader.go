package election

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Leader identifies the cluster's leader as one node sees it. The zero ID
// means no leader is known (an election is under way, or this node is cut
// off).
type Leader struct {
	ID   string
	Addr string
	Term uint64 // raft term: grows with every election
}

// epoch is the leader's log clock for one term. Lease times in the log
// are in log-clock nanoseconds: a new leader continues from the highest
// value committed before it (read after a barrier) and adds only the time
// it has itself seen pass. Log time therefore never runs ahead of real
// time, whoever leads and whatever their wall clocks say, so a lease
// granted before a leader change is honoured by the next leader for at
// least its remaining time.
type epoch struct {
	term   uint64
	startL int64
	start  time.Time // monotonic
}

func (e *epoch) now() int64 { return e.startL + int64(time.Since(e.start)) }

// session is one stretch of verified leadership: Run's leader contexts
// derive from ctx, which is cancelled when the last quorum acknowledgement
// is about to become too old to exclude another leader.
type session struct {
	term   uint64
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer

	mu      sync.Mutex
	ended   bool
	running sync.WaitGroup // Run callbacks in flight
}

// Leader returns the current leader as this node sees it, and whether one
// is known.
func (n *Node) Leader() (Leader, bool) {
	n.lmu.Lock()
	defer n.lmu.Unlock()
	return n.leader, n.leader.ID != ""
}

// IsLeader reports whether this node is the raft leader right now. For
// work that must not run on two nodes at once use Run, whose context ends
// before another node can lead.
func (n *Node) IsLeader() bool { return !n.closed.Load() && n.raft.State() == raft.Leader }

// WatchLeader returns a channel that holds the latest leadership view: the
// current one at once, then every change. It is a latest-value channel:
// a slow reader skips intermediate states but always receives the newest.
// The channel is closed when ctx ends or the node closes.
func (n *Node) WatchLeader(ctx context.Context) <-chan Leader {
	ch := make(chan Leader, 1)
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if n.closed.Load() {
		close(ch)
		return ch
	}
	ch <- n.leader
	n.lwatchers[ch] = context.AfterFunc(ctx, func() {
		n.lmu.Lock()
		defer n.lmu.Unlock()
		if _, ok := n.lwatchers[ch]; ok {
			delete(n.lwatchers, ch)
			close(ch)
		}
	})
	return ch
}

// WaitForLeader blocks until a leader is known, and returns it.
func (n *Node) WaitForLeader(ctx context.Context) (Leader, error) {
	for {
		n.lmu.Lock()
		l, ch := n.leader, n.lchanged
		n.lmu.Unlock()
		if l.ID != "" {
			return l, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Leader{}, fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-n.ctx.Done():
			return Leader{}, ErrClosed
		}
	}
}

// broadcastLocked wakes waiters and refreshes every watcher; lmu is held.
func (n *Node) broadcastLocked() {
	close(n.lchanged)
	n.lchanged = make(chan struct{})
	for ch := range n.lwatchers {
		select {
		case <-ch:
		default:
		}
		ch <- n.leader
	}
}

func (n *Node) closeWatchers() {
	n.lmu.Lock()
	for ch, stop := range n.lwatchers {
		stop()
		delete(n.lwatchers, ch)
		close(ch)
	}
	n.lmu.Unlock()
	n.wmu.Lock()
	for w := range n.owatches {
		w.stop()
	}
	n.wmu.Unlock()
}

// observe follows raft's leadership signals. NotifyCh (this node gained
// or lost leadership) is never dropped by raft and must always be read;
// leader observations may be dropped, so every wake-up re-reads raft's
// state, and a ticker catches anything missed.
func (n *Node) observe() {
	defer n.observing.Done()
	tick := time.NewTicker(n.opts.heartbeat / 2)
	defer tick.Stop()
	type leading struct {
		stop context.CancelFunc
		done chan struct{}
	}
	var cur *leading
	stop := func() {
		if cur != nil {
			cur.stop()
			<-cur.done
			cur = nil
		}
	}
	defer stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-n.notifyCh:
			if isLeader && cur == nil {
				ctx, cancel := context.WithCancel(n.ctx)
				cur = &leading{stop: cancel, done: make(chan struct{})}
				go func(done chan struct{}) {
					defer close(done)
					n.lead(ctx)
				}(cur.done)
			} else if !isLeader {
				stop()
			}
		case <-n.obsCh:
		case <-tick.C:
		}
		n.refreshLeader()
	}
}

func (n *Node) refreshLeader() {
	addr, id := n.raft.LeaderWithID()
	l := Leader{ID: string(id), Addr: string(addr), Term: n.raft.CurrentTerm()}
	if l.ID == "" {
		l.Addr = ""
	}
	n.lmu.Lock()
	defer n.lmu.Unlock()
	now := time.Now()
	old := n.leader
	if l == old {
		if l.ID != "" {
			n.lastSeen = now
		}
		return
	}
	switch {
	case old.ID != "" && l.ID == "":
		// The best estimate of when the old leader went quiet is the last
		// time we heard from it.
		n.lostAt = n.raft.LastContact()
		if n.lostAt.IsZero() || n.lostAt.After(now) {
			n.lostAt = n.lastSeen
		}
	case l.ID != "" && l.ID != old.ID:
		n.leaderChanges.Add(1)
		if !n.lostAt.IsZero() {
			n.lastFailover.Store(int64(now.Sub(n.lostAt)))
			n.lostAt = time.Time{}
		} else if old.ID != "" {
			n.lastFailover.Store(int64(now.Sub(n.lastSeen)))
		}
	}
	n.leader = l
	n.lastSeen = now
	n.broadcastLocked()
}

// lead runs while raft says this node leads: it catches up with the log,
// starts the log clock, keeps a verified-leadership session for Run, and
// expires lapsed leases.
func (n *Node) lead(ctx context.Context) {
	defer n.endLeadership()
	term := n.raft.CurrentTerm()
	// A barrier applies every entry of earlier terms, so the clock below
	// starts after every lease time already committed.
	if err := n.wait(func() raft.Future { return n.raft.Barrier(0) }); err != nil || ctx.Err() != nil {
		return
	}
	var startL int64
	n.fsm.read(func(st *state) { startL = st.Clock })
	ep := &epoch{term: term, startL: startL, start: time.Now()}
	n.lmu.Lock()
	n.epoch = ep
	n.broadcastLocked()
	n.lmu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.expireLoop(ctx, ep)
	}()
	defer wg.Wait()

	tick := time.NewTicker(n.opts.heartbeat / 4)
	defer tick.Stop()
	for {
		if !n.transferring.Load() {
			start := time.Now()
			if err := n.wait(n.raft.VerifyLeader); err != nil {
				return
			}
			// A follower that acknowledged at or after start will not
			// vote for anyone else until a heartbeat timeout after that,
			// and any new leader needs one of those votes. The margin
			// covers timer lateness and clock-rate differences.
			n.extendSession(term, start.Add(time.Duration(float64(n.opts.heartbeat)*leaderMargin)))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (n *Node) extendSession(term uint64, until time.Time) {
	d := time.Until(until)
	if d <= 0 {
		return
	}
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if n.closed.Load() || n.transferring.Load() {
		return
	}
	s := n.session
	if s != nil && s.ctx.Err() == nil && s.timer.Reset(d) {
		return
	}
	// The old session lapsed (or never was): start a new one.
	s = &session{term: term}
	s.ctx, s.cancel = context.WithCancel(n.ctx)
	s.timer = time.AfterFunc(d, func() { n.lapse(s) })
	n.session = s
	n.broadcastLocked()
}

func (n *Node) lapse(s *session) {
	s.cancel()
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if n.session == s {
		n.session = nil
		n.broadcastLocked()
	}
}

// endSession cancels the current session and returns it.
func (n *Node) endSession() *session {
	n.lmu.Lock()
	s := n.session
	n.session = nil
	if s != nil {
		s.timer.Stop()
		s.cancel()
		n.broadcastLocked()
	}
	n.lmu.Unlock()
	if s != nil {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
	}
	return s
}

func (n *Node) endLeadership() {
	n.endSession()
	n.lmu.Lock()
	if n.epoch != nil {
		n.epoch = nil
		n.broadcastLocked()
	}
	n.lmu.Unlock()
}

// leaderEpoch returns the log clock when this node leads, waiting for the
// catch-up barrier if it has just been elected.
func (n *Node) leaderEpoch(ctx context.Context) (*epoch, error) {
	for {
		if n.closed.Load() {
			return nil, ErrClosed
		}
		if n.raft.State() != raft.Leader {
			return nil, errNotLeaderHere
		}
		n.lmu.Lock()
		ep, ch := n.epoch, n.lchanged
		n.lmu.Unlock()
		if ep != nil {
			return ep, nil
		}
		t := time.NewTimer(n.opts.heartbeat / 4)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

type termKey struct{}

// Term returns the raft term of the leadership that Run's leaderCtx
// belongs to. Terms only grow, so a store can use it as a fencing token
// for singleton work (see Fence).
func Term(leaderCtx context.Context) (uint64, bool) {
	t, ok := leaderCtx.Value(termKey{}).(uint64)
	return t, ok
}

// Run campaigns for as long as ctx lives. Each time this node becomes the
// verified leader it calls fn with a leaderCtx that is cancelled before
// any other node can become leader (while the network delivers messages
// and timers fire within the margin; for stores, pair it with the fencing
// token from Term). fn must return soon after leaderCtx ends. If fn returns
// while the node still leads, Run waits for that leadership to end before
// calling fn again. Run returns ctx's error when ctx ends, or ErrClosed.
func (n *Node) Run(ctx context.Context, fn func(leaderCtx context.Context)) error {
	if fn == nil {
		return invalid("Run: nil function")
	}
	for {
		s, err := n.awaitSession(ctx)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			continue
		}
		s.running.Add(1)
		s.mu.Unlock()
		lctx, cancel := context.WithCancel(context.WithValue(ctx, termKey{}, s.term))
		stop := context.AfterFunc(s.ctx, cancel)
		fn(lctx)
		stop()
		cancel()
		s.running.Done()
		select {
		case <-s.ctx.Done():
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrClosed
		}
	}
}

func (n *Node) awaitSession(ctx context.Context) (*session, error) {
	for {
		n.lmu.Lock()
		s, ch := n.session, n.lchanged
		n.lmu.Unlock()
		if s != nil && s.ctx.Err() == nil {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// TransferLeadership asks the leader to hand leadership to the node with
// ID to, or to any up-to-date voter when to is empty. The leader first
// ends its Run callbacks (waiting for them to return, within ctx), then
// transfers. It returns when the transfer is done.
func (n *Node) TransferLeadership(ctx context.Context, to string) error {
	if to != "" {
		if err := validID(to); err != nil {
			return err
		}
	}
	l, err := n.WaitForLeader(ctx)
	if err != nil {
		return err
	}
	if l.ID == to {
		return nil
	}
	_, err = n.routed(ctx, &rpcRequest{Kind: rpcTransfer, ID: to, From: l.ID})
	return err
}

// transferLocal hands leadership away. from is the leader the caller saw:
// if that is no longer this node, leadership has already moved (perhaps
// by an earlier attempt of the same request), which is success when it
// moved where it was asked to.
func (n *Node) transferLocal(ctx context.Context, to, from string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	if n.id != from || n.id == to {
		if to == "" || n.id == to {
			return nil
		}
		return fmt.Errorf("%w: leadership moved to %q, not %q", ErrNotLeader, n.id, to)
	}
	var target raft.ServerAddress
	if to != "" {
		f := n.raft.GetConfiguration()
		if err := n.wait(func() raft.Future { return f }); err != nil {
			return n.raftErr("read configuration", err)
		}
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == to {
				target = s.Address
			}
		}
		if target == "" {
			return invalid("TransferLeadership: %q is not a member", to)
		}
	}
	n.transferring.Store(true)
	defer n.transferring.Store(false)
	if s := n.endSession(); s != nil {
		done := make(chan struct{})
		go func() { s.running.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("election: transfer: waiting for Run callbacks: %w", ctx.Err())
		}
	}
	return n.raftErr("leadership transfer", n.wait(func() raft.Future {
		if to == "" {
			return n.raft.LeadershipTransfer()
		}
		return n.raft.LeadershipTransferToServer(raft.ServerID(to), target)
	}))
}
