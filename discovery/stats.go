package discovery

// counters are guarded by Node.mu.
type counters struct {
	joins, updates, leaves, fails, vetoed, revivals, conflicts, rejected uint64
}

// Stats is a snapshot of a Node's view and counters. Counters only grow.
type Stats struct {
	Members int // alive or suspect members, this node included
	Suspect int // members under suspicion now
	// Joins, Updates, Leaves and Fails count the events this node
	// observed (Watch's initial joins excluded).
	Joins, Updates, Leaves, Fails uint64
	// Vetoed counts members memberlist declared dead whose gossip port
	// still answered and that came back within the fail grace: false
	// alarms that were never reported as failures.
	Vetoed uint64
	// Revivals counts the times memberlist took back, on stale gossip, a
	// member reported failed because its gossip port refused; discovery
	// takes such a member back only once its port stops refusing.
	Revivals uint64
	// SuspicionsRaised counts suspicions this node's own probes raised;
	// SuspicionsHeard those other members raised, learned by gossip.
	SuspicionsRaised, SuspicionsHeard uint64
	// SelfRefuted counts suspicions of this node that it refuted.
	SelfRefuted uint64
	// Conflicts counts alive messages claiming a known member's name at
	// another address (a restart on a new address, or a duplicate name).
	Conflicts uint64
	// Rejected counts alive messages dropped for bad metadata.
	Rejected uint64
	// HealthScore is memberlist's local health (Lifeguard awareness): 0 is
	// healthy; higher means this node has been slow to process probes and
	// stretches its own timeouts.
	HealthScore int
	Watchers    int
	// Suspicions holds the most recent audit records (up to 64), oldest
	// first.
	Suspicions []Suspicion
}

// Stats returns a snapshot of the node's view and counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	s := Stats{
		Members:          len(n.members),
		Suspect:          len(n.audit.byMember),
		Joins:            n.c.joins,
		Updates:          n.c.updates,
		Leaves:           n.c.leaves,
		Fails:            n.c.fails,
		Vetoed:           n.c.vetoed,
		Revivals:         n.c.revivals,
		SuspicionsRaised: n.audit.raised,
		SuspicionsHeard:  n.audit.heard,
		SelfRefuted:      n.audit.selfRefuted,
		Conflicts:        n.c.conflicts,
		Rejected:         n.c.rejected,
		Watchers:         len(n.watchers),
		Suspicions:       make([]Suspicion, len(n.audit.recent)),
	}
	for name, e := range n.members {
		if e.pending != nil && !n.audit.suspected(name) {
			s.Suspect++
		}
	}
	for i, r := range n.audit.recent {
		s.Suspicions[i] = *r
	}
	n.mu.Unlock()
	s.HealthScore = n.ml.GetHealthScore()
	return s
}
