// Command workqueue shows a thumbnail-style batch with distkit's
// workqueue package. It writes a directory of generated "images", puts
// one item per file in a durable queue, splits them by size into two
// queues whose worker pools make the thumbnails (scaling up while work
// waits and back down after), and joins the results: when every image is
// done or has failed for good, one result reports the batch. Some images
// fail once and are retried; one is corrupt and becomes a dead letter.
// It prints progress and exits by itself.
//
//	go run ./examples/workqueue
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/workqueue"
)

const images = 60

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "distkit-thumbs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	// The inputs: random bytes, small and large; one corrupt.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range images {
		size := 1000 + r.IntN(4000)
		if i%3 == 0 {
			size = 50000 + r.IntN(50000)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if i == 17 {
			data = []byte("not an image")
		}
		if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("img%02d.raw", i)), data, 0o644); err != nil {
			return err
		}
	}

	ctx := context.Background()
	retry := workqueue.WithRetry(workqueue.Retry{MaxFailures: 3, MaxExpiries: 3, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.2})
	inputs, err := workqueue.OpenDisk(filepath.Join(dir, "queue"), retry)
	if err != nil {
		return err
	}
	defer inputs.Close()
	small, _ := workqueue.NewMemory(retry)
	large, _ := workqueue.NewMemory(retry)
	results, _ := workqueue.NewMemory(retry)
	batch, _ := workqueue.NewMemory(retry)
	for _, q := range []*workqueue.Memory{small, large, results, batch} {
		defer q.Close()
	}

	// One item per file, on disk before Enqueue returns.
	files, _ := filepath.Glob(filepath.Join(in, "*.raw"))
	var items []workqueue.Item
	for _, f := range files {
		items = append(items, workqueue.Item{ID: filepath.Base(f), Payload: []byte(f)})
	}
	if err := inputs.Enqueue(ctx, items...); err != nil {
		return err
	}
	fmt.Printf("%d images in %s, queued\n", len(items), in)

	// The splitter: small images to one queue, large to another.
	split, err := workqueue.NewPool(inputs, workqueue.Split(func(it workqueue.Item) workqueue.Queue {
		st, err := os.Stat(string(it.Payload))
		if err == nil && st.Size() >= 50000 {
			return large
		}
		return small
	}), workqueue.WithWorkers(1, 2))
	if err != nil {
		return err
	}

	// The thumbnailers. Every image ends as a result, ok or failed, so
	// that the join knows when the batch is over.
	var attempts atomic.Int32
	thumb := func(ctx context.Context, c workqueue.Claim) error {
		attempts.Add(1)
		err := makeThumb(ctx, c, out)
		switch {
		case err == nil:
			return results.Enqueue(ctx, workqueue.Item{ID: "r/" + c.ID, Payload: []byte("ok")})
		case workqueue.IsPermanent(err):
			if err := results.Enqueue(ctx, workqueue.Item{ID: "r/" + c.ID, Payload: []byte("failed")}); err != nil {
				return err
			}
		}
		return err
	}
	opts := []workqueue.PoolOption{workqueue.WithWorkers(1, 6), workqueue.WithScaleInterval(20 * time.Millisecond)}
	smallPool, err := workqueue.NewPool(small, thumb, opts...)
	if err != nil {
		return err
	}
	largePool, err := workqueue.NewPool(large, thumb, opts...)
	if err != nil {
		return err
	}

	// The join: one result for the whole batch, once every image is in.
	join, err := workqueue.NewPool(results, workqueue.Reduce(batch,
		func(workqueue.Item) (string, int) { return "batch", len(items) },
		func(payloads [][]byte) ([]byte, error) {
			ok := 0
			for _, p := range payloads {
				if string(p) == "ok" {
					ok++
				}
			}
			return fmt.Appendf(nil, "%d thumbnails made, %d failed", ok, len(payloads)-ok), nil
		}))
	if err != nil {
		return err
	}

	// Progress, until the batch's result arrives.
	start := time.Now()
	done := make(chan workqueue.Claim, 1)
	go func() {
		c, err := batch.Claim(ctx, time.Minute)
		if err == nil {
			done <- c
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(30 * time.Second)
	var result workqueue.Claim
wait:
	for {
		select {
		case result = <-done:
			break wait
		case <-tick.C:
			s, l := smallPool.Stats(), largePool.Stats()
			fmt.Printf("%5dms  results %2d/%d  small: %d workers, %d busy  large: %d workers, %d busy\n",
				time.Since(start).Milliseconds(), results.Stats().Done, len(items), s.Workers, s.Busy, l.Workers, l.Busy)
		case <-timeout:
			return errors.New("the batch did not finish in 30 s")
		}
	}
	fmt.Printf("batch done after %v: %s (%s)\n", time.Since(start).Round(time.Millisecond), result.Payload, result.ID)
	batch.Ack(ctx, result)

	// Idle now: the pools go back to one worker each.
	time.Sleep(300 * time.Millisecond)
	for name, p := range map[string]*workqueue.Pool{"small": smallPool, "large": largePool} {
		s := p.Stats()
		fmt.Printf("%s pool: %d done, %d failed; %d workers started, %d retired, %d now\n", name, s.Done, s.Failed, s.Started, s.Retired, s.Workers)
	}
	fmt.Printf("%d attempts for %d images\n", attempts.Load(), len(items))
	for _, q := range []*workqueue.Memory{small, large} {
		ds, _ := q.DeadLetters(ctx)
		for _, d := range ds {
			fmt.Printf("dead letter: %s after %d failures: %s\n", d.ID, d.Failures, d.Reason)
		}
	}
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, p := range []*workqueue.Pool{split, smallPool, largePool, join} {
		if err := p.Close(stop); err != nil {
			return err
		}
	}
	thumbs, _ := filepath.Glob(filepath.Join(out, "*.thumb"))
	fmt.Printf("%d thumbnails in %s\n", len(thumbs), out)
	return nil
}

// makeThumb "shrinks" an image to a 32-byte digest, taking a while as
// real work would. Every seventh image fails on its first attempt; a
// file that does not look like an image fails for good.
func makeThumb(ctx context.Context, c workqueue.Claim, out string) error {
	data, err := os.ReadFile(string(c.Payload))
	if err != nil {
		return err
	}
	if bytes.HasPrefix(data, []byte("not an")) {
		return workqueue.Permanent(fmt.Errorf("%s: not an image", c.ID))
	}
	var n int
	fmt.Sscanf(c.ID, "img%d.raw", &n)
	if c.Attempt == 1 && n%7 == 3 {
		return fmt.Errorf("%s: the thumbnailer ran out of memory (the first time)", c.ID)
	}
	select {
	case <-time.After(time.Duration(len(data)/1000+20) * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	sum := sha256.Sum256(data)
	name := strings.TrimSuffix(c.ID, ".raw") + ".thumb"
	return os.WriteFile(filepath.Join(out, name), sum[:], 0o644)
}
