package workqueue

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkCycle is one Enqueue→Claim→Ack in one goroutine: the
// queue's own cost, with no contention. bench/ compares it with peers.
func BenchmarkCycle(b *testing.B) { benchCycle(b, nil) }

// BenchmarkCycleIDs is BenchmarkCycle with IDs given by the caller, so
// that dedup keeps a map.
func BenchmarkCycleIDs(b *testing.B) {
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "item-" + strconv.Itoa(i)
	}
	benchCycle(b, ids)
}

// benchCycle runs the cycle with the given IDs in turn, or generated
// ones if ids is nil; len(ids) is a power of two.
func benchCycle(b *testing.B, ids []string) {
	q, err := NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	it := Item{Payload: []byte("x")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ids != nil {
			it.ID = ids[i&(len(ids)-1)]
			i++
		}
		if err := q.Enqueue(ctx, it); err != nil {
			b.Fatal(err)
		}
		c, err := q.Claim(ctx, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}
