package workqueue

import (
	"context"
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
