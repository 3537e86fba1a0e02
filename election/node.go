package election

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/distkit/distkit/internal/hclogzap"
	"github.com/distkit/distkit/internal/raftbolt"
)

// Node is one member of an election cluster: a raft peer plus the lease
// table it replicates. All methods are safe for concurrent use. A Node
// starts as a follower with no cluster; call Bootstrap on the first
// members or Join on a new one.
type Node struct {
	id   string
	addr string
	opts options
	log  *zap.Logger

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	mux   *mux
	fwd   *forwarder
	trans *raft.NetworkTransport
	raft  *raft.Raft
	fsm   *fsm
	st    *stores
	bolt  *raftbolt.Store
	obs   *raft.Observer
	wg    sync.WaitGroup

	notifyCh chan bool
	obsCh    chan raft.Observation

	// Leadership as this node sees it; see leader.go.
	lmu       sync.Mutex
	leader    Leader
	lchanged  chan struct{} // closed and replaced on every change
	lwatchers map[chan Leader]func() bool
	lastSeen  time.Time // last refresh that saw the current leader
	lostAt    time.Time // when the previous leader was last known good
	epoch     *epoch    // non-nil while this node leads and has caught up
	session   *session  // non-nil while Run may act as leader

	transferring atomic.Bool

	// Ownership watchers and live leases; see lease.go and watch.go.
	wmu      sync.Mutex
	owatches map[*ownerWatch]struct{}
	leases   map[*Lease]struct{}

	leaderChanges atomic.Uint64
	lastFailover  atomic.Int64
	forwarded     atomic.Uint64

	// opMu is held (read) around every raft call that returns a future:
	// raft never answers futures still queued when it shuts down, so
	// Close takes it (write) to let them finish first.
	opMu sync.RWMutex

	observing sync.WaitGroup // the observe goroutine and its lead

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// stores are raft's storage; a test may keep them across Node restarts to
// play the part of a disk.
type stores struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
}

func newMemStores() *stores {
	s := raft.NewInmemStore()
	return &stores{logs: s, stable: s, snaps: raft.NewInmemSnapshotStore()}
}

// New creates a Node named id and starts its raft peer. It listens at once
// (see WithTCP and WithNetwork) but contacts nobody until Bootstrap or
// Join. A Node restarted on durable state (WithDir) waits one heartbeat
// timeout before it starts, so that it cannot help elect a new leader while
// the old one still trusts its followers' last acknowledgement.
func New(id string, opts ...Option) (*Node, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for i, opt := range opts {
		if opt == nil {
			return nil, invalid("option %d is nil", i)
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	cfg, err := raftConfig(id, &o)
	if err != nil {
		return nil, err
	}
	n := &Node{
		id:        id,
		opts:      o,
		log:       o.logger.With(zap.String("node", id)),
		notifyCh:  make(chan bool, 8),
		obsCh:     make(chan raft.Observation, 64),
		lchanged:  make(chan struct{}),
		lwatchers: map[chan Leader]func() bool{},
		owatches:  map[*ownerWatch]struct{}{},
		leases:    map[*Lease]struct{}{},
	}
	cfg.NotifyCh = n.notifyCh
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.fsm = newFSM(n.emit)

	if err := n.openStores(); err != nil {
		n.cancel()
		return nil, err
	}
	ln, dial := o.listener, o.dial
	if ln == nil {
		if ln, dial, err = tcpNetwork(&o); err != nil {
			n.closeStores()
			n.cancel()
			return nil, err
		}
	}
	n.addr = o.advertise
	if n.addr == "" {
		n.addr = ln.Addr().String()
	}
	n.mux = newMux(ln, dial, n.addr, n.serveForward)
	n.fwd = &forwarder{m: n.mux, max: forwardPool, idle: map[string][]net.Conn{}}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftLayer{n.mux},
		MaxPool: 3,
		Timeout: ioTimeout,
		// No pipelining: it brings little on a LAN (hashicorp/raft#541),
		// and under injected stalls its send and decode goroutines were
		// seen to deadlock each other, hanging Shutdown for good.
		MaxRPCsInFlight: 1,
		Logger:          hclogzap.New(n.log, "raft-net"),
	})

	existing, err := raft.HasExistingState(n.st.logs, n.st.stable, n.st.snaps)
	if err != nil {
		n.abort()
		return nil, fmt.Errorf("election: read raft state: %w", err)
	}
	if existing {
		time.Sleep(o.heartbeat)
	}
	r, err := raft.NewRaft(cfg, n.fsm, n.st.logs, n.st.stable, n.st.snaps, n.trans)
	if err != nil {
		n.abort()
		return nil, fmt.Errorf("election: start raft: %w", err)
	}
	n.raft = r
	n.obs = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.obs)
	n.observing.Add(1)
	go n.observe()
	return n, nil
}

