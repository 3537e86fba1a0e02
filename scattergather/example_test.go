package scattergather_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/distkit/distkit/scattergather"
)

// shard is a leaf holding a few documents; it counts those that contain
// a word.
type shard []string

func (s shard) Do(ctx context.Context, word string) (int, error) {
	n := 0
	for _, doc := range s {
		if strings.Contains(doc, word) {
			n++
		}
	}
	return n, nil
}

func Example() {
	targets := []scattergather.Target[string, int]{
		{Name: "a", Leaf: shard{"the cat", "a dog"}},
		{Name: "b", Leaf: shard{"cat and dog", "the bird"}},
		{Name: "c", Leaf: scattergather.LeafFunc[string, int](func(ctx context.Context, _ string) (int, error) {
			return 0, errors.New("disk on fire")
		})},
	}
	g, err := scattergather.New(targets, scattergather.Sum[int](),
		scattergather.WithPolicy(scattergather.Quorum(2)))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := g.Gather(ctx, "cat")
	fmt.Println(res.Value, err)
	for _, l := range res.Leaves {
		fmt.Println(l.Name, l.Outcome, l.Err)
	}

	// With the default policy (All), the same gather fails as soon as c
	// does, and says why.
	strict, _ := scattergather.New(targets, scattergather.Sum[int]())
	_, err = strict.Gather(ctx, "cat")
	var incomplete *scattergather.IncompleteError
	if errors.As(err, &incomplete) {
		fmt.Println("incomplete:", incomplete.Leaves[2].Name, incomplete.Leaves[2].Err)
	}
	// Output:
	// 2 <nil>
	// a ok <nil>
	// b ok <nil>
	// c failed disk on fire
	// incomplete: c disk on fire
}

// A leaf that stalls is hedged to its replica after 20 ms; the replica's
// answer wins and the stalled request is cancelled.
func ExampleWithHedge() {
	stalled := scattergather.LeafFunc[string, int](func(ctx context.Context, _ string) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	budget, _ := scattergather.NewBudget(0.05, 10) // 5% extra, at least 10 a second
	g, _ := scattergather.New([]scattergather.Target[string, int]{
		{Name: "a", Leaf: shard{"the cat"}},
		{Name: "b", Leaf: stalled, Replicas: []scattergather.Leaf[string, int]{shard{"cat and dog"}}},
	}, scattergather.Sum[int](), scattergather.WithHedge(scattergather.Hedge{After: 20 * time.Millisecond, Budget: budget}))

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := g.Gather(ctx, "cat")
	fmt.Println(res.Value, err, "hedges:", res.Hedges, "won:", res.HedgesWon, "winner of b:", res.Leaves[1].Winner)
	// Output: 2 <nil> hedges: 1 won: 1 winner of b: 1
}
