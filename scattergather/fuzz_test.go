package scattergather

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzGather runs a gather over leaves whose behaviour the input decides
// (answer, answer late, fail, hang, panic; with or without replicas and
// hedging; any policy and concurrency limit) and checks that the result's
// accounting adds up.
func FuzzGather(f *testing.F) {
	for _, seed := range [][]byte{
		{3, 0, 0, 0, 0, 0, 1, 2},
		{7, 1, 3, 2, 1, 3, 3, 1, 0, 2, 4, 0},
		{5, 2, 2, 1, 1, 0x13, 0x23, 3, 1, 2},
		{1, 3, 1, 0, 1, 0x33},
		{8, 2, 8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkGather(data); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAccounting is FuzzGather's property over random inputs.
func TestAccounting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		data := make([]byte, 4+rng.IntN(12))
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		if err := checkGather(data); err != nil {
			t.Fatalf("case %d %v: %v", i, data, err)
		}
	}
}

func checkGather(data []byte) error {
	at := func(i int) byte {
		if i < len(data) {
			return data[i]
		}
		return 0
	}
	n := 1 + int(at(0))%8
	var p Policy
	k := 1 + int(at(2))%n
	switch at(1) % 4 {
	case 0:
		p = All()
	case 1:
		p = Quorum(k)
	case 2:
		p = First(k)
	case 3:
		p = BestEffort()
	}
	opts := []Option{WithPolicy(p), WithConcurrency(int(at(3)) % 4)}
	if at(4)&1 != 0 {
		opts = append(opts, WithHedge(Hedge{After: time.Millisecond}))
	}
	behave := func(b byte, idx int) Leaf[int, int] {
		return LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
			var wait time.Duration
			switch b % 5 {
			case 0:
			case 1:
				wait = time.Duration(1+b/5%4) * time.Millisecond
			case 2:
				return 0, errLeaf
			case 3:
				wait = time.Hour
			case 4:
				panic("leaf panic")
			}
			if wait > 0 {
				t := time.NewTimer(wait)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			return idx, nil
		})
	}
	ts := make([]Target[int, int], n)
	for i := range ts {
		b := at(5 + i)
		ts[i].Leaf = behave(b, i)
		for r := range int(b>>4) % 3 {
			ts[i].Replicas = append(ts[i].Replicas, behave(b>>(2+r), i))
		}
	}
	g, err := New(ts, Collect[int](), opts...)
	if err != nil {
		return fmt.Errorf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	res, err := g.Gather(ctx, 0)

	if len(res.Leaves) != n {
		return fmt.Errorf("%d reports for %d leaves", len(res.Leaves), n)
	}
	var counts [numOutcomes]int
	hedges, won := 0, 0
	for i, l := range res.Leaves {
		counts[l.Outcome]++
		hedges += l.Hedges
		if l.Outcome == OK && l.Winner > 0 {
			won++
		}
		switch l.Outcome {
		case OK, Skipped:
			if l.Err != nil {
				return fmt.Errorf("leaf %d %v with error %v", i, l.Outcome, l.Err)
			}
		case Failed:
			if l.Err == nil {
				return fmt.Errorf("leaf %d failed without an error", i)
			}
		case TimedOut:
			if !errors.Is(l.Err, context.DeadlineExceeded) {
				return fmt.Errorf("leaf %d timed out with %v", i, l.Err)
			}
		case Canceled:
			return fmt.Errorf("leaf %d canceled, but nobody cancelled", i)
		}
		if l.Winner > l.Hedges || l.Hedges > len(ts[i].Replicas) {
			return fmt.Errorf("leaf %d: winner %d of %d hedges, %d replicas", i, l.Winner, l.Hedges, len(ts[i].Replicas))
		}
	}
	if counts != [numOutcomes]int{res.OK, res.Failed, res.TimedOut, res.Canceled, res.Skipped} {
		return fmt.Errorf("counts %v, result says %+v", counts, res)
	}
	if hedges != res.Hedges || won != res.HedgesWon {
		return fmt.Errorf("hedges %d won %d, result says %d and %d", hedges, won, res.Hedges, res.HedgesWon)
	}
	// Exactly the OK leaves were merged.
	if len(res.Value) != res.OK {
		return fmt.Errorf("merged %v, but %d leaves are OK", res.Value, res.OK)
	}
	for _, i := range res.Value {
		if res.Leaves[i].Outcome != OK {
			return fmt.Errorf("merged leaf %d, which is %v", i, res.Leaves[i].Outcome)
		}
	}
	need := map[policyKind]int{policyAll: n, policyQuorum: k, policyFirst: k}[p.kind]
	if err == nil && res.OK < need {
		return fmt.Errorf("success with %d answers, policy %v needs %d", res.OK, p, need)
	}
	if err != nil {
		var ie *IncompleteError
		if !errors.As(err, &ie) || ie.OK != res.OK || ie.Need != need {
			return fmt.Errorf("error %v (%+v), want an IncompleteError with %d of %d", err, ie, res.OK, need)
		}
		if res.OK >= need {
			return fmt.Errorf("failed with %d answers, policy %v needs %d", res.OK, p, need)
		}
	}
	return nil
}