func (n *Node) openStores() error {
	switch {
	case n.opts.stores != nil:
		n.st = n.opts.stores
	case n.opts.dir != "":
		b, err := raftbolt.Open(filepath.Join(n.opts.dir, "raft.db"), raftbolt.Options{})
		if err != nil {
			return fmt.Errorf("election: open log store in %q: %w", n.opts.dir, err)
		}
		snaps, err := raft.NewFileSnapshotStoreWithLogger(n.opts.dir, 2, hclogzap.New(n.log, "raft-snap"))
		if err != nil {
			_ = b.Close()
			return fmt.Errorf("election: open snapshot store in %q: %w", n.opts.dir, err)
		}
		n.bolt = b
		n.st = &stores{logs: b, stable: b, snaps: snaps}
	default:
		n.st = newMemStores()
	}
	return nil
}

func (n *Node) closeStores() {
	if n.bolt != nil {
		_ = n.bolt.Close()
	}
}

// abort undoes a half-built New.
func (n *Node) abort() {
	_ = n.trans.Close()
	_ = n.mux.close()
	n.closeStores()
	n.cancel()
}

func raftConfig(id string, o *options) (*raft.Config, error) {
	c := raft.DefaultConfig()
	c.HeartbeatTimeout = o.heartbeat
	c.ElectionTimeout = o.heartbeat
	// The leader steps down when it has not heard from a quorum for this
	// long. At half the heartbeat timeout (50 ms) a CPU-starved process
	// lost leadership several times a minute; at the full timeout it held.
	// Safety does not rest on it: leases are in the log, and Run verifies.
	c.LeaderLeaseTimeout = o.heartbeat
	// Followers learn of commits on the next heartbeat or append; a short
	// commit timeout keeps their view (and their watchers) close behind.
	c.CommitTimeout = 5 * time.Millisecond
	if o.raftConfig != nil {
		o.raftConfig(c)
	}
	c.LocalID = raft.ServerID(id)
	c.Logger = hclogzap.New(o.logger.With(zap.String("node", id)), "raft")
	if err := raft.ValidateConfig(c); err != nil {
		return nil, invalid("raft config: %v", err)
	}
	o.heartbeat = c.HeartbeatTimeout
	return c, nil
}

func validID(id string) error {
	if id == "" {
		return invalid("empty node ID")
	}
	if len(id) > 256 || !utf8.ValidString(id) {
		return invalid("node ID %.40q: want at most 256 bytes of UTF-8", id)
	}
	return nil
}

// ID returns the Node's ID.
func (n *Node) ID() string { return n.id }

// Addr returns the address peers use to reach this Node: give it to
// Bootstrap's peer list or to another node's Join.
func (n *Node) Addr() string { return n.addr }

// Close leaves the raft cluster's conversations (it does not remove this
// Node from the configuration: call Remove first for that), marks every
// lease held through this Node as lost, and closes the transport. It is
// idempotent and safe to call concurrently.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		n.cancel()
		n.endLeadership()
		n.loseAllLeases()
		// Taking the write lock waits until every raft call in flight has
		// been answered; later calls see closed and return ErrClosed.
		n.opMu.Lock()
		//lint:ignore SA2001 the lock is a barrier here, not a guard
		n.opMu.Unlock()
		n.observing.Wait()
		// Shutdown().Error() also closes the transport (Shutdown alone
		// does not).
		if err := n.raft.Shutdown().Error(); err != nil {
			n.closeErr = fmt.Errorf("election: shut down raft: %w", err)
		}
		n.raft.DeregisterObserver(n.obs)
		n.fwd.close()
		_ = n.mux.close()
		n.wg.Wait()
		n.closeWatchers()
		n.closeStores()
	})
	return n.closeErr
}

// Peer names a cluster member for Bootstrap.
type Peer struct {
	ID   string
	Addr string
}

// Bootstrap creates a new cluster of peers (which must include this Node,
// at its Addr) and waits until it has a leader. Call it on one node with
// the full list, or on every listed node with the same list; the others
// learn the configuration from the leader. It fails with
// ErrAlreadyBootstrapped on a node that has cluster state.
func (n *Node) Bootstrap(ctx context.Context, peers []Peer) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(peers) == 0 {
		return invalid("Bootstrap: no peers")
	}
	var cfg raft.Configuration
	ids, addrs := map[string]bool{}, map[string]bool{}
	self := false
	for i, p := range peers {
		if err := validID(p.ID); err != nil {
			return fmt.Errorf("Bootstrap: peer %d: %w", i, err)
		}
		if p.Addr == "" {
			return invalid("Bootstrap: peer %d (%q) has no address", i, p.ID)
		}
		if ids[p.ID] || addrs[p.Addr] {
			return invalid("Bootstrap: peer %d (%q at %q) is listed twice", i, p.ID, p.Addr)
		}
		ids[p.ID], addrs[p.Addr] = true, true
		if p.ID == n.id {
			if p.Addr != n.addr {
				return invalid("Bootstrap: this node %q is listed at %q but listens at %q", p.ID, p.Addr, n.addr)
			}
			self = true
		}
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	if !self {
		return invalid("Bootstrap: peers do not include this node %q", n.id)
	}
	if err := n.wait(func() raft.Future { return n.raft.BootstrapCluster(cfg) }); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("%w: %w", ErrAlreadyBootstrapped, err)
		}
		return n.raftErr("bootstrap", err)
	}
	_, err := n.WaitForLeader(ctx)
	return err
}

