package shard

import (
	"fmt"
	"math"
)

// Move is a range of key hashes whose owner changes.
type Move struct {
	// First and Last bound the range of [KeyHash] values, inclusive.
	First, Last uint64
	// From is the node that owned the range before, To the one that owns it
	// after; either is "" when its snapshot has no nodes.
	From, To string
}

// Fraction returns the share of the key space the range covers.
func (m Move) Fraction() float64 { return (float64(m.Last-m.First) + 1) / (1 << 64) }

// Movement is the plan for going from one placement to another: every range
// of key hashes that changes owner, in ascending order. A resharding job
// copies each range from From to To.
type Movement struct {
	Moves []Move
}

// Fraction returns the share of the key space that changes owner.
func (mv Movement) Fraction() float64 {
	var f float64
	for _, m := range mv.Moves {
		f += m.Fraction()
	}
	return f
}

// Diff returns the key-hash ranges that change owner between from and to.
// The two may use different algorithms or parameters (to plan a migration)
// as long as both place keys by hash ranges: [Stratified], [Ring], [Maglev]
// and [Bounded] do; [Rendezvous] and [Jump] place each key on its own, and
// Diff returns [ErrNoRanges] for them. A nil snapshot is an empty default
// placement.
func Diff(from, to *Snapshot) (Movement, error) {
	a, err := snapshotSteps(from)
	if err != nil {
		return Movement{}, err
	}
	b, err := snapshotSteps(to)
	if err != nil {
		return Movement{}, err
	}
	var mv Movement
	first := uint64(0)
	i, j := 0, 0
	// Walk both step functions together; each iteration ends the range at
	// the nearer of the two current step ends.
	for {
		last := min(a[i].last, b[j].last)
		// Compare IDs: each snapshot numbers its nodes its own way.
		if fromID, toID := idOf(from, a[i].owner), idOf(to, b[j].owner); fromID != toID {
			if k := len(mv.Moves) - 1; k >= 0 && mv.Moves[k].Last == first-1 &&
				mv.Moves[k].From == fromID && mv.Moves[k].To == toID {
				mv.Moves[k].Last = last
			} else {
				mv.Moves = append(mv.Moves, Move{First: first, Last: last, From: fromID, To: toID})
			}
		}
		if last == math.MaxUint64 {
			return mv, nil
		}
		first = last + 1
		if a[i].last == last {
			i++
		}
		if b[j].last == last {
			j++
		}
	}
}

func snapshotSteps(s *Snapshot) ([]step, error) {
	if s == nil || s.impl == nil {
		return []step{{last: math.MaxUint64, owner: -1}}, nil
	}
	if s.Len() == 0 {
		if _, ok := s.impl.steps(); !ok {
			return nil, fmt.Errorf("%w: %s", ErrNoRanges, s.alg)
		}
		return []step{{last: math.MaxUint64, owner: -1}}, nil
	}
	st, ok := s.impl.steps()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoRanges, s.alg)
	}
	return st, nil
}

func idOf(s *Snapshot, i int) string {
	if i < 0 {
		return ""
	}
	return s.names[i]
}
