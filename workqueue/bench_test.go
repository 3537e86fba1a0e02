package workqueue

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkCycle is one Enqueue→Claim→Ack in one goroutine: the
// queue's own cost, with no contention. bench/ compares it with peers.
func BenchmarkCycle(b *testing.B) {
	q, err := NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	it := Item{Payload: []byte("x")}
	b.ReportAllocs()
	for b.Loop() {
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

// BenchmarkCycleIDs is BenchmarkCycle with IDs given by the caller, so
// that dedup keeps a map.
func BenchmarkCycleIDs(b *testing.B) {
	q, err := NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "item-" + strconv.Itoa(i)
	}
	it := Item{Payload: []byte("x")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		it.ID = ids[i&(len(ids)-1)]
		i++
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
