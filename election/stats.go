package election

import (
	"time"

	"github.com/hashicorp/raft"
)

// Stats is a snapshot of a Node's counters.
type Stats struct {
	ID     string
	State  string // "Leader", "Follower", "Candidate" or "Shutdown"
	Leader string // ID of the leader this node knows, if any
	Term   uint64

	LeaderChanges uint64        // times this node saw a new leader ID
	LastFailover  time.Duration // last contact with the old leader to seeing the new one
	Applies       uint64        // commands applied to this node's state
	Forwarded     uint64        // requests this node sent on to the leader
	CommitIndex   uint64
	AppliedIndex  uint64

	Leases         int    // leases in this node's replicated state
	LeasesGranted  uint64 // counted as this node applies the log
	LeasesRenewed  uint64
	LeasesReleased uint64
	LeasesExpired  uint64
}

// Stats returns the Node's counters. Lease counts come from the log this
// node has applied, so they agree across nodes once they catch up.
func (n *Node) Stats() Stats {
	l, _ := n.Leader()
	s := Stats{
		ID:            n.id,
		State:         n.raft.State().String(),
		Leader:        l.ID,
		Term:          n.raft.CurrentTerm(),
		LeaderChanges: n.leaderChanges.Load(),
		LastFailover:  time.Duration(n.lastFailover.Load()),
		Forwarded:     n.forwarded.Load(),
		CommitIndex:   n.raft.CommitIndex(),
		AppliedIndex:  n.raft.AppliedIndex(),
	}
	if n.closed.Load() {
		s.State = raft.Shutdown.String()
	}
	f := n.fsm
	f.mu.Lock()
	s.Applies = f.applies
	s.Leases = len(f.st.Leases)
	s.LeasesGranted, s.LeasesRenewed = f.granted, f.renewed
	s.LeasesReleased, s.LeasesExpired = f.released, f.expired
	f.mu.Unlock()
	return s
}
