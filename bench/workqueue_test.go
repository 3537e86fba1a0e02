package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	k8swq "k8s.io/client-go/util/workqueue"

	"github.com/distkit/distkit/workqueue"
)

// queueImpl runs n items through a queue with w workers, each of which
// adds an item, takes one and marks it done, with no work between, until
// n are done. It returns when every goroutine has stopped.
type queueImpl struct {
	name string
	run  func(b *testing.B, n, workers int)
}

func queueImpls() []queueImpl {
	return []queueImpl{
		{"channel", runChannel},
		{"client-go", runClientGo},
		{"distkit-memory", func(b *testing.B, n, w int) { runDistkit(b, n, w, false) }},
		{"distkit-memory-ids", func(b *testing.B, n, w int) { runDistkit(b, n, w, true) }},
	}
}

// BenchmarkQueue measures ns per item for add→take→done with no-op work,
// the queue's own cost, with 1, 2 and 8 workers, each adding the items it
// then takes (so that a take rarely waits for an add):
//   - channel: a buffered channel, the floor; it has no leases, retries
//     or dedup, and cannot tell a lost item from a done one.
//   - client-go: k8s.io/client-go/util/workqueue, Add→Get→Done, which
//     dedups items and tracks those in flight.
//   - distkit-memory: workqueue.Memory, Enqueue→Claim→Ack, with
//     generated IDs: leased, fenced claims, retries, dedup by ID.
//   - distkit-memory-ids: the same with IDs given by the workers, made
//     before the timer starts, so dedup has a map to keep.
func BenchmarkQueue(b *testing.B) {
	for _, im := range queueImpls() {
		for _, w := range []int{1, 2, 8} {
			b.Run(fmt.Sprintf("impl=%s/workers=%d", im.name, w), func(b *testing.B) {
				defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
				b.ReportAllocs()
				im.run(b, b.N, w)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/item")
			})
		}
	}
}

// share splits n items among w workers: worker i does items [lo, hi).
func share(n, w, i int) (lo, hi int) { return n * i / w, n * (i + 1) / w }

func runChannel(b *testing.B, n, workers int) {
	ch := make(chan int, 1024)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			lo, hi := share(n, workers, w)
			for i := lo; i < hi; i++ {
				ch <- i
				<-ch
			}
		})
	}
	wg.Wait()
}

func runClientGo(b *testing.B, n, workers int) {
	q := k8swq.NewTyped[int]()
	defer q.ShutDown()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			lo, hi := share(n, workers, w)
			for i := lo; i < hi; i++ {
				q.Add(i)
				it, shutdown := q.Get()
				if shutdown {
					b.Error("shut down early")
					return
				}
				q.Done(it)
			}
		})
	}
	wg.Wait()
	if l := q.Len(); l != 0 {
		b.Fatalf("%d items left", l)
	}
}

func runDistkit(b *testing.B, n, workers int, givenIDs bool) {
	var ids []string
	if givenIDs {
		ids = make([]string, n)
		for i := range ids {
			ids[i] = "item-" + strconv.Itoa(i)
		}
		b.ResetTimer()
	}
	q, err := workqueue.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	payload := []byte("x")
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			lo, hi := share(n, workers, w)
			for i := lo; i < hi; i++ {
				it := workqueue.Item{Payload: payload}
				if ids != nil {
					it.ID = ids[i]
				}
				if err := q.Enqueue(ctx, it); err != nil {
					b.Error(err)
					return
				}
				c, err := q.Claim(ctx, time.Minute)
				if err != nil {
					b.Error(err)
					return
				}
				if err := q.Ack(ctx, c); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := q.Stats(); s.Done != uint64(n) || s.Depth() != 0 {
		b.Fatalf("stats %+v after %d items", s, n)
	}
}
