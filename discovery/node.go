package discovery

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// Node is one member of a gossip cluster. Create it with New, add it to a
// cluster with Join, read the cluster with Members, Instances and Watch,
// change what it offers with Register, Deregister and SetHealth, and end
// it with Leave (others see a graceful departure) and Close. All methods
// are safe for concurrent use.
type Node struct {
	name    string
	addr    netip.AddrPort // advertised gossip address
	o       options
	log     *zap.Logger
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring
	bq      *memberlist.TransmitLimitedQueue // audit records to gossip
	dial    func(ctx context.Context, addr string) (net.Conn, error)

	announceMu sync.Mutex // serialises UpdateNode so a newer meta never loses to an older one

	mu       sync.Mutex
	local    meta // what this node announces
	members  map[string]*entry
	watchers map[*watcher]struct{}
	audit    auditLog
	c        counters
	rejected map[string]bool // names whose bad metadata was already logged
	left     bool
	closed   bool
	// reclaimUntil: another address claims our name (our previous
	// instance, not yet found dead), so keep re-announcing until then.
	reclaimUntil time.Time
	// failed members are retried now and then, so that the two sides of
	// a healed partition find each other again without a new Join.
	failed       map[string]failedMember
	reconnecting atomic.Bool

	closing   atomic.Bool
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// entry is this node's view of one member.
type entry struct {
	addr    netip.AddrPort
	meta    meta
	since   time.Time
	pending *pendingFail // memberlist declared it dead; not yet confirmed
	leaving bool         // it sent a leave notice (see noticeLeaving)
}

// pendingFail tracks a member memberlist declared dead while it is checked.
type pendingFail struct {
	back chan struct{} // closed when memberlist sees the member alive again
	// silent is set, under Node.mu, when its gossip port did not answer
	// the check: it may be gone, so it leaves Instances for the grace.
	silent bool
}

// New creates a Node named name and starts gossip on its bind address
// (or transport); it is a cluster of one until Join. name is the member's
// identity: a member that restarts, even on a new address, under the same
// name is the same member. Names are 1–64 letters, digits, '.', '_' or
// '-', and must be unique in the cluster.
func New(name string, opts ...Option) (*Node, error) {
	if err := validName("member name", name); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return nil, invalid("nil Option")
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	n := &Node{
		name:     name,
		o:        o,
		log:      o.logger.With(zap.String("member", name)),
		members:  make(map[string]*entry),
		watchers: make(map[*watcher]struct{}),
		rejected: make(map[string]bool),
		failed:   make(map[string]failedMember),
		done:     make(chan struct{}),
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	n.local = meta{health: o.health, instance: binary.BigEndian.Uint64(id[:]), version: 1}
	for _, s := range o.services {
		if _, dup := n.local.service(s.Name); dup {
			return nil, invalid("WithServices: service %q given twice", s.Name)
		}
		n.local.services = append(n.local.services, s.clone())
	}

	c := o.memberlistConfig()
	n.audit.init(c.SuspicionMult, c.SuspicionMaxTimeoutMult, c.ProbeInterval)
	c.Name = name
	c.Label = o.cluster
	c.Delegate = (*delegate)(n)
	c.Events = (*delegate)(n)
	c.Conflict = (*delegate)(n)
	c.Alive = (*delegate)(n)
	c.LogOutput = nil
	c.Logger = log.New(&logWriter{n: n}, "", 0)
	if len(o.keys) > 0 {
		kr, err := memberlist.NewKeyring(o.keys[1:], o.keys[0])
		if err != nil {
			return nil, invalid("WithKeys: %v", err)
		}
		n.keyring = kr
		c.Keyring = kr
		c.SecretKey = nil
		n.local.keys = fingerprints(kr)
	}
	if err := n.local.checkSize(); err != nil {
		return nil, err
	}
	if o.transport != nil {
		c.Transport = o.transport
		t := o.transport
		n.dial = func(ctx context.Context, addr string) (net.Conn, error) {
			d := verifyTimeout
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			}
			return t.DialAddressTimeout(memberlist.Address{Addr: addr}, d)
		}
	} else {
		bind := netip.MustParseAddrPort(o.bind) // validated by WithBind
		c.Transport = nil
		c.BindAddr = bind.Addr().String()
		c.BindPort = int(bind.Port())
		c.AdvertiseAddr, c.AdvertisePort = "", 0
		if o.advertise != "" {
			adv := netip.MustParseAddrPort(o.advertise)
			c.AdvertiseAddr = adv.Addr().String()
			c.AdvertisePort = int(adv.Port())
		}
		var d net.Dialer
		n.dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if o.verifyDial != nil {
		n.dial = o.verifyDial
	}
	n.bq = &memberlist.TransmitLimitedQueue{
		NumNodes:       n.numMembers,
		RetransmitMult: c.RetransmitMult,
	}

	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("discovery: start memberlist: %w", err)
	}
	n.ml = ml
	ln := ml.LocalNode() // safe now: nothing else runs against it yet
	n.addr = addrPort(ln.Addr, ln.Port)
	n.wg.Add(1)
	go n.maintain()
	return n, nil
}

// Name returns the node's member name.
func (n *Node) Name() string { return n.name }

// Addr returns the address other members reach this node's gossip at.
func (n *Node) Addr() netip.AddrPort { return n.addr }

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// numMembers sizes the audit broadcast queue's retransmissions; it must
// not call memberlist, whose lock may be held by the caller.
func (n *Node) numMembers() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.members)
}

