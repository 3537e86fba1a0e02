package shard

import (
	"fmt"
	"math"
)

// bounded is consistent hashing with bounded loads over a partition table:
// partition p sits on the ring at partitionPos(p) and, taken in order,
// goes to the first node clockwise that still has room under its cap.
type bounded struct {
	mem    *members
	slots  []uint16
	pos    []uint64 // the node ring
	owners []uint16
}

func partitionPos(p uint64) uint64 { return mix(p*golden ^ 0x3c6ef372fe94f82b) }

func buildBounded(s *Snapshot) error {
	ms := s.mem
	parts := s.alg.size
	n := len(ms.ids)
	if n > parts {
		return fmt.Errorf("%w: %d nodes for %d partitions", ErrTooManyNodes, n, parts)
	}
	b := &bounded{mem: ms}
	s.impl = b
	if n == 0 {
		return nil
	}
	var err error
	if b.pos, b.owners, err = ringPoints(ms, DefaultVnodes); err != nil {
		return err
	}
	total := sum(ms.w)
	// load >= 1 makes the caps add up to at least parts, so every walk
	// finds room.
	caps := make([]int, n)
	for i, w := range ms.w {
		caps[i] = int(math.Ceil(s.alg.load * float64(parts) * w / total))
	}
	count := make([]int, n)
	slots := make([]uint16, parts)
	for p := range slots {
		k := ringSearch(b.pos, partitionPos(uint64(p)))
		for count[b.owners[k]] >= caps[b.owners[k]] {
			k = (k + 1) % len(b.owners)
		}
		slots[p] = b.owners[k]
		count[b.owners[k]]++
	}
	b.slots = applyFloor(slots, ms.ids, ms.keys, count)
	s.slots = b.slots
	return nil
}

// appendOwners takes the partition's owner, then the nodes clockwise from
// the partition's place on the ring.
func (b *bounded) appendOwners(h uint64, n int, dst []string) []string {
	p := slotOf(h, uint64(len(b.slots)))
	primary := int(b.slots[p])
	dst = append(dst, b.mem.ids[primary])
	return ringWalk(b.mem.ids, b.owners, ringSearch(b.pos, partitionPos(p)), primary, n-1, dst)
}

func (b *bounded) steps() ([]step, bool) { return tableSteps(b.slots), true }
