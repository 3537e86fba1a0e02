package scattergather

import (
	"cmp"
	"slices"
)

// Reducer makes a fresh Merger for each gather.
type Reducer[Resp, Out any] func() Merger[Resp, Out]

// Merger merges the answers of one gather as they arrive. Its methods are
// called one at a time (from the leaves' goroutines, under a lock), so a
// Merger needs no locking of its own; Add must not block, nor panic.
type Merger[Resp, Out any] interface {
	// Add merges the answer of the leaf at index leaf (in the order the
	// targets were given) and reports whether the merged value is
	// complete, which ends the gather early, as a success, cancelling
	// the leaves still running.
	Add(leaf int, resp Resp) (done bool)
	// Result returns the merged value. It is called once, after the last
	// Add.
	Result() Out
}

// Fold returns a Reducer that starts each gather from init() and merges
// each answer with add, which reports whether the value is complete.
func Fold[Resp, Out any](init func() Out, add func(acc Out, resp Resp) (Out, bool)) Reducer[Resp, Out] {
	return func() Merger[Resp, Out] { return &fold[Resp, Out]{acc: init(), add: add} }
}

type fold[Resp, Out any] struct {
	acc Out
	add func(Out, Resp) (Out, bool)
}

func (f *fold[Resp, Out]) Add(_ int, r Resp) bool {
	var done bool
	f.acc, done = f.add(f.acc, r)
	return done
}

func (f *fold[Resp, Out]) Result() Out { return f.acc }

// Number is what Sum adds.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr |
		~float32 | ~float64
}

// Sum adds the answers.
func Sum[N Number]() Reducer[N, N] {
	return Fold(func() N { return 0 }, func(acc, r N) (N, bool) { return acc + r, false })
}

// Collect returns the answers in the order of the leaves that gave them
// (not the order they arrived in); leaves that did not answer are left
// out, so see Result.Leaves for which answered.
func Collect[Resp any]() Reducer[Resp, []Resp] {
	return func() Merger[Resp, []Resp] { return &collect[Resp]{} }
}

type collect[Resp any] struct {
	idx  []int
	resp []Resp
}

func (c *collect[Resp]) Add(leaf int, r Resp) bool {
	c.idx = append(c.idx, leaf)
	c.resp = append(c.resp, r)
	return false
}

func (c *collect[Resp]) Result() []Resp {
	order := make([]int, len(c.idx))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(c.idx[a], c.idx[b]) })
	out := make([]Resp, len(order))
	for i, j := range order {
		out[i] = c.resp[j]
	}
	return out
}

// Concat concatenates the slices the leaves answer with, in leaf order.
func Concat[T any]() Reducer[[]T, []T] {
	return func() Merger[[]T, []T] { return &concat[T]{} }
}

type concat[T any] struct{ c collect[[]T] }

func (c *concat[T]) Add(leaf int, r []T) bool { return c.c.Add(leaf, r) }

func (c *concat[T]) Result() []T { return slices.Concat(c.c.Result()...) }

// TopK keeps the k best items of the slices the leaves answer with: those
// that sort first by compare, in that order. Equal items keep the order
// they arrived in. k < 1 keeps nothing.
func TopK[T any](k int, compare func(a, b T) int) Reducer[[]T, []T] {
	return func() Merger[[]T, []T] { return &topK[T]{k: k, cmp: compare} }
}

type topK[T any] struct {
	k     int
	cmp   func(a, b T) int
	items []T // sorted, at most k
}

func (t *topK[T]) Add(_ int, r []T) bool {
	if t.k < 1 {
		return false
	}
	for _, x := range r {
		if len(t.items) == t.k && t.cmp(x, t.items[len(t.items)-1]) >= 0 {
			continue
		}
		// Insert after equal items, so earlier answers win ties.
		i, _ := slices.BinarySearchFunc(t.items, x, func(a, b T) int {
			if c := t.cmp(a, b); c != 0 {
				return c
			}
			return -1
		})
		if len(t.items) == t.k {
			t.items = t.items[:len(t.items)-1]
		}
		t.items = slices.Insert(t.items, i, x)
	}
	return false
}

func (t *topK[T]) Result() []T { return t.items }

// Histogram adds up counts per bucket: each leaf answers with its own
// counts.
func Histogram[K comparable]() Reducer[map[K]int64, map[K]int64] {
	return Fold(func() map[K]int64 { return map[K]int64{} }, func(acc, r map[K]int64) (map[K]int64, bool) {
		for k, v := range r {
			acc[k] += v
		}
		return acc, false
	})
}
