package shard

import (
	"fmt"
	"slices"
	"strings"
)

// equalWeights returns a *NodeError for the first node, in the caller's
// order, whose weight differs from the first node's: Jump has no weights.
func equalWeights(nodes []Node) error {
	for i, n := range nodes {
		if n.Weight != nodes[0].Weight {
			return &NodeError{Index: i, ID: n.ID, Err: fmt.Errorf("%w: Jump needs equal weights, got %v and %v", ErrInvalidWeight, nodes[0].Weight, n.Weight)}
		}
	}
	return nil
}

// jump is jump consistent hashing over the nodes in natural ID order.
type jump struct {
	mem   *members
	order []uint16 // bucket number → node index
}

func buildJump(s *Snapshot) error {
	ms := s.mem
	j := &jump{mem: ms, order: make([]uint16, len(ms.ids))}
	for i := range j.order {
		j.order[i] = uint16(i)
	}
	slices.SortFunc(j.order, func(a, b uint16) int { return naturalCompare(ms.ids[a], ms.ids[b]) })
	s.impl, s.owner = j, j.owner
	return nil
}

// jumpHash is Lamping and Veach's jump consistent hash: the bucket in
// [0, n) of key. Only float64 multiply and divide are used, which IEEE 754
// rounds the same way everywhere.
func jumpHash(key uint64, n int) int {
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

func (j *jump) owner(h uint64) int { return int(j.order[jumpHash(h, len(j.order))]) }

// appendOwners takes the key's bucket, then the buckets of derived hashes
// of the key, which are themselves jump-consistent, skipping repeats. After
// 8·n tries it completes the list in bucket order, so it always ends.
func (j *jump) appendOwners(h uint64, n int, dst []string) []string {
	start := len(dst)
	ids, b := j.mem.ids, len(j.order)
	for r := uint64(0); len(dst)-start < n && r < uint64(8*b); r++ {
		hr := h
		if r > 0 {
			hr = mix(h + r*golden)
		}
		if id := ids[j.order[jumpHash(hr, b)]]; !slices.Contains(dst[start:], id) {
			dst = append(dst, id)
		}
	}
	for k := 0; len(dst)-start < n; k++ {
		if id := ids[j.order[k]]; !slices.Contains(dst[start:], id) {
			dst = append(dst, id)
		}
	}
	return dst
}

func (*jump) steps() ([]step, bool) { return nil, false }

// naturalCompare orders strings with runs of digits compared as numbers, so
// "shard-2" sorts before "shard-10". Numerically equal runs ("01", "1")
// fall back to byte order, which keeps the order total.
func naturalCompare(a, b string) int {
	x, y := a, b
	for x != "" && y != "" {
		if isDigit(x[0]) && isDigit(y[0]) {
			var rx, ry string
			rx, x = digitRun(x)
			ry, y = digitRun(y)
			rx, ry = strings.TrimLeft(rx, "0"), strings.TrimLeft(ry, "0")
			if len(rx) != len(ry) {
				return len(rx) - len(ry)
			}
			if c := strings.Compare(rx, ry); c != 0 {
				return c
			}
			continue
		}
		if x[0] != y[0] {
			return int(x[0]) - int(y[0])
		}
		x, y = x[1:], y[1:]
	}
	if len(x) != len(y) {
		return len(x) - len(y)
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}
