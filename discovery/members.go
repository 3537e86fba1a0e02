package discovery

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// State is a member's liveness as this node sees it.
type State int

// Member states.
const (
	// Alive members answer probes.
	Alive State = iota + 1
	// Suspect members are being checked: their probes failed, or
	// memberlist declared them dead and their gossip port did not refuse
	// a connection. They stay in Members, and in Instances unless the
	// port did not answer at all.
	Suspect
	// Failed members are gone without saying so; only events carry it.
	Failed
	// Left members said goodbye with Leave; only events carry it.
	Left
)

// String names the state.
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Failed:
		return "failed"
	case Left:
		return "left"
	}
	return "unknown"
}

// Member is one member of the cluster as this node sees it. Members
// returned by this package are copies; changing them changes nothing.
type Member struct {
	Name     string
	Addr     netip.AddrPort // where its gossip listens
	State    State
	Health   Health
	Leaving  bool // it called Leave and is on its way out
	Services []Service
	// Instance is random per process: it changes when the member restarts
	// under the same name.
	Instance uint64
	// Version counts the member's metadata changes within one instance;
	// an update with a lower version than one already seen is ignored.
	Version uint64
	Since   time.Time // when this node last saw it join or change
}

// Service returns the member's service with that name.
func (m Member) Service(name string) (Service, bool) {
	for _, s := range m.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Instance is one member's offer of a service.
type Instance struct {
	Member  string
	Service string
	Addr    netip.AddrPort // the member's address with the service's port
	Tags    []string
	Health  Health
}

func (e *entry) member(name string, suspect bool) Member {
	m := e.meta.clone()
	st := Alive
	if suspect || e.pending != nil {
		st = Suspect
	}
	return Member{
		Name:     name,
		Addr:     e.addr,
		State:    st,
		Health:   m.health,
		Leaving:  m.leaving,
		Services: m.services,
		Instance: m.instance,
		Version:  m.version,
		Since:    e.since,
	}
}

// Members returns the members this node knows to be alive or suspect,
// itself included, sorted by name.
func (n *Node) Members() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Member, 0, len(n.members))
	for name, e := range n.members {
		out = append(out, e.member(name, n.audit.suspected(name)))
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Member returns this node's view of the named member, if it is alive or
// suspect.
func (n *Node) Member(name string) (Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.members[name]
	if !ok {
		return Member{}, false
	}
	return e.member(name, n.audit.suspected(name)), true
}

// Instances returns the instances of a service, sorted by member name. By
// default it returns those of members whose health is Ready; pass health
// states to choose others. Members that are leaving are always left out,
// and so are members that memberlist declared dead and whose gossip port
// did not answer the check. Suspect members whose port does answer stay
// in: a loaded machine makes many of those, and nearly all are refuted
// within a second.
func (n *Node) Instances(service string, health ...Health) []Instance {
	if len(health) == 0 {
		health = []Health{Ready}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Instance
	for name, e := range n.members {
		if (e.pending != nil && e.pending.silent) || e.meta.leaving || !slices.Contains(health, e.meta.health) {
			continue
		}
		s, ok := e.meta.service(service)
		if !ok {
			continue
		}
		out = append(out, Instance{
			Member:  name,
			Service: service,
			Addr:    netip.AddrPortFrom(e.addr.Addr(), uint16(s.Port)),
			Tags:    slices.Clone(s.Tags),
			Health:  e.meta.health,
		})
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.Member, b.Member) })
	return out
}

// delegate receives memberlist's callbacks. memberlist calls most of them
// with its own lock held, so none may block or call back into memberlist.
type delegate Node

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.local.encode()
	if len(b) > limit { // cannot happen: every change is size-checked
		n.log.Error("metadata over limit; announcing none", zap.Int("size", len(b)), zap.Int("limit", limit))
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) { (*Node)(d).receiveAudit(b) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.bq.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyAlive keeps members with undecodable metadata out of the cluster
// view (memberlist drops the alive message when this returns an error).
func (d *delegate) NotifyAlive(peer *memberlist.Node) error {
	n := (*Node)(d)
	if _, err := decodeMeta(peer.Meta); err != nil {
		n.mu.Lock()
		n.c.rejected++
		first := !n.rejected[peer.Name]
		n.rejected[peer.Name] = true
		n.mu.Unlock()
		if first {
			n.log.Warn("ignoring member with bad metadata", zap.String("peer", peer.Name), zap.Stringer("addr", addrPort(peer.Addr, peer.Port)), zap.Error(err))
		}
		return err
	}
	return nil
}

func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	n := (*Node)(d)
	n.mu.Lock()
	n.c.conflicts++
	if existing.Name == n.name {
		// Members still hold our previous instance's address. They will
		// find it dead, but they no longer gossip to us, so nothing would
		// tell us to refute: re-announce until they have taken our new
		// address (memberlist#157).
		n.reclaimUntil = time.Now().Add(2 * n.audit.longest(len(n.members)))
	}
	n.mu.Unlock()
	n.log.Warn("two addresses claim one member name; the newer wins once the older is found dead",
		zap.String("peer", existing.Name), zap.Stringer("known", addrPort(existing.Addr, existing.Port)), zap.Stringer("claimed", addrPort(other.Addr, other.Port)))
}

