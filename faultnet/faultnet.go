package faultnet

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Network is an in-memory network of named nodes whose links a test can
// slow down, cut, heal and reset. Create one with [New]; the zero value is
// not usable. All methods are safe for concurrent use.
//
// A Network starts no goroutines, so it needs no Close: once every
// listener, packet conn and connection on it is closed (or reset by
// [Network.Crash]), it holds nothing but configuration and can be
// dropped. The one exception is [MemberlistTransport], which runs two
// goroutines until its Shutdown.
type Network struct {
	// Lock order: mu, then a listener's or a packet conn's mu, then a
	// pipe's mu, then faultMu.

	mu        sync.Mutex
	changed   chan struct{}          // closed and replaced whenever cuts change; wakes blocked Dials
	listeners map[string]*listener   // by listen address
	packets   map[string]*packetConn // by address; apart from listeners, as UDP ports are from TCP ports
	conns     map[*pair]struct{}     // live connections: not reset, not closed at both ends
	cuts      map[link]struct{}      // one-way cuts from Cut, CutBoth and Partition
	isolated  map[string]struct{}    // nodes cut from every other node
	exempt    map[link]struct{}      // directions that Heal took out of an isolation
	ephemeral uint64                 // last ephemeral port number handed to a dialer

	faultMu sync.Mutex // guards rng, latency and drop; held briefly, never while taking another lock
	rng     *rand.Rand
	latency map[link]latency
	drop    map[link]float64

	dials, refused, resets, delivered atomic.Uint64

	datagramsSent, datagramsDelivered, datagramsDropped atomic.Uint64
}

// link is one direction between two nodes.
type link struct{ from, to string }

// latency is the delay configured for one direction.
type latency struct{ base, jitter time.Duration }

// Stats is a snapshot of a Network's counters, returned by [Network.Stats].
// Counters only grow; gauges describe the moment of the snapshot.
type Stats struct {
	// Dials counts connection attempts: every call to Dial, whatever its
	// outcome (including refusals, cancelled contexts and bad addresses).
	Dials uint64
	// Refused counts Dials refused because no listener had the address or
	// because the drop rate refused them.
	Refused uint64
	// Resets counts connections torn down by Reset or Crash, or pending in
	// a listener's accept queue when it closed.
	Resets uint64
	// Delivered counts bytes handed to readers by Read, over all
	// connections.
	Delivered uint64
	// Held is a gauge: the bytes currently held back by cuts, written but
	// not readable until the cut is healed.
	Held int
	// Conns is a gauge: the connections still live, that is neither reset
	// nor closed at both ends. Tests can check that it returns to zero.
	Conns int

	// DatagramsSent counts datagrams that a packet conn's WriteTo
	// accepted (returned len(b), nil for), whether or not they arrive.
	DatagramsSent uint64
	// DatagramsDelivered counts datagrams returned by ReadFrom.
	DatagramsDelivered uint64
	// DatagramsDropped counts datagrams lost: sent to an address with no
	// packet conn, into a cut (or in flight when a cut began), refused by
	// the drop rate, beyond a full receiver's [MaxQueuedDatagrams], or
	// unread when the receiver closed or crashed. While no call is under
	// way, DatagramsSent = DatagramsDelivered + DatagramsDropped +
	// DatagramsQueued.
	DatagramsDropped uint64
	// DatagramsQueued is a gauge: the datagrams in flight or arrived but
	// not yet read, over all packet conns.
	DatagramsQueued int
	// PacketConns is a gauge: the packet conns open.
	PacketConns int
}

// New returns an empty Network. seed drives every random choice the
// network makes (latency jitter and drop decisions), so two networks with
// the same seed that see the same sequence of calls make the same choices.
// Calls that race with each other draw in whatever order they run.
func New(seed uint64) *Network {
	return &Network{
		changed:   make(chan struct{}),
		listeners: make(map[string]*listener),
		packets:   make(map[string]*packetConn),
		conns:     make(map[*pair]struct{}),
		cuts:      make(map[link]struct{}),
		isolated:  make(map[string]struct{}),
		exempt:    make(map[link]struct{}),
		rng:       rand.New(rand.NewPCG(seed, 0x6661756c746e6574)), // "faultnet"
		latency:   make(map[link]latency),
		drop:      make(map[link]float64),
	}
}

