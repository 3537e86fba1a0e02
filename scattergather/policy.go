package scattergather

import "fmt"

// Policy decides when a gather has enough: which answers it needs, when it
// may stop early, and whether what it has at the deadline is a success.
// The zero Policy is All.
type Policy struct {
	kind policyKind
	k    int
}

type policyKind uint8

const (
	policyAll policyKind = iota
	policyQuorum
	policyFirst
	policyBestEffort
)

// All needs every leaf to answer. The gather fails as soon as one leaf
// fails, and at the deadline if any has not answered. This is the default:
// partial results only when asked for.
func All() Policy { return Policy{kind: policyAll} }

// Quorum needs at least k leaves to answer. It waits for all of them (or
// the deadline) so as to merge as many as it can, and fails as soon as
// fewer than k can still answer.
func Quorum(k int) Policy { return Policy{kind: policyQuorum, k: k} }

// First needs k leaves to answer and stops as soon as k have, cancelling
// the rest; it fails as soon as fewer than k can still answer, or at the
// deadline.
func First(k int) Policy { return Policy{kind: policyFirst, k: k} }

// BestEffort merges whatever answers by the deadline, or until every leaf
// has answered or failed. It never fails for missing leaves, even if none
// answered: check Result.OK.
func BestEffort() Policy { return Policy{kind: policyBestEffort} }

// String names the policy, as in "quorum(3)".
func (p Policy) String() string {
	switch p.kind {
	case policyAll:
		return "all"
	case policyQuorum:
		return fmt.Sprintf("quorum(%d)", p.k)
	case policyFirst:
		return fmt.Sprintf("first(%d)", p.k)
	case policyBestEffort:
		return "best-effort"
	}
	return "unknown"
}

func (p Policy) validate(n int) error {
	switch p.kind {
	case policyQuorum, policyFirst:
		if p.k < 1 || p.k > n {
			return invalid("policy %v: k must be between 1 and the number of leaves, %d", p, n)
		}
	case policyAll, policyBestEffort:
	default:
		return invalid("unknown policy")
	}
	return nil
}

// need is how many answers the policy needs out of n.
func (p Policy) need(n int) int {
	switch p.kind {
	case policyAll:
		return n
	case policyQuorum, policyFirst:
		return p.k
	}
	return 0
}

// verdict says whether a gather can stop, and whether it succeeded, given
// ok answers, failed leaves (failed or timed out on their own) and n in
// all.
func (p Policy) verdict(ok, failed, n int) (stop, success bool) {
	open := n - ok - failed
	switch p.kind {
	case policyAll:
		if failed > 0 {
			return true, false
		}
		return open == 0, open == 0
	case policyQuorum:
		if ok+open < p.k {
			return true, false
		}
		return open == 0, open == 0
	case policyFirst:
		if ok >= p.k {
			return true, true
		}
		if ok+open < p.k {
			return true, false
		}
		return false, false
	default: // best effort
		return open == 0, true
	}
}

// atDeadline says whether ok answers out of n are a success when the
// deadline ends the gather.
func (p Policy) atDeadline(ok, n int) bool {
	switch p.kind {
	case policyAll:
		return ok == n
	case policyQuorum, policyFirst:
		return ok >= p.k
	default:
		return true
	}
}