func (d *delegate) NotifyJoin(node *memberlist.Node) {
	n := (*Node)(d)
	m, err := decodeMeta(node.Meta)
	if err != nil {
		return // NotifyAlive already rejected it
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.members[node.Name]
	if ok && e.pending != nil {
		// memberlist declared it dead, and it is back before we reported
		// that: the same process was only slow; a new one did restart.
		close(e.pending.back)
		e.pending = nil
		if m.instance == e.meta.instance {
			e.addr, e.meta, e.since = addrPort(node.Addr, node.Port), m, now
			n.endSuspicions(node.Name, Refuted, now)
			n.c.vetoed++
			n.emit(Event{Kind: EventRefuted, Member: e.member(node.Name, false), Time: now})
			return
		}
		n.removeLocked(node.Name, EventFail, now, "restarted as a new instance")
		ok = false
	}
	if ok {
		n.updateLocked(node, m, now)
		return
	}
	if !n.buried(node, m) {
		n.joinLocked(node, m, now)
	}
}

// joinLocked adds a member that is not in the view.
func (n *Node) joinLocked(node *memberlist.Node, m meta, now time.Time) {
	e := &entry{addr: addrPort(node.Addr, node.Port), meta: m, since: now}
	n.members[node.Name] = e
	delete(n.failed, node.Name)
	n.c.joins++
	n.emit(Event{Kind: EventJoin, Member: e.member(node.Name, false), Time: now})
}

func (d *delegate) NotifyUpdate(node *memberlist.Node) {
	n := (*Node)(d)
	m, err := decodeMeta(node.Meta)
	if err != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.updateLocked(node, m, time.Now())
}

func (n *Node) updateLocked(node *memberlist.Node, m meta, now time.Time) {
	e, ok := n.members[node.Name]
	if !ok && n.buried(node, m) {
		return
	}
	if !ok {
		e = &entry{}
		n.members[node.Name] = e
	} else if m.instance == e.meta.instance && m.version < e.meta.version {
		n.log.Debug("ignoring stale metadata", zap.String("peer", node.Name), zap.Uint64("version", m.version), zap.Uint64("have", e.meta.version))
		return
	}
	e.addr, e.meta, e.since = addrPort(node.Addr, node.Port), m, now
	n.c.updates++
	n.emit(Event{Kind: EventUpdate, Member: e.member(node.Name, n.audit.suspected(node.Name)), Time: now})
}

func (d *delegate) NotifyLeave(node *memberlist.Node) {
	n := (*Node)(d)
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.members[node.Name]
	if f, gone := n.failed[node.Name]; !ok && gone && f.revived != nil {
		f.revived = nil // memberlist found the revived member dead again
		n.failed[node.Name] = f
	}
	if !ok || e.pending != nil {
		return
	}
	switch {
	case e.meta.leaving || e.leaving || node.Name == n.name:
		n.removeLocked(node.Name, EventLeave, now, "")
	case n.o.failGrace == 0 || n.closed:
		n.removeLocked(node.Name, EventFail, now, "declared dead by gossip")
	default:
		p := &pendingFail{back: make(chan struct{})}
		e.pending = p
		n.emit(Event{Kind: EventSuspect, Member: e.member(node.Name, true), Time: now})
		n.wg.Add(1)
		go n.verify(node.Name, e.addr, p)
	}
}

// confirmFail reports a member failed if it is still the one verify was
// started for; refused says its gossip port refused a connection.
func (n *Node) confirmFail(name string, p *pendingFail, refused bool, why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.members[name]; ok && e.pending == p {
		n.removeLocked(name, EventFail, time.Now(), why)
		f := n.failed[name]
		f.refused = refused
		n.failed[name] = f
	}
}

func (n *Node) removeLocked(name string, kind EventKind, now time.Time, why string) {
	e := n.members[name]
	delete(n.members, name)
	m := e.member(name, false)
	if kind == EventLeave {
		m.State = Left
		n.c.leaves++
		n.endSuspicions(name, LeftCluster, now)
	} else {
		m.State = Failed
		n.c.fails++
		n.failed[name] = failedMember{addr: e.addr, at: now, instance: e.meta.instance}
		n.endSuspicions(name, Confirmed, now)
		n.log.Info("member failed", zap.String("peer", name), zap.String("why", why))
	}
	n.emit(Event{Kind: kind, Member: m, Time: now})
}
