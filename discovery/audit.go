package discovery

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Outcome says how a suspicion ended.
type Outcome int

// Suspicion outcomes.
const (
	// Pending: the suspicion is still open.
	Pending Outcome = iota
	// Refuted: the suspected member showed it was alive.
	Refuted
	// Confirmed: the member was reported failed.
	Confirmed
	// LeftCluster: the member left gracefully while suspected.
	LeftCluster
)

// String names how a suspicion ended.
func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Refuted:
		return "refuted"
	case Confirmed:
		return "confirmed"
	case LeftCluster:
		return "left"
	}
	return "unknown"
}

// Suspicion is one audit record: a member whose probes failed, who probed
// it, and how it ended. Every member's records are gossiped, so each node
// sees the whole cluster's suspicions, not only its own.
type Suspicion struct {
	Member string
	By     string    // the member whose probes failed
	At     time.Time // when By raised it, by By's clock
	Ended  time.Time // zero while Pending; by this node's clock
	// Outcome is how it ended.
	Outcome Outcome
	// Confirmations is how many other members' failed probes memberlist
	// counted when this node declared the member dead.
	Confirmations int
}

type suspicionKey struct{ member, by string }

// auditLog keeps open suspicions and the most recent records.
type auditLog struct {
	open     map[suspicionKey]*Suspicion
	byMember map[string]int // open records per member
	recent   []*Suspicion   // ring, newest at the end
	// suspicion timing from memberlist's config, to bound how long a
	// suspicion can stay open before memberlist declares the member dead.
	mult, maxMult int
	probe         time.Duration

	raised, heard, selfRefuted uint64
}

func (a *auditLog) init(mult, maxMult int, probe time.Duration) {
	a.open = make(map[suspicionKey]*Suspicion)
	a.byMember = make(map[string]int)
	a.mult, a.maxMult, a.probe = mult, maxMult, probe
}

// longest is memberlist's longest suspicion at n members (its
// suspicionTimeout × SuspicionMaxTimeoutMult), plus two probe intervals
// for the dead message to arrive. A suspicion still open after that was
// refuted, even if the refutation never reached us.
func (a *auditLog) longest(n int) time.Duration {
	scale := max(1, math.Log10(float64(max(n, 1))))
	return time.Duration(float64(a.maxMult*a.mult)*scale*float64(a.probe)) + 2*a.probe
}

func (a *auditLog) suspected(member string) bool { return a.byMember[member] > 0 }

func (a *auditLog) add(s *Suspicion) {
	if len(a.recent) == recentSuspicions {
		copy(a.recent, a.recent[1:])
		a.recent = a.recent[:recentSuspicions-1]
	}
	a.recent = append(a.recent, s)
}

// openRecord opens a record unless one for the pair is already open.
func (a *auditLog) openRecord(member, by string, at time.Time) (*Suspicion, bool) {
	k := suspicionKey{member, by}
	if s, ok := a.open[k]; ok {
		return s, false
	}
	s := &Suspicion{Member: member, By: by, At: at}
	a.open[k] = s
	a.byMember[member]++
	a.add(s)
	return s, true
}

// endSuspicions closes every open record about member; called with n.mu
// held.
func (n *Node) endSuspicions(member string, o Outcome, now time.Time) bool {
	a := &n.audit
	if a.byMember[member] == 0 {
		return false
	}
	for k, s := range a.open {
		if k.member == member {
			s.Ended, s.Outcome = now, o
			delete(a.open, k)
		}
	}
	delete(a.byMember, member)
	return true
}

// sweepSuspicions closes records whose end never reached this node (a
// lost refutation) once memberlist would have declared the member dead.
func (n *Node) sweepSuspicions(now time.Time) {
	stale := n.audit.longest(len(n.members))
	for k, s := range n.audit.open {
		if now.Sub(s.At) < stale {
			continue
		}
		if e, ok := n.members[k.member]; ok && e.pending != nil {
			continue
		}
		s.Ended, s.Outcome = now, Refuted
		delete(n.audit.open, k)
		if n.audit.byMember[k.member]--; n.audit.byMember[k.member] <= 0 {
			delete(n.audit.byMember, k.member)
		}
	}
}

// raised records a suspicion of one instance of a member and tells the
// watchers; called with n.mu held.
func (n *Node) raised(member, by string, at time.Time, instance uint64) {
	if member == n.name {
		return // we refute those; see auditLine
	}
	e, ok := n.members[member]
	if !ok || e.meta.instance != instance || at.Before(e.since) {
		return // a late copy, or about a previous instance of a restarted member
	}
	s, isNew := n.audit.openRecord(member, by, at)
	if !isNew {
		return
	}
	if by == n.name {
		n.audit.raised++
	} else {
		n.audit.heard++
	}
	c := *s
	n.emit(Event{Kind: EventSuspect, Member: e.member(member, true), Time: time.Now(), Suspicion: &c})
}

// Audit messages travel in memberlist's user broadcasts: type, kind, time
// (unix ns, 8 bytes), the suspected member's instance (8 bytes), member,
// by.
const (
	msgAudit     = 1
	auditSuspect = 1
	auditRefute  = 2
	auditLeaving = 3 // a leave notice; sent directly, not gossiped
)

type auditMsg struct {
	kind       byte
	at         time.Time
	instance   uint64
	member, by string
}