// Join asks the cluster to add this Node as a voter, through any member
// listed in addrs (tried in order; a follower passes the request on to
// the leader). It returns once the configuration change is committed.
func (n *Node) Join(ctx context.Context, addrs ...string) error {
	if len(addrs) == 0 {
		return invalid("Join: no addresses")
	}
	var last error
	for {
		for _, a := range addrs {
			if n.closed.Load() {
				return ErrClosed
			}
			resp, err := n.fwd.call(ctx, a, &rpcRequest{Kind: rpcJoin, ID: n.id, Addr: n.addr})
			if err == nil {
				err = codeErr(resp.Code, resp.Err)
			}
			if err == nil {
				return nil
			}
			if errors.Is(err, ErrInvalid) {
				return err
			}
			last = err
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("election: join via %v: %w (last error: %v)", addrs, err, last)
		}
	}
}

// Remove takes the member id out of the cluster's configuration. Removing
// this Node while it leads hands leadership to another member first, so
// Run's leader context ends before anyone else leads.
func (n *Node) Remove(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if id == n.id && n.raft.State() == raft.Leader {
		if err := n.TransferLeadership(ctx, ""); err != nil {
			return err
		}
	}
	_, err := n.routed(ctx, &rpcRequest{Kind: rpcRemove, ID: id})
	return err
}

func (n *Node) joinLocal(ctx context.Context, id, addr string) error {
	if err := validID(id); err != nil {
		return err
	}
	if addr == "" {
		return invalid("join: node %q has no address", id)
	}
	if err := n.requireLeader(); err != nil {
		return err
	}
	return n.raftErr("add voter", n.wait(func() raft.Future {
		return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx))
	}))
}

func (n *Node) removeLocal(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	return n.raftErr("remove server", n.wait(func() raft.Future {
		return n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx))
	}))
}

func (n *Node) requireLeader() error {
	if n.closed.Load() {
		return ErrClosed
	}
	if n.raft.State() != raft.Leader {
		return errNotLeaderHere
	}
	return nil
}

// wait starts a raft operation and waits for its answer, unless the node
// is closing (see opMu).
func (n *Node) wait(start func() raft.Future) error {
	n.opMu.RLock()
	defer n.opMu.RUnlock()
	if n.closed.Load() {
		return ErrClosed
	}
	return start().Error()
}

// raftErr translates raft's errors: those that mean "ask the leader
// again" become errNotLeaderHere (the router retries them), shutdown
// becomes ErrClosed, and the rest keep raft's error as the cause.
func (n *Node) raftErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore):
		return errNotLeaderHere
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("election: %s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("election: %s: %w", op, err)
}

// routed runs req on the leader: here when this Node leads, otherwise by
// forwarding. It retries while leadership moves, until ctx ends.
func (n *Node) routed(ctx context.Context, req *rpcRequest) (rpcResponse, error) {
	backoff := 5 * time.Millisecond
	var last error
	for {
		if n.closed.Load() {
			return rpcResponse{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = ErrNoLeader
			}
			return rpcResponse{}, fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, err, last)
		}
		var resp rpcResponse
		var err error
		l, ok := n.Leader()
		switch {
		case n.raft.State() == raft.Leader:
			resp = n.handle(ctx, req)
			err = codeErr(resp.Code, resp.Err)
		case ok:
			n.forwarded.Add(1)
			resp, err = n.fwd.call(ctx, l.Addr, req)
			if err == nil {
				err = codeErr(resp.Code, resp.Err)
			}
		default:
			err = ErrNoLeader
		}
		if err == nil || !retryable(err) {
			return resp, err
		}
		last = err
		// Wait for a leadership change or a short backoff, whichever is
		// first: the leader may be mid-election or mid-catch-up.
		n.lmu.Lock()
		ch := n.lchanged
		n.lmu.Unlock()
		t := time.NewTimer(backoff)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		case <-n.ctx.Done():
		}
		t.Stop()
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}

func retryable(err error) bool {
	switch {
	case errors.Is(err, errNotLeaderHere), errors.Is(err, ErrNoLeader):
		return true
	case errors.Is(err, ErrClosed), errors.Is(err, ErrInvalid), errors.Is(err, ErrNoOwner),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// Connection-level failures (EOF, reset, refused) while forwarding.
	return !isRemoteFailure(err)
}

// isRemoteFailure reports errors that the leader returned after trying:
// they are answers, not transport trouble.
func isRemoteFailure(err error) bool {
	var rf *remoteError
	return errors.As(err, &rf)
}

type remoteError struct{ msg string }

func (e *remoteError) Error() string { return "election: leader: " + e.msg }

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Nanosecond
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