// Join adds the node to the cluster that the seeds belong to and returns
// how many seeds it exchanged state with. A seed is "host:port" (an IP, or
// a name resolved to all its addresses) or "dnssrv+name" (a DNS SRV
// record, each target resolved). Seeds that resolve to this node itself
// are skipped, so every member can be given the same seed list; if only
// self is left, Join returns 0 and no error.
//
// Join fails with ErrJoin when no seed could be contacted; it does not
// retry, so call it again to keep trying. ctx bounds the whole call.
func (n *Node) Join(ctx context.Context, seeds ...string) (int, error) {
	if err := n.usable(); err != nil {
		return 0, err
	}
	if len(seeds) == 0 {
		return 0, invalid("Join: no seeds")
	}
	addrs, errs := n.resolveSeeds(ctx, seeds)
	if len(addrs) == 0 {
		if len(errs) == 0 {
			return 0, nil // only ourselves
		}
		return 0, fmt.Errorf("%w: %w", ErrJoin, seedErrors(errs))
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		c, err := n.ml.Join(addrs)
		res <- result{c, err}
	}()
	select {
	case r := <-res:
		if r.n == 0 {
			// memberlist returns a go-multierror; list its errors on one line.
			if w, ok := r.err.(interface{ WrappedErrors() []error }); ok {
				errs = append(errs, w.WrappedErrors()...)
			} else if r.err != nil {
				errs = append(errs, r.err)
			}
			msg := seedErrors(errs).Error()
			if strings.Contains(msg, "EOF") || strings.Contains(msg, "decrypt") || strings.Contains(msg, "reset") {
				return 0, fmt.Errorf("%w: %w (the seed hung up or spoke another key: check that the cluster label and encryption keys match)", ErrJoin, seedErrors(errs))
			}
			return 0, fmt.Errorf("%w: %w", ErrJoin, seedErrors(errs))
		}
		n.log.Info("joined", zap.Int("seeds", r.n), zap.Strings("addrs", addrs))
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrJoin, ctx.Err())
	}
}

// seedErrors lists what went wrong with each seed, on one line.
type seedErrors []error

func (s seedErrors) Error() string {
	var b strings.Builder
	for i, e := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (s seedErrors) Unwrap() []error { return s }

// resolveSeeds turns seeds into "ip:port" strings, leaving out this node.
func (n *Node) resolveSeeds(ctx context.Context, seeds []string) ([]string, []error) {
	self := n.Addr()
	var addrs []string
	var errs []error
	seen := make(map[netip.AddrPort]bool)
	add := func(ip netip.Addr, port uint16) {
		ap := netip.AddrPortFrom(ip.Unmap(), port)
		if ap == self || seen[ap] {
			return
		}
		seen[ap] = true
		addrs = append(addrs, ap.String())
	}
	lookup := func(seed, host string, port uint16) {
		if ip, err := netip.ParseAddr(host); err == nil {
			add(ip, port)
			return
		}
		ips, err := n.o.resolver.LookupIPAddr(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %q: %w", seed, err))
			return
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip.IP); ok {
				add(a, port)
			}
		}
	}
	for _, s := range seeds {
		if name, ok := strings.CutPrefix(s, "dnssrv+"); ok {
			_, srvs, err := n.o.resolver.LookupSRV(ctx, "", "", name)
			if err != nil {
				errs = append(errs, fmt.Errorf("seed %q: %w", s, err))
				continue
			}
			if len(srvs) == 0 {
				errs = append(errs, fmt.Errorf("seed %q: no SRV records", s))
			}
			for _, srv := range srvs {
				lookup(s, strings.TrimSuffix(srv.Target, "."), srv.Port)
			}
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			errs = append(errs, invalid("seed %q: want host:port or dnssrv+name: %v", s, err))
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			errs = append(errs, invalid("seed %q: bad port %q", s, port))
			continue
		}
		lookup(s, host, uint16(p))
	}
	return addrs, errs
}