func (m auditMsg) encode() []byte {
	b := []byte{msgAudit, m.kind}
	b = binary.BigEndian.AppendUint64(b, uint64(m.at.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, m.instance)
	b = appendString(b, m.member)
	return appendString(b, m.by)
}

func decodeAudit(b []byte) (auditMsg, error) {
	d := decoder{b: b}
	var m auditMsg
	if t := d.byte(); d.err == nil && t != msgAudit {
		return m, fmt.Errorf("unknown message type %d", t)
	}
	m.kind = d.byte()
	m.at = time.Unix(0, int64(d.uint64()))
	m.instance = d.uint64()
	m.member = d.string()
	m.by = d.string()
	if d.err != nil {
		return m, d.err
	}
	if len(d.b) != 0 {
		return m, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if m.kind < auditSuspect || m.kind > auditLeaving {
		return m, fmt.Errorf("unknown audit kind %d", m.kind)
	}
	if err := validName("member", m.member); err != nil {
		return m, err
	}
	if err := validName("accuser", m.by); err != nil {
		return m, err
	}
	return m, nil
}

type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}

func (n *Node) gossipAudit(m auditMsg) { n.bq.QueueBroadcast(broadcast(m.encode())) }

// receiveAudit handles an audit record gossiped by another member.
func (n *Node) receiveAudit(b []byte) {
	m, err := decodeAudit(b)
	if err != nil {
		n.log.Debug("ignoring malformed user message", zap.Error(err))
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch m.kind {
	case auditSuspect:
		n.raised(m.member, m.by, m.at, m.instance)
	case auditRefute:
		if e, ok := n.members[m.member]; !ok || e.meta.instance != m.instance || m.member == n.name {
			return
		}
		now := time.Now()
		if n.endSuspicions(m.member, Refuted, now) {
			if e, ok := n.members[m.member]; ok {
				n.emit(Event{Kind: EventRefuted, Member: e.member(m.member, false), Time: now})
			}
		}
	case auditLeaving:
		e, ok := n.members[m.member]
		if !ok || e.meta.instance != m.instance || m.member == n.name {
			return
		}
		e.leaving = true
		if p := e.pending; p != nil {
			// memberlist's leave message came first and the member is
			// being checked as if it had died: it left.
			close(p.back)
			e.pending = nil
			n.removeLocked(m.member, EventLeave, time.Now(), "")
		}
	}
}

// logWriter carries memberlist's log lines to zap at their own level and
// feeds the suspicion audit from the few lines that report suspicions;
// memberlist has no other hook for them. It may be called with
// memberlist's lock held, so it must not call memberlist.
type logWriter struct{ n *Node }

var _ io.Writer = (*logWriter)(nil)

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	lvl, msg := zapcore.InfoLevel, line
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			switch line[1:i] {
			case "DEBUG":
				lvl = zapcore.DebugLevel
			case "WARN":
				lvl = zapcore.WarnLevel
			case "ERR", "ERROR":
				lvl = zapcore.ErrorLevel
			}
			msg = strings.TrimSpace(line[i+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if lvl > zapcore.DebugLevel && w.n.closing.Load() {
		lvl = zapcore.DebugLevel // sends failing on sockets Close just shut are expected
	}
	if ce := w.n.log.Check(lvl, msg); ce != nil {
		ce.Write(zap.String("from", "memberlist"))
	}
	if lvl != zapcore.DebugLevel {
		w.n.auditLine(msg)
	}
	return len(p), nil
}

// auditLine recognises memberlist v0.7's suspicion log lines. A test
// (TestAuditLines) breaks if a memberlist upgrade rewords them.
func (n *Node) auditLine(msg string) {
	now := time.Now()
	switch {
	case strings.HasPrefix(msg, "Suspect ") && strings.HasSuffix(msg, " has failed, no acks received"):
		member := strings.TrimSuffix(strings.TrimPrefix(msg, "Suspect "), " has failed, no acks received")
		if validName("member", member) != nil {
			return
		}
		n.mu.Lock()
		e, ok := n.members[member]
		var inst uint64
		if ok {
			inst = e.meta.instance
			n.raised(member, n.name, now, inst)
		}
		n.mu.Unlock()
		if ok {
			n.gossipAudit(auditMsg{kind: auditSuspect, at: now, instance: inst, member: member, by: n.name})
		}
	case strings.HasPrefix(msg, "Refuting a suspect message (from: "), strings.HasPrefix(msg, "Refuting a dead message (from: "):
		i := strings.Index(msg, "(from: ")
		by := strings.TrimSuffix(msg[i+len("(from: "):], ")")
		if validName("accuser", by) != nil {
			return
		}
		n.mu.Lock()
		n.audit.add(&Suspicion{Member: n.name, By: by, At: now, Ended: now, Outcome: Refuted})
		n.audit.selfRefuted++
		inst := n.local.instance
		n.mu.Unlock()
		n.log.Info("refuted a suspicion of this member", zap.String("by", by))
		n.gossipAudit(auditMsg{kind: auditRefute, at: now, instance: inst, member: n.name, by: by})
	case strings.HasPrefix(msg, "Marking ") && strings.Contains(msg, " as failed, suspect timeout reached ("):
		rest := strings.TrimPrefix(msg, "Marking ")
		i := strings.Index(rest, " as failed")
		member := rest[:i]
		j := strings.LastIndex(rest, "(") // present: the case matched it
		k := strings.Index(rest[j:], " ")
		if k < 0 {
			return
		}
		c, err := strconv.Atoi(rest[j+1 : j+k])
		if err != nil {
			return
		}
		n.mu.Lock()
		for key, s := range n.audit.open {
			if key.member == member {
				s.Confirmations = c
			}
		}
		n.mu.Unlock()
	}
}
