package shard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// maxRingPoints bounds the memory a ring may take (16M points, 160 MiB).
const maxRingPoints = 1 << 24

// ringPoints places max(1, round(vnodes·weight/mean weight)) points per
// node and returns them sorted, with the owner of each: weights are
// relative, so a node of average weight gets vnodes points whatever the
// unit. Points that collide are ordered by owner ID, so the first one wins
// the hashes up to it.
func ringPoints(mem *members, vnodes int) ([]uint64, []uint16, error) {
	mean := sum(mem.w) / float64(len(mem.w))
	counts := make([]int, len(mem.ids))
	total := 0
	for i, w := range mem.w {
		x := float64(vnodes) * w / mean // compared before it becomes an int, which may be 32 bits
		if x > maxRingPoints || total+int(x) > maxRingPoints {
			return nil, nil, fmt.Errorf("%w: %d vnodes for %d nodes of these weights need more than %d ring points",
				ErrInvalidAlgorithm, vnodes, len(mem.ids), maxRingPoints)
		}
		counts[i] = max(1, int(math.Round(x)))
		total += counts[i]
	}
	type point struct {
		pos   uint64
		owner uint16
	}
	pts := make([]point, 0, total)
	for i, k := range mem.keys {
		for j := range counts[i] {
			pts = append(pts, point{mix(k + uint64(j+1)*golden), uint16(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.pos, b.pos); c != 0 {
			return c
		}
		return cmp.Compare(a.owner, b.owner)
	})
	pos := make([]uint64, len(pts))
	owners := make([]uint16, len(pts))
	for k, p := range pts {
		pos[k], owners[k] = p.pos, p.owner
	}
	return pos, owners, nil
}

// ringSearch returns the index of the first point at or after h, wrapping
// to 0 past the last point.
func ringSearch(pos []uint64, h uint64) int {
	lo, hi := 0, len(pos)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if pos[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(pos) {
		return 0
	}
	return lo
}

// ringWalk appends the IDs of the owners of points from index k onwards,
// clockwise, skipping node skip (-1 for none) and owners already appended,
// until it has appended n.
func ringWalk(ids []string, owners []uint16, k, skip, n int, dst []string) []string {
	start := len(dst)
	for step := 0; step < len(owners) && len(dst)-start < n; step++ {
		o := int(owners[(k+step)%len(owners)])
		if o != skip && !slices.Contains(dst[start:], ids[o]) {
			dst = append(dst, ids[o])
		}
	}
	return dst
}

// ringSteps turns sorted points into hash ranges: each point owns the
// hashes after the previous point up to itself, and the first point also
// owns those after the last.
func ringSteps(pos []uint64, owners []uint16) []step {
	var out []step
	add := func(last uint64, o int) {
		if len(out) > 0 && out[len(out)-1].owner == o {
			out[len(out)-1].last = last
			return
		}
		out = append(out, step{last: last, owner: o})
	}
	for k, p := range pos {
		if k > 0 && p == pos[k-1] {
			continue // a collided point owns nothing
		}
		add(p, int(owners[k]))
	}
	if pos[len(pos)-1] != math.MaxUint64 {
		add(math.MaxUint64, int(owners[0]))
	}
	return out
}

type ring struct {
	mem    *members
	pos    []uint64
	owners []uint16
}

func buildRing(s *Snapshot) error {
	r := &ring{mem: s.mem}
	if len(s.mem.ids) > 0 {
		var err error
		if r.pos, r.owners, err = ringPoints(s.mem, s.alg.size); err != nil {
			return err
		}
	}
	s.impl, s.owner = r, r.owner
	return nil
}

func (r *ring) owner(h uint64) int { return int(r.owners[ringSearch(r.pos, h)]) }

func (r *ring) appendOwners(h uint64, n int, dst []string) []string {
	return ringWalk(r.mem.ids, r.owners, ringSearch(r.pos, h), -1, n, dst)
}

func (r *ring) steps() ([]step, bool) {
	if len(r.pos) == 0 {
		return []step{{last: math.MaxUint64, owner: -1}}, true
	}
	return ringSteps(r.pos, r.owners), true
}
