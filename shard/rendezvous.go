package shard

// rendezvous is weighted rendezvous hashing evaluated per key: node i scores
// key hash h with u = mix(h ^ key_i); unweighted, the largest u wins,
// weighted, the smallest -log2(u/2^64)/weight.
type rendezvous struct{ mem *members }

func (r rendezvous) cand(h uint64, i int) cand {
	u := mix(h ^ r.mem.keys[i])
	c := cand{u: u, i: i}
	if !r.mem.uniform {
		c.e = float64(negLog2(u)) / r.mem.w[i]
	}
	return c
}

func (r rendezvous) owner(h uint64) int {
	ms := r.mem
	if ms.uniform {
		// The hot case: a plain maximum. IDs are sorted, so keeping the
		// first of equal scores gives ties to the smaller ID.
		best, bu := 0, mix(h^ms.keys[0])
		for i, k := range ms.keys[1:] {
			if u := mix(h ^ k); u > bu {
				best, bu = i+1, u
			}
		}
		return best
	}
	best := r.cand(h, 0)
	for i := 1; i < len(ms.ids); i++ {
		if c := r.cand(h, i); better(c, best, false, ms.ids) {
			best = c
		}
	}
	return best.i
}

func (r rendezvous) appendOwners(h uint64, n int, dst []string) []string {
	return appendRanked(r.mem.ids, r.mem.uniform, func(i int) cand { return r.cand(h, i) }, n, -1, dst)
}

func (rendezvous) steps() ([]step, bool) { return nil, false }
