package scattergather

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestReducers(t *testing.T) {
	ctx := context.Background()
	sliceLeaf := func(vs ...int) Target[int, []int] {
		return Target[int, []int]{Leaf: LeafFunc[int, []int](func(context.Context, int) ([]int, error) { return vs, nil })}
	}
	slices3 := []Target[int, []int]{sliceLeaf(5, 1), sliceLeaf(), sliceLeaf(3, 9, 1)}

	cat, err := New(slices3, Concat[int]())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cat.Do(ctx, 0); err != nil || !slices.Equal(got, []int{5, 1, 3, 9, 1}) {
		t.Fatalf("Concat = %v, %v", got, err)
	}

	top, _ := New(slices3, TopK(3, func(a, b int) int { return cmp.Compare(b, a) }))
	if got, _ := top.Do(ctx, 0); !slices.Equal(got, []int{9, 5, 3}) {
		t.Fatalf("TopK(3) = %v", got)
	}
	for _, k := range []int{0, -1} {
		none, _ := New(slices3, TopK(k, cmp.Compare[int]))
		if got, _ := none.Do(ctx, 0); len(got) != 0 {
			t.Fatalf("TopK(%d) = %v", k, got)
		}
	}

	// Collect keeps leaf order whatever the arrival order.
	col := mustNew(t, targets(slow(1, 20*time.Millisecond), ok(2), slow(3, 5*time.Millisecond)), Collect[int]())
	if got, _ := col.Do(ctx, 0); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("Collect = %v", got)
	}

	histLeaf := func(m map[string]int64) Target[int, map[string]int64] {
		return Target[int, map[string]int64]{Leaf: LeafFunc[int, map[string]int64](func(context.Context, int) (map[string]int64, error) { return m, nil })}
	}
	hist, _ := New([]Target[int, map[string]int64]{histLeaf(map[string]int64{"a": 1, "b": 2}), histLeaf(map[string]int64{"b": 3})}, Histogram[string]())
	if got, _ := hist.Do(ctx, 0); !maps.Equal(got, map[string]int64{"a": 1, "b": 5}) {
		t.Fatalf("Histogram = %v", got)
	}
}

// TestReducerEndsEarly: a reducer that has enough ends the gather as a
// success, whatever the policy, and the rest are cancelled.
func TestReducerEndsEarly(t *testing.T) {
	ls := []*leaf{ok(4), hung(), hung()}
	found := Fold(func() int { return 0 }, func(acc, r int) (int, bool) { return acc + r, r == 4 })
	g := mustNew(t, targets(ls...), found)
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), 0)
	if err != nil || res.Value != 4 || !res.Early || res.Skipped != 2 {
		t.Fatalf("err %v, %+v", err, res)
	}
	for _, l := range ls[1:] {
		if l.canceled.Load() != 1 {
			t.Fatal("a running leaf was not cancelled")
		}
	}
}
