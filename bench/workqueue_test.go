package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
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
		{"floor", runFloor},
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
//   - floor: what any queue with workqueue's API costs at the least: one
//     lock per call, a FIFO, a slot per lease, and the Item copied in and
//     a Claim-shaped value copied out; no IDs, clock, stats or retries.
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

// floorQueue is the least a queue with workqueue's API can do: see
// BenchmarkQueue.
type floorQueue struct {
	mu     sync.Mutex
	ready  []*floorEntry
	leases []*floorEntry // by index, swapped out on ack
	free   []*floorEntry
	token  uint64
}

type floorEntry struct {
	item  workqueue.Item
	token uint64
	idx   int
}

// floorClaim has the shape of workqueue.Claim.
type floorClaim struct {
	workqueue.Item
	Token              uint64
	Deadline           time.Time
	Failures, Expiries int
	e                  *floorEntry
}

//go:noinline
func (q *floorQueue) enqueue(ctx context.Context, items ...workqueue.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	for i := range items {
		var e *floorEntry
		if n := len(q.free); n > 0 {
			e, q.free = q.free[n-1], q.free[:n-1]
		} else {
			e = new(floorEntry)
		}
		e.item = items[i]
		q.ready = append(q.ready, e)
	}
	q.mu.Unlock()
	return nil
}

//go:noinline
func (q *floorQueue) claim(ctx context.Context, lease time.Duration) (floorClaim, error) {
	q.mu.Lock()
	if err := ctx.Err(); err != nil || len(q.ready) == 0 {
		q.mu.Unlock()
		return floorClaim{}, errors.New("nothing ready")
	}
	e := q.ready[0]
	q.ready = q.ready[:copy(q.ready, q.ready[1:])]
	q.token++
	e.token, e.idx = q.token, len(q.leases)
	q.leases = append(q.leases, e)
	c := floorClaim{Item: e.item, Token: e.token, e: e}
	q.mu.Unlock()
	return c, nil
}

//go:noinline
func (q *floorQueue) ack(ctx context.Context, c floorClaim) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := c.e
	if e.token != c.Token {
		return workqueue.ErrNotHeld
	}
	last := len(q.leases) - 1
	q.leases[e.idx] = q.leases[last]
	q.leases[e.idx].idx = e.idx
	q.leases = q.leases[:last]
	*e = floorEntry{}
	q.free = append(q.free, e)
	return nil
}

func runFloor(b *testing.B, n, workers int) {
	q := &floorQueue{}
	ctx := context.Background()
	payload := []byte("x")
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			lo, hi := share(n, workers, w)
			for i := lo; i < hi; i++ {
				if err := q.enqueue(ctx, workqueue.Item{Payload: payload}); err != nil {
					b.Error(err)
					return
				}
				c, err := q.claim(ctx, time.Minute)
				if err != nil {
					b.Error(err)
					return
				}
				if err := q.ack(ctx, c); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// durableItems go through the queue in each iteration of
// BenchmarkDurable.
const durableItems = 50000

// BenchmarkDurable reports items/s through a queue on disk (ext4 here)
// with every enqueue and every ack on disk before it returns: one
// producer enqueues batches of 100, 64 workers claim and ack one at a
// time.
//   - distkit-disk: workqueue.Disk, whose log syncs what all callers
//     appended meanwhile with one fsync.
//   - fsync-each: the same records appended to a file with one fsync per
//     enqueue batch and per ack, under a mutex: what durability costs
//     without group commit.
func BenchmarkDurable(b *testing.B) {
	b.Run("impl=distkit-disk", func(b *testing.B) {
		defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
		for b.Loop() {
			d, err := workqueue.OpenDisk(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			runDurable(b, d)
			if err := d.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(b.N*durableItems)/b.Elapsed().Seconds(), "items/s")
	})
	b.Run("impl=fsync-each", func(b *testing.B) {
		defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
		for b.Loop() {
			q, err := newFsyncQueue(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			runDurable(b, q)
			q.Close()
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(b.N*durableItems)/b.Elapsed().Seconds(), "items/s")
	})
}

func runDurable(b *testing.B, q workqueue.Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := make([]byte, 100)
	var wg sync.WaitGroup
	var done atomic.Int64
	for range 64 {
		wg.Go(func() {
			for {
				c, err := q.Claim(ctx, time.Minute)
				if err != nil {
					return // all done
				}
				if err := q.Ack(ctx, c); err != nil {
					b.Error(err)
					cancel()
					return
				}
				if done.Add(1) == durableItems {
					cancel()
				}
			}
		})
	}
	for i := 0; i < durableItems && ctx.Err() == nil; i += 100 {
		batch := make([]workqueue.Item, 100)
		for j := range batch {
			batch[j] = workqueue.Item{ID: strconv.Itoa(i + j), Payload: payload}
		}
		if err := q.Enqueue(ctx, batch...); err != nil {
			b.Error(err)
			cancel() // the workers stop claiming
			break
		}
	}
	wg.Wait()
	if n := done.Load(); n != durableItems {
		b.Fatalf("%d of %d items done", n, durableItems)
	}
}

// fsyncQueue is a workqueue.Memory whose enqueues and acks append a
// record to a file and fsync it, one at a time.
type fsyncQueue struct {
	*workqueue.Memory
	mu sync.Mutex
	f  *os.File
}

func newFsyncQueue(dir string) (*fsyncQueue, error) {
	m, err := workqueue.NewMemory()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	return &fsyncQueue{Memory: m, f: f}, nil
}

func (q *fsyncQueue) sync(rec []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, err := q.f.Write(rec); err != nil {
		return err
	}
	return q.f.Sync()
}

func (q *fsyncQueue) Enqueue(ctx context.Context, items ...workqueue.Item) error {
	var rec []byte
	for _, it := range items {
		rec = append(append(rec, it.ID...), it.Payload...)
	}
	if err := q.sync(rec); err != nil {
		return err
	}
	return q.Memory.Enqueue(ctx, items...)
}

func (q *fsyncQueue) Ack(ctx context.Context, c workqueue.Claim) error {
	if err := q.sync([]byte(c.ID)); err != nil {
		return err
	}
	return q.Memory.Ack(ctx, c)
}

func (q *fsyncQueue) Close() {
	q.Memory.Close()
	q.f.Close()
}
