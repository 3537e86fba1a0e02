package workqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/clock"
)

func openDisk(t *testing.T, dir string, clk *clock.Fake, opts ...Option) *Disk {
	t.Helper()
	d, err := OpenDisk(dir, append([]Option{withClock(clk), WithRetry(testRetry)}, opts...)...)
	if err != nil {
		t.Fatalf("OpenDisk: %v", err)
	}
	return d
}

// diskFixture wraps a Disk in the fixture helpers.
func diskFixture(t *testing.T, d *Disk, clk *clock.Fake) *fixture {
	return &fixture{Memory: d.Memory, t: t, clk: clk}
}

func TestDiskRestoresWhatItHeld(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	d := openDisk(t, dir, clk, WithShards(1)) // one FIFO: the test checks claim order
	f := diskFixture(t, d, clk)
	f.enqueue(item("done"), Item{ID: "k1", Key: "k", Payload: []byte("1")}, Item{ID: "k2", Key: "k", Payload: []byte("2")},
		Item{ID: "later", Payload: []byte("x"), NotBefore: t0.Add(time.Hour)}, item("dies"), item("held"), item("revived"))
	f.enqueue(Item{Payload: []byte("generated")})
	f.ack(f.claim(time.Minute))                       // done
	f.nack(f.claim(time.Minute), errors.New("flaky")) // k1: retry in a second
	dies := f.claim(time.Minute)
	f.nack(dies, Permanent(errors.New("bad input")))
	f.claim(time.Minute) // held: claimed, never acked
	revived := f.claim(time.Minute)
	f.nack(revived, Permanent(errors.New("oops")))
	if err := d.Requeue(context.Background(), "revived"); err != nil {
		t.Fatal(err)
	}
	gen := f.claim(time.Minute) // generated, handed back: claimed at the crash
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openDisk(t, dir, clk, WithShards(1))
	defer d.Close()
	f = diskFixture(t, d, clk)
	// Queue order survives: held (its claim died with the process), the
	// generated one, revived (requeued last); k1 waits for its backoff
	// and k2 behind it; later waits for its time.
	for _, want := range []string{"held", gen.ID, "revived"} {
		c := f.claim(time.Minute)
		if c.ID != want {
			t.Fatalf("claimed %s, want %s", c.ID, want)
		}
		if want == "held" && c.Attempt != 1 {
			t.Fatalf("held: attempt %d after restart", c.Attempt)
		}
		f.ack(c)
	}
	if _, ok := f.tryClaim(time.Minute); ok {
		t.Fatal("claimed before k1's backoff ended")
	}
	clk.Advance(time.Second)
	k1 := f.claim(time.Minute)
	if k1.ID != "k1" || k1.Failures != 1 || k1.Attempt != 2 {
		t.Fatalf("claimed %+v, want k1 after one failure", k1)
	}
	if _, ok := f.tryClaim(time.Minute); ok {
		t.Fatal("k2 ran beside k1")
	}
	f.ack(k1)
	k2 := f.claim(time.Minute)
	if k2.ID != "k2" {
		t.Fatalf("claimed %s, want k2", k2.ID)
	}
	f.ack(k2)
	ds, err := d.DeadLetters(context.Background())
	if err != nil || len(ds) != 1 || ds[0].ID != "dies" || ds[0].Reason != "bad input" || ds[0].Failures != 1 {
		t.Fatalf("dead letters %+v, %v", ds, err)
	}
	clk.Advance(time.Hour)
	if c := f.claim(time.Minute); c.ID != "later" {
		t.Fatalf("claimed %s, want later", c.ID)
	}
	// Restored IDs still dedup.
	f.enqueue(item("dies"), item("later"))
	if s := d.Stats(); s.Duplicates != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDiskCutsATornTail(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	d := openDisk(t, dir, clk)
	diskFixture(t, d, clk).enqueue(item("a"), item("b"))
	d.Close()
	path := filepath.Join(dir, logName)
	st, _ := os.Stat(path)
	whole := st.Size()
	// A kill in the middle of a write leaves part of a record.
	rec := appendRecord(nil, &record{kind: recEnqueue, id: "c", payload: []byte("xyz")})
	for i, tail := range [][]byte{rec[:5], rec[:len(rec)-1], append(rec[:len(rec):len(rec)], 0xff, 0xff)} {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(tail)
		f.Close()
		d = openDisk(t, dir, clk)
		s := d.Stats()
		d.Close()
		// What is whole stays, the rest goes, and the run's epoch is
		// appended (the first open wrote epoch 1, so this is i+2).
		want := whole + int64(len(appendRecord(nil, &record{kind: recEpoch, at: int64(i + 2)})))
		kept := len(tail) > len(rec)
		if kept {
			want += int64(len(rec)) // the whole record counts; the junk after it does not
		}
		got, _ := os.Stat(path)
		if s.Ready != 2+boolInt(kept) || got.Size() != want {
			t.Fatalf("tail of %d bytes: %d ready, log %d bytes, want %d", len(tail), s.Ready, got.Size(), want)
		}
		whole = got.Size()
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDiskOneOpenerAtATime(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDisk(dir); err == nil || !strings.Contains(err.Error(), "open in another queue") {
		t.Fatalf("second OpenDisk: %v", err)
	}
	d.Close()
	d, err = OpenDisk(dir)
	if err != nil {
		t.Fatalf("OpenDisk after Close: %v", err)
	}
	d.Close()
	if _, err := OpenDisk(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("OpenDisk(\"\"): %v", err)
	}
}

func TestDiskFailsClosedWhenTheLogBreaks(t *testing.T) {
	clk := clock.NewFake(t0)
	d := openDisk(t, t.TempDir(), clk)
	defer d.Close()
	f := diskFixture(t, d, clk)
	f.enqueue(item("a"), item("b"))
	c := f.claim(time.Minute)
	d.j.f.Close() // the disk goes away
	err := d.Ack(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "writing the log") {
		t.Fatalf("Ack with a broken log: %v", err)
	}
	// Nothing more is accepted: memory and disk may differ now.
	if err := d.Enqueue(context.Background(), item("c")); err == nil {
		t.Fatal("Enqueue on a broken log succeeded")
	}
	if _, err := d.Claim(context.Background(), time.Minute); err == nil {
		t.Fatal("Claim on a broken log succeeded")
	}
}

// TestDiskConcurrentAcksAreDurable runs workers on a real clock and
// checks, after reopening, that exactly the items whose Ack returned are
// gone.
func TestDiskConcurrentAcksAreDurable(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n, workers = 400, 8
	ctx := context.Background()
	for i := range n / 100 {
		var batch []Item
		for j := range 100 {
			batch = append(batch, item(fmt.Sprint(i*100+j)))
		}
		if err := d.Enqueue(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers / 2 {
				c, err := d.Claim(ctx, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if err := d.Ack(ctx, c); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[c.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	d.Close()
	d, err = OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if s := d.Stats(); s.Ready != n-len(acked) || len(acked) != n/2 {
		t.Fatalf("%d ready after reopening, %d acked of %d", s.Ready, len(acked), n)
	}
	for range n - len(acked) {
		c, err := d.Claim(ctx, time.Minute)
		if err != nil || acked[c.ID] {
			t.Fatalf("claimed %s (acked before: %v), %v", c.ID, acked[c.ID], err)
		}
		d.Ack(ctx, c)
	}
}

// records decodes a snapshot of q's state.
func snapshotRecords(t *testing.T, q *Memory) []record {
	t.Helper()
	q.lockAll()
	snap := q.snapshotLocked()
	q.unlockAll()
	var rs []record
	readRecords(bytes.NewReader(snap), func(r record) { rs = append(rs, r) })
	return rs
}

// TestDiskCompacts runs a history long enough to compact the log several
// times while in use, and checks that the queue reopens to the same
// state, and that opening compacts a log of mostly done items.
func TestDiskCompacts(t *testing.T) {
	defer func(n int64) { compactMin = n }(compactMin)
	compactMin = 16 << 10
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	d := openDisk(t, dir, clk)
	f := diskFixture(t, d, clk)
	for i := range 2000 {
		it := item(fmt.Sprint(i))
		switch i % 7 {
		case 1:
			it.ID = "" // generated
		case 2:
			it.Key = "k"
		}
		f.enqueue(it)
		c, ok := f.tryClaim(time.Minute) // none while keyed items wait
		if !ok {
			continue
		}
		switch i % 5 {
		case 0, 1:
			f.ack(c)
		case 2:
			f.nack(c, errors.New("retry"))
		case 3:
			f.nack(c, Permanent(errors.New("dead")))
		} // 4: stays claimed
	}
	if d.j.compactions == 0 {
		t.Fatal("the log was never compacted")
	}
	before := snapshotRecords(t, d.Memory)
	d.Close()
	d = openDisk(t, dir, clk)
	after := snapshotRecords(t, d.Memory)
	// The first record is the run's epoch, one more after reopening. The
	// items are the same, and keyed ones in the same order; items of
	// different shards may come back in another order, as a crash would
	// bring them back in the order the log had them.
	if len(before) < 2 || before[0].kind != recEpoch || after[0].at != before[0].at+1 {
		t.Fatalf("epochs %+v before, %+v after", before[0], after[0])
	}
	if b, a := byItem(before[1:]), byItem(after[1:]); !reflect.DeepEqual(b, a) {
		t.Fatalf("state after reopening differs: %d records before, %d after", len(before), len(after))
	}
	if b, a := keyedOrder(before), keyedOrder(after); !slices.Equal(b, a) {
		t.Fatalf("keyed items in order %v before, %v after", b, a)
	}
	// Ack what is left but dead letters; the log shrinks on open.
	deadBefore, _ := d.DeadLetters(context.Background())
	f = diskFixture(t, d, clk)
	clk.Advance(time.Hour)
	for {
		c, ok := f.tryClaim(time.Minute)
		if !ok {
			break
		}
		f.ack(c)
	}
	d.Close()
	st, _ := os.Stat(filepath.Join(dir, logName))
	d = openDisk(t, dir, clk)
	defer d.Close()
	st2, _ := os.Stat(filepath.Join(dir, logName))
	if st.Size() < compactMin || st2.Size() > st.Size()/2 {
		t.Fatalf("log of %d bytes reopened as %d", st.Size(), st2.Size())
	}
	if s := d.Stats(); s.Dead == 0 || s.Dead != len(deadBefore) || s.Depth()+s.InFlight != 0 {
		t.Fatalf("stats after compaction on open: %+v", s)
	}
}

func TestDiskTokensGrowAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	var last uint64
	for run := range 3 {
		d := openDisk(t, dir, clk)
		f := diskFixture(t, d, clk)
		f.enqueue(item(fmt.Sprint(run)))
		c := f.claim(time.Minute)
		if c.Token <= last {
			t.Fatalf("run %d: token %d after %d", run, c.Token, last)
		}
		last = c.Token
		d.Close() // the claim dies with the run
	}
}

// TestDiskBatchIsAllOrNothing cuts the log inside an Enqueue of three
// items, as a kill during its write would: none of the three comes back.
func TestDiskBatchIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	d := openDisk(t, dir, clk)
	diskFixture(t, d, clk).enqueue(item("before"))
	d.Close()
	path := filepath.Join(dir, logName)
	st, _ := os.Stat(path)
	d = openDisk(t, dir, clk)
	diskFixture(t, d, clk).enqueue(item("x"), item("y"), item("z"))
	d.Close()
	st2, _ := os.Stat(path)
	// Keep the reopening's epoch record and the first two of the three
	// records, dropping the last few bytes of the batch.
	if err := os.Truncate(path, st2.Size()-5); err != nil {
		t.Fatal(err)
	}
	d = openDisk(t, dir, clk)
	defer d.Close()
	if s := d.Stats(); s.Ready != 1 || st2.Size() <= st.Size() {
		t.Fatalf("after a torn batch: %+v", s)
	}
}

// byItem groups snapshot records by the item or group they are about.
func byItem(rs []record) map[string][]record {
	m := map[string][]record{}
	for _, r := range rs {
		m[r.id] = append(m[r.id], r)
	}
	return m
}

// keyedOrder lists the IDs of a snapshot's keyed items, in its order.
func keyedOrder(rs []record) []string {
	var ids []string
	for _, r := range rs {
		if r.kind == recEnqueue && r.key != "" {
			ids = append(ids, r.id)
		}
	}
	return ids
}