// nodeOf returns the node an address belongs to: the host part when the
// address is "host:port", else the whole address.
func nodeOf(addr string) (string, error) {
	if addr == "" {
		return "", ErrInvalidAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, nil
	}
	if host == "" {
		return "", fmt.Errorf("%w: %q has no host part", ErrInvalidAddr, addr)
	}
	return host, nil
}

// Listen starts listening at addr, which is either a bare node name
// ("db") or "node:port" ("db:5432"); the node is the host part, and
// several listeners can share a node on different ports. Connections made
// with [Network.Dial] to exactly this string arrive at the listener. The
// listener's Addr has Network "faultnet" and String addr.
//
// Listen returns ErrInvalidAddr for an empty addr or an empty host part,
// and ErrAddrInUse when addr already has a listener. Closing the listener
// frees the address; connections it accepted stay open, and connections
// it had not accepted yet are reset.
func (n *Network) Listen(addr string) (net.Listener, error) {
	l, err := n.listen(addr)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (n *Network) listen(addr string) (*listener, error) {
	node, err := nodeOf(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: Addr(addr), Err: err}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.listeners[addr]; ok {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: Addr(addr), Err: ErrAddrInUse}
	}
	l := &listener{n: n, addr: Addr(addr), node: node, changed: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dial connects node from to the listener at addr, as a TCP connect
// would. Three things can happen:
//
//   - While from and addr's node are cut in either direction, the
//     connection attempt is lost, as a SYN would be: Dial blocks until the
//     cut heals (and then goes on as below) or ctx ends. When ctx ends it
//     returns ctx.Err() wrapped in a [*net.OpError], whose Timeout method
//     reports true when ctx hit its deadline.
//   - With no listener at addr, or when the drop rate refuses the attempt,
//     Dial returns ErrRefused at once, wrapped in a [*net.OpError]. The
//     drop decision is drawn once per Dial, after any wait for a cut.
//   - Otherwise Dial waits one round trip of the configured latency (from
//     to addr's node and back) and returns the connection, which the
//     listener's Accept then returns. If the listener closes during the
//     round trip, Dial returns ErrRefused; if a cut begins, it blocks as
//     above.
//
// The connection's LocalAddr is from with a unique ephemeral port
// ("client:ephemeral-3") and its RemoteAddr is addr. Dial returns
// ErrInvalidAddr for an empty from or an addr that names no node.
func (n *Network) Dial(ctx context.Context, from, addr string) (net.Conn, error) {
	n.dials.Add(1)
	local := Addr(from)
	to, err := nodeOf(addr)
	if err == nil && from == "" {
		err = fmt.Errorf("%w: empty dialling node", ErrInvalidAddr)
	}
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Source: local, Addr: Addr(addr), Err: err}
	}
	decided, waited := false, false
	for {
		if err := ctx.Err(); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Source: local, Addr: Addr(addr), Err: err}
		}
		n.mu.Lock()
		if n.isCutLocked(from, to) || n.isCutLocked(to, from) {
			changed := n.changed
			n.mu.Unlock()
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		l := n.listeners[addr]
		if l == nil {
			n.mu.Unlock()
			return nil, n.refuse(local, addr)
		}
		if !decided {
			decided = true
			if n.dropped(from, to) {
				n.mu.Unlock()
				return nil, n.refuse(local, addr)
			}
		}
		if !waited {
			waited = true
			if rtt := n.delay(from, to) + n.delay(to, from); rtt > 0 {
				n.mu.Unlock()
				t := time.NewTimer(rtt)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				continue
			}
		}
		n.ephemeral++
		local = Addr(from + ":ephemeral-" + strconv.FormatUint(n.ephemeral, 10))
		pr := n.newPairLocked(from, to, local, Addr(addr))
		l.enqueue(&pr.ends[1])
		n.mu.Unlock()
		return &pr.ends[0], nil
	}
}

// refuse counts and builds a refused-dial error.
func (n *Network) refuse(local Addr, addr string) error {
	n.refused.Add(1)
	return &net.OpError{Op: "dial", Net: network, Source: local, Addr: Addr(addr), Err: ErrRefused}
}

