package workqueue

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var crashKills = flag.Int("workqueue.kills", 12, "SIGKILLs TestCrash deals its worker process")

const crashChildEnv = "DISTKIT_WORKQUEUE_CRASH_CHILD"

// crashRetry retries quickly so that poison items die within the test.
var crashRetry = Retry{MaxFailures: 3, MaxExpiries: 3, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}

// TestCrash works through a durable queue in a child process that it
// kills with SIGKILL at random moments, restarting it each time, then
// lets it finish. Items named poison-* always fail; flaky-* fail on their
// first attempt. After the last run: every item but the poison ones was
// done at least once and is gone from the queue, the dead letters are
// exactly the poison items, and nothing else is left.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs worker processes")
	}
	dir := t.TempDir()
	qdir, marks := filepath.Join(dir, "queue"), filepath.Join(dir, "done")
	d, err := OpenDisk(qdir, WithRetry(crashRetry))
	if err != nil {
		t.Fatal(err)
	}
	const n, poison = 20000, 25
	var items []Item
	for i := range n {
		id := fmt.Sprint("item-", i)
		switch {
		case i%(n/poison) == 7:
			id = fmt.Sprint("poison-", i)
		case i%10 == 3:
			id = fmt.Sprint("flaky-", i)
		}
		items = append(items, Item{ID: id, Payload: []byte(id), Key: []string{"", "", "", "a", "b"}[i%5]})
	}
	if err := d.Enqueue(context.Background(), items...); err != nil {
		t.Fatal(err)
	}
	d.Close()

	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	kills, runs := 0, 0
	for {
		runs++
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+qdir+string(os.PathListSeparator)+marks)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if kills == *crashKills {
			if err := <-exited; err != nil {
				t.Fatalf("the last run failed: %v", err)
			}
			break
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("run %d failed: %v", runs, err)
			}
			kills = *crashKills // finished before its kill
		case <-time.After(time.Duration(20+r.IntN(150)) * time.Millisecond):
			cmd.Process.Kill() // SIGKILL
			<-exited
			kills++
			continue
		}
		break
	}

	done := map[string]int{}
	f, err := os.Open(marks)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		done[sc.Text()]++
	}
	f.Close()
	d, err = OpenDisk(qdir, WithRetry(crashRetry))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := d.Stats()
	ds, _ := d.DeadLetters(context.Background())
	dead := map[string]bool{}
	for _, l := range ds {
		dead[l.ID] = true
	}
	again := 0
	for _, it := range items {
		isPoison := strings.HasPrefix(it.ID, "poison-")
		switch {
		case isPoison && !dead[it.ID]:
			t.Errorf("%s is not a dead letter", it.ID)
		case !isPoison && dead[it.ID]:
			t.Errorf("%s is a dead letter", it.ID)
		case !isPoison && done[it.ID] == 0:
			t.Errorf("%s was lost: never done", it.ID)
		}
		if done[it.ID] > 1 {
			again++
		}
	}
	if s.Depth()+s.InFlight != 0 || s.Dead != poison {
		t.Errorf("left in the queue: %+v", s)
	}
	t.Logf("%d items (%d poison) through %d runs with %d kills; %d items done twice or more, as work interrupted by a kill is",
		n, poison, runs, kills, again)
}

// crashChild is the worker process: four workers claim, "do" an item by
// appending its ID to the marks file, and ack it, until the queue is
// empty. It exits 0 when done; the parent kills it whenever it likes.
func crashChild(arg string) int {
	qdir, marks, _ := strings.Cut(arg, string(os.PathListSeparator))
	d, err := OpenDisk(qdir, WithRetry(crashRetry))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer d.Close()
	out, err := os.OpenFile(marks, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer out.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var failed error
	fail := func(err error) {
		mu.Lock()
		if failed == nil {
			failed = err
		}
		mu.Unlock()
		cancel()
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, 50*time.Millisecond)
				c, err := d.Claim(cctx, 10*time.Second)
				ccancel()
				if errors.Is(err, context.DeadlineExceeded) {
					if s := d.Stats(); s.Depth()+s.InFlight == 0 {
						cancel() // all done
					}
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				if strings.HasPrefix(c.ID, "poison-") || (strings.HasPrefix(c.ID, "flaky-") && c.Attempt == 1 && c.Failures == 0) {
					if err := d.Nack(ctx, c, errors.New("handler failed")); err != nil {
						fail(err)
					}
					continue
				}
				if _, err := out.WriteString(c.ID + "\n"); err != nil {
					fail(err)
					return
				}
				if err := d.Ack(ctx, c); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed != nil {
		fmt.Fprintln(os.Stderr, "child:", failed)
		return 1
	}
	return 0
}