// Leave tells the cluster this node is going, so that others report it as
// left rather than failed, and blocks until that has been gossiped or ctx
// ends (5 s if ctx has no deadline). It first gossips the node as leaving,
// which takes it out of Instances everywhere, then memberlist's leave
// message. After Leave the node still answers gossip until Close; it can
// no longer change what it announces. Close while Leave runs does not cut
// Leave short: memberlist waits for its broadcast until the deadline.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	if n.left {
		n.mu.Unlock()
		return nil
	}
	n.left = true
	n.local.leaving = true
	n.local.version++
	n.mu.Unlock()

	wait := defaultLeaveTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if wait <= 0 {
		return fmt.Errorf("discovery: leave: %w", context.DeadlineExceeded)
	}
	start := time.Now()
	// The leaving flag must spread before the leave message: memberlist
	// drops a member's queued updates once its leave is queued.
	n.announceMu.Lock()
	err := n.ml.UpdateNode(wait / 2)
	n.announceMu.Unlock()
	if err != nil {
		n.log.Warn("leave: leaving flag not fully gossiped", zap.Error(err))
	}
	n.noticeLeaving()
	// memberlist waits forever on a zero timeout; never pass one.
	if err := n.ml.Leave(max(wait-time.Since(start), time.Millisecond)); err != nil {
		return fmt.Errorf("discovery: leave: %w", err)
	}
	n.log.Info("left the cluster", zap.Duration("took", time.Since(start)))
	return nil
}

// noticeLeaving tells every member directly, over TCP, that this node is
// leaving. Gossip alone is not enough: a member that gets memberlist's
// leave message before the leaving flag (memberlist drops a member's
// queued updates once its leave is queued) would report a failure, since
// memberlist's callbacks do not say whether a member left or died. Each
// send is bounded by memberlist's TCP timeout; unreachable members miss
// the notice.
func (n *Node) noticeLeaving() {
	n.mu.Lock()
	msg := auditMsg{kind: auditLeaving, at: time.Now(), instance: n.local.instance, member: n.name, by: n.name}.encode()
	var peers []*memberlist.Node
	for name, e := range n.members {
		if name != n.name {
			peers = append(peers, &memberlist.Node{Name: name, Addr: e.addr.Addr().AsSlice(), Port: e.addr.Port()})
		}
	}
	n.mu.Unlock()
	sem := make(chan struct{}, leaveSenders)
	var wg sync.WaitGroup
	for _, p := range peers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := n.ml.SendReliable(p, msg); err != nil {
				n.log.Debug("leave notice not delivered", zap.String("peer", p.Name), zap.Error(err))
			}
		}()
	}
	wg.Wait()
}

// Close stops the node without telling the cluster, which will then
// detect it as failed; call Leave first for a graceful exit. Watch
// channels are closed. Close is idempotent and waits for the node's
// goroutines.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closing.Store(true)
		n.mu.Lock()
		n.closed = true
		for w := range n.watchers {
			w.stop()
		}
		n.mu.Unlock()
		close(n.done)
		if err := n.ml.Shutdown(); err != nil {
			n.log.Warn("memberlist shutdown", zap.Error(err))
		}
		n.wg.Wait()
	})
	return nil
}

func (n *Node) usable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.usableLocked()
}

// usableLocked says why the node may no longer change what it announces,
// if it may not. Called with n.mu held.
func (n *Node) usableLocked() error {
	if n.closed {
		return ErrClosed
	}
	if n.left {
		return ErrLeft
	}
	return nil
}