// Dialer returns a dial function for node from, with the signature of
// [net.Dialer.DialContext], for http.Transport.DialContext, grpc and
// similar hooks. It ignores network ("tcp" and the like) and dials addr as
// [Network.Dial] does.
func (n *Network) Dialer(from string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		return n.Dial(ctx, from, addr)
	}
}

// SetLatency sets the delay of the direction from→to: the bytes of each
// Write become readable base plus a uniformly random [0, jitter) later,
// but never before bytes written earlier on the same connection, so
// jitter never reorders a stream. Dials pay one round trip. Each datagram
// is delayed the same way but on its own, so jitter may reorder
// datagrams, as on UDP. Negative durations count as zero; zero for both
// removes the delay. It applies to writes and datagrams sent from now on,
// on new and existing connections. Default: no delay.
func (n *Network) SetLatency(from, to string, base, jitter time.Duration) {
	base, jitter = max(base, 0), max(jitter, 0)
	n.faultMu.Lock()
	defer n.faultMu.Unlock()
	if base == 0 && jitter == 0 {
		delete(n.latency, link{from, to})
		return
	}
	n.latency[link{from, to}] = latency{base, jitter}
}

// delay draws the delay of one write, or of one half of a dial's round
// trip, from→to.
func (n *Network) delay(from, to string) time.Duration {
	n.faultMu.Lock()
	defer n.faultMu.Unlock()
	lat := n.latency[link{from, to}]
	d := lat.base
	if lat.jitter > 0 {
		d += time.Duration(n.rng.Int64N(int64(lat.jitter)))
	}
	return d
}

// SetDropRate makes each new connection attempt from→to fail with
// probability p, as if the peer refused it: Dial returns ErrRefused.
// Established connections are not affected. Each datagram from→to is
// lost with the same probability. Decisions come from the network's
// seeded source. It returns ErrInvalidRate, and changes
// nothing, when p is not in [0, 1]. Default: 0.
func (n *Network) SetDropRate(from, to string, p float64) error {
	if math.IsNaN(p) || p < 0 || p > 1 {
		return fmt.Errorf("%w: %v for %s→%s", ErrInvalidRate, p, from, to)
	}
	n.faultMu.Lock()
	defer n.faultMu.Unlock()
	if p == 0 {
		delete(n.drop, link{from, to})
		return nil
	}
	n.drop[link{from, to}] = p
	return nil
}

// dropped decides whether to refuse one dial, or lose one datagram,
// from→to. It draws from the
// source only when the rate is positive.
func (n *Network) dropped(from, to string) bool {
	n.faultMu.Lock()
	defer n.faultMu.Unlock()
	p := n.drop[link{from, to}]
	return p > 0 && n.rng.Float64() < p
}

// isCutLocked reports whether the direction from→to is cut. A node is
// never cut from itself.
func (n *Network) isCutLocked(from, to string) bool {
	if from == to {
		return false
	}
	l := link{from, to}
	if _, ok := n.cuts[l]; ok {
		return true
	}
	_, fromIso := n.isolated[from]
	_, toIso := n.isolated[to]
	if !fromIso && !toIso {
		return false
	}
	_, ok := n.exempt[l]
	return !ok
}

// Cut cuts the direction from→to. Bytes written from→to on existing
// connections are held, neither delivered nor lost, until the direction
// is healed; bytes that had already arrived stay readable, and the other
// direction keeps flowing. New connections between the two nodes, in
// either direction, cannot be set up while either direction is cut: Dial
// blocks as described there. Datagrams from→to are lost, both those sent
// during the cut and those in flight when it began; datagrams that had
// arrived stay readable. A node is never cut from itself.
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[link{from, to}] = struct{}{}
	n.applyLocked()
}

// CutBoth cuts both directions between a and b; see [Network.Cut].
func (n *Network) CutBoth(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[link{a, b}] = struct{}{}
	n.cuts[link{b, a}] = struct{}{}
	n.applyLocked()
}

// Partition cuts both directions between every two nodes that are in
// different groups, as [Network.CutBoth] would. Nodes within a group, and
// nodes in no group, keep their links; cuts made earlier stay. Heal with
// [Network.HealAll].
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					if a != b {
						n.cuts[link{a, b}] = struct{}{}
						n.cuts[link{b, a}] = struct{}{}
					}
				}
			}
		}
	}
	n.applyLocked()
}

