package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/workqueue"
)

func Example() {
	ctx := context.Background()
	q, _ := workqueue.NewMemory()
	defer q.Close()
	q.Enqueue(ctx, workqueue.Item{ID: "thumb/1", Payload: []byte("img/1.png")})

	c, _ := q.Claim(ctx, 30*time.Second) // blocks until there is work
	fmt.Println("claimed", c.ID, "attempt", c.Attempt)
	q.Nack(ctx, c, errors.New("out of memory")) // retried after a backoff
	fmt.Println("retrying:", q.Stats().Delayed)

	// A claim once nacked, or taken back after its lease ran out, is not
	// held: an Ack from its old holder fails.
	err := q.Ack(ctx, c)
	fmt.Println(errors.Is(err, workqueue.ErrNotHeld))
	// Output:
	// claimed thumb/1 attempt 1
	// retrying: 1
	// true
}

func ExamplePool() {
	ctx := context.Background()
	q, _ := workqueue.NewMemory()
	defer q.Close()
	for i := range 5 {
		q.Enqueue(ctx, workqueue.Item{Payload: fmt.Append(nil, i)})
	}
	p, _ := workqueue.NewPool(q, func(ctx context.Context, c workqueue.Claim) error {
		return nil // do the work; an error nacks, a panic too
	}, workqueue.WithWorkers(1, 4))
	for q.Stats().Done < 5 {
		time.Sleep(time.Millisecond)
	}
	p.Close(ctx) // waits for running handlers
	fmt.Println(p.Stats().Done, "done")
	// Output: 5 done
}

func ExampleReduce() {
	ctx := context.Background()
	in, _ := workqueue.NewMemory()
	out, _ := workqueue.NewMemory() // receives one result per group
	defer in.Close()
	defer out.Close()
	for i := 1; i <= 4; i++ {
		in.Enqueue(ctx, workqueue.Item{ID: fmt.Sprint("order-", i), Payload: fmt.Append(nil, i*10)})
	}
	total := workqueue.Reduce(out, func(workqueue.Item) (string, int) { return "orders", 4 }, workqueue.Sum())
	p, _ := workqueue.NewPool(in, total)
	c, _ := out.Claim(ctx, time.Minute) // the sum, once all four are in
	p.Close(ctx)
	fmt.Println(c.ID, string(c.Payload))
	// Output: reduce/orders 100
}