// change applies f to a copy of the local metadata and, if the result is
// valid and fits, makes it current and gossips it. Nothing changes on
// error.
func (n *Node) change(f func(m *meta) error) error {
	n.mu.Lock()
	if err := n.usableLocked(); err != nil {
		n.mu.Unlock()
		return err
	}
	next := n.local.clone()
	if err := f(&next); err != nil {
		n.mu.Unlock()
		return err
	}
	next.version++
	if err := next.checkSize(); err != nil {
		n.mu.Unlock()
		return err
	}
	n.local = next
	n.mu.Unlock()
	n.announce()
	return nil
}

// announce queues an alive message carrying the current metadata. It does
// not wait for it to spread; the maintenance loop re-announces if a
// concurrent refutation by memberlist went out with older metadata.
func (n *Node) announce() {
	n.announceMu.Lock()
	defer n.announceMu.Unlock()
	_ = n.ml.UpdateNode(time.Nanosecond) // only the wait times out; the update is queued
}

// SetHealth changes the health this node announces. Members see it within
// a few gossip rounds.
func (n *Node) SetHealth(h Health) error {
	if !h.valid() {
		return invalid("SetHealth: unknown health %d", h)
	}
	return n.change(func(m *meta) error {
		m.health = h
		return nil
	})
}

// Register adds a service, or replaces the one with the same name. It
// fails with ErrMetaTooLarge, changing nothing, when the node's services
// would no longer fit memberlist's metadata limit.
func (n *Node) Register(s Service) error {
	if err := s.validate(); err != nil {
		return err
	}
	s = s.clone()
	return n.change(func(m *meta) error {
		for i := range m.services {
			if m.services[i].Name == s.Name {
				m.services[i] = s
				return nil
			}
		}
		m.services = append(m.services, s)
		return nil
	})
}

// Deregister removes the named service; removing one that is not
// registered is not an error.
func (n *Node) Deregister(name string) error {
	return n.change(func(m *meta) error {
		for i := range m.services {
			if m.services[i].Name == name {
				m.services = append(m.services[:i], m.services[i+1:]...)
				return nil
			}
		}
		return nil
	})
}

// maintain re-announces this node when a concurrent refutation replaced
// its metadata with an older copy, or while its previous instance still
// holds its name elsewhere; and it closes suspicion records whose end was
// never gossiped.
func (n *Node) maintain() {
	defer n.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			n.mu.Lock()
			if i%reconnectTicks == 0 {
				n.reconnect(now)
				n.recheckRevived()
			}
			// Our own entry holds what memberlist last applied for us.
			self, ok := n.members[n.name]
			stale := ok && !n.left && (self.meta.version != n.local.version || now.Before(n.reclaimUntil))
			n.sweepSuspicions(now)
			n.mu.Unlock()
			if stale {
				n.announce()
			}
		}
	}
}

// verify decides whether a member memberlist declared dead has failed. A
// refused gossip port means it has; otherwise it gets the fail grace to
// come back before it is reported failed.
func (n *Node) verify(name string, addr netip.AddrPort, p *pendingFail) {
	defer n.wg.Done()
	err := n.checkPort(addr)
	if refused(err) {
		n.confirmFail(name, p, true, "gossip port refused: "+err.Error())
		return
	}
	// Only a refusal proves the process gone: a timeout may be our own
	// starved CPU, so it gets the grace like an open port does.
	if err != nil {
		n.mu.Lock()
		p.silent = true
		n.mu.Unlock()
	}
	// memberlist neither probes nor syncs with members it declared dead,
	// so one that was only stalled or cut off may never hear that it
	// should refute. Push/pulls with it tell it; its refutation then
	// brings it back here. They run beside the grace timer, since each
	// may block for memberlist's TCP timeout.
	stop := make(chan struct{})
	var merging sync.WaitGroup
	merging.Add(1)
	go func() {
		defer merging.Done()
		retry := time.NewTicker(verifyTimeout)
		defer retry.Stop()
		for {
			_, _ = n.ml.Join([]string{addr.String()})
			select {
			case <-stop:
				return
			case <-retry.C:
			}
		}
	}()
	defer merging.Wait()
	defer close(stop)
	grace := time.NewTimer(n.o.failGrace)
	defer grace.Stop()
	select {
	case <-p.back:
	case <-grace.C:
		n.confirmFail(name, p, false, fmt.Sprintf("port open but no sign of life for %v", n.o.failGrace))
	case <-n.done:
	}
}