// Isolate cuts both directions between node and every other node, those
// known now and any that appear later, until [Network.HealAll], or
// [Network.Heal] for one direction. Isolating a node again undoes earlier
// Heals of its directions.
func (n *Network) Isolate(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[node] = struct{}{}
	for l := range n.exempt {
		if l.from == node || l.to == node {
			delete(n.exempt, l)
		}
	}
	n.applyLocked()
}

// Heal heals the direction from→to: it removes a cut made by Cut, CutBoth
// or Partition, and exempts the direction from Isolate of either node.
// Held bytes become readable at once, in order, and blocked Dials between
// the two proceed once neither direction is cut.
func (n *Network) Heal(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := link{from, to}
	delete(n.cuts, l)
	_, fromIso := n.isolated[from]
	_, toIso := n.isolated[to]
	if fromIso || toIso {
		n.exempt[l] = struct{}{}
	}
	n.applyLocked()
}

// HealAll removes every cut, partition and isolation. Latency and drop
// rates stay.
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cuts)
	clear(n.isolated)
	clear(n.exempt)
	n.applyLocked()
}

// applyLocked pushes the current cuts to every live connection, drops
// datagrams in flight through them, and wakes whatever waits on them.
func (n *Network) applyLocked() {
	now := time.Now()
	for pr := range n.conns {
		pr.ab.setCut(n.isCutLocked(pr.ab.from, pr.ab.to), now)
		pr.ba.setCut(n.isCutLocked(pr.ba.from, pr.ba.to), now)
	}
	for _, pc := range n.packets {
		n.dropCutLocked(pc, now)
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// Reset tears down every live connection between nodes a and b, in
// either direction (or within a, when b is a), as a TCP reset would: data
// in flight is discarded, and Read and Write on both ends, including
// those blocked now, return ErrReset (a [net.Error] whose Timeout is
// false) until the ends are closed. It returns how many connections it
// reset.
func (n *Network) Reset(a, b string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	count := 0
	for pr := range n.conns {
		if (pr.ab.from == a && pr.ab.to == b) || (pr.ab.from == b && pr.ab.to == a) {
			n.resetLocked(pr)
			count++
		}
	}
	return count
}

// Crash simulates node crashing: it closes every listener and packet conn
// on node (dropping their unread datagrams) and resets every live
// connection that has node at either end, as [Network.Reset] does. It
// returns how many connections it reset. A restarted node can Listen and
// ListenPacket on the same addresses again; cuts, latency and drop rates
// that name node stay.
func (n *Network) Crash(node string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.listeners {
		if l.node == node {
			n.closeListenerLocked(l)
		}
	}
	for _, pc := range n.packets {
		if pc.node == node {
			n.closePacketLocked(pc)
		}
	}
	count := 0
	for pr := range n.conns {
		if pr.ab.from == node || pr.ab.to == node {
			n.resetLocked(pr)
			count++
		}
	}
	return count
}

// resetLocked resets both directions of pr and forgets it.
func (n *Network) resetLocked(pr *pair) {
	pr.ab.reset()
	pr.ba.reset()
	delete(n.conns, pr)
	n.resets.Add(1)
}

// forget drops a connection whose ends are both closed from the registry.
func (n *Network) forget(pr *pair) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, pr)
}

// Stats returns a snapshot of the network's counters and gauges.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	held := 0
	for pr := range n.conns {
		held += pr.ab.held() + pr.ba.held()
	}
	conns := len(n.conns)
	queued := 0
	for _, pc := range n.packets {
		queued += pc.queued()
	}
	packetConns := len(n.packets)
	n.mu.Unlock()
	return Stats{
		Dials:              n.dials.Load(),
		Refused:            n.refused.Load(),
		Resets:             n.resets.Load(),
		Delivered:          n.delivered.Load(),
		Held:               held,
		Conns:              conns,
		DatagramsSent:      n.datagramsSent.Load(),
		DatagramsDelivered: n.datagramsDelivered.Load(),
		DatagramsDropped:   n.datagramsDropped.Load(),
		DatagramsQueued:    queued,
		PacketConns:        packetConns,
	}
}