// checkPort connects to a member's gossip port and hangs up.
func (n *Node) checkPort(addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	conn, err := n.dial(ctx, addr.String())
	if err != nil {
		return err
	}
	// Say who we are before hanging up, so memberlist's stream handler
	// reads a clean end of stream rather than logging a bad label.
	_ = conn.SetWriteDeadline(time.Now().Add(verifyTimeout))
	_ = memberlist.AddLabelHeaderToStream(conn, n.o.cluster)
	_ = conn.Close()
	return nil
}

// refused reports whether a dial failed because nothing listens there
// (faultnet's refusals match ECONNREFUSED too).
func refused(err error) bool {
	return err != nil && errors.Is(err, syscall.ECONNREFUSED)
}

// failedMember is a member reported failed, kept for reconnection.
type failedMember struct {
	addr     netip.AddrPort
	at       time.Time
	instance uint64
	// refused is set while the member's gossip port refuses connections:
	// its process is gone, so gossip that revives that same instance is
	// stale (see buried).
	refused    bool
	rechecking bool
	// revived is memberlist's latest view of the member while memberlist
	// holds it alive again and discovery does not.
	revived *memberlist.Node
}

// buried reports whether node is a member whose process was proven gone,
// revived by stale gossip: memberlist takes back a dead member on any
// message with a higher incarnation, which members that saw it refute
// earlier suspicions may still spread after it crashed. Its port is then
// checked again in the background; it rejoins only once that no longer
// refuses. Called with n.mu held.
func (n *Node) buried(node *memberlist.Node, m meta) bool {
	f, ok := n.failed[node.Name]
	if !ok || !f.refused || f.instance != m.instance {
		return false
	}
	if f.revived == nil {
		n.c.revivals++
	}
	// memberlist changes its node in place later, under its own lock.
	cp := *node
	cp.Meta, cp.Addr = slices.Clone(node.Meta), slices.Clone(node.Addr)
	f.revived = &cp
	n.failed[node.Name] = f
	n.startRecheck(node.Name)
	return true
}

// recheckRevived checks again, once a second, the ports of members that
// buried keeps out while memberlist holds them alive: memberlist will not
// call again until it finds them dead, and one may be back. Called with
// n.mu held.
func (n *Node) recheckRevived() {
	for name, f := range n.failed {
		if f.revived != nil {
			n.startRecheck(name)
		}
	}
}

// startRecheck starts recheck for a failed member unless one is running.
// Called with n.mu held.
func (n *Node) startRecheck(name string) {
	f := n.failed[name]
	if f.rechecking || n.closed {
		return
	}
	f.rechecking = true
	n.failed[name] = f
	n.wg.Add(1)
	go n.recheck(name, f.addr)
}

// recheck is buried's background check.
func (n *Node) recheck(name string, addr netip.AddrPort) {
	defer n.wg.Done()
	err := n.checkPort(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	f, ok := n.failed[name]
	if !ok {
		return
	}
	f.rechecking = false
	f.refused = refused(err)
	n.failed[name] = f
	if f.refused || f.revived == nil || n.closed {
		n.log.Debug("ignoring stale gossip about a failed member", zap.String("peer", name), zap.Error(err))
		return
	}
	if m, err := decodeMeta(f.revived.Meta); err == nil {
		n.joinLocked(f.revived, m, time.Now())
	}
}

// reconnect tries a push/pull with one random failed member, as serf does:
// after a partition heals, each side still holds the other as dead and
// memberlist would never contact it again. Called with n.mu held.
func (n *Node) reconnect(now time.Time) {
	if len(n.failed) == 0 || n.closed || n.left || !n.reconnecting.CompareAndSwap(false, true) {
		return
	}
	var addr netip.AddrPort
	for name, f := range n.failed { // map order is random enough
		if now.Sub(f.at) > reconnectFor {
			delete(n.failed, name)
			continue
		}
		addr = f.addr
		break
	}
	if !addr.IsValid() {
		n.reconnecting.Store(false)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.reconnecting.Store(false)
		_, _ = n.ml.Join([]string{addr.String()})
	}()
}

func fingerprints(kr *memberlist.Keyring) []uint32 {
	keys := kr.GetKeys() // primary first
	fps := make([]uint32, len(keys))
	for i, k := range keys {
		fps[i] = fingerprint(k)
	}
	return fps
}

// fingerprint identifies a key in metadata without revealing it.
func fingerprint(k []byte) uint32 {
	h := sha256.Sum256(k)
	return binary.BigEndian.Uint32(h[:4])
}
