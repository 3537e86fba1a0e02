package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentFaults runs many echo clients against several servers
// while another goroutine injects random faults. Whatever the faults, a
// client never reads bytes other than a prefix of what it sent, and once
// everything is closed no connection stays registered and no goroutine
// is left (TestMain checks).
func TestConcurrentFaults(t *testing.T) {
	const (
		servers = 4
		clients = 16
		minRun  = 300 * time.Millisecond
		maxRun  = 1500 * time.Millisecond
	)
	n := New(3)
	nodes := make([]string, servers+clients)
	for i := range servers {
		nodes[i] = fmt.Sprint("s", i)
	}
	for i := range clients {
		nodes[servers+i] = fmt.Sprint("c", i)
	}

	var serving sync.WaitGroup
	var listeners []net.Listener
	for i := range servers {
		ln, err := n.Listen(nodes[i] + ":7")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, ln)
		serving.Go(func() {
			var conns sync.WaitGroup
			defer conns.Wait()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Go(func() {
					defer c.Close()
					_, _ = io.Copy(c, c)
				})
			}
		})
	}

	// Clients run until the fault goroutine cancels ctx: after minRun, once
	// every kind of fault has shown its effect, or after maxRun at most.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var completed, cutShort, resets atomic.Int64
	var work sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		from := nodes[servers+i]
		r := rand.New(rand.NewPCG(uint64(i), 1))
		work.Go(func() {
			for ctx.Err() == nil {
				ok, err := echoOnce(ctx, n, from, fmt.Sprint(nodes[r.IntN(servers)], ":7"), r)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", from, err)
					return
				}
				if ok {
					completed.Add(1)
				} else {
					cutShort.Add(1)
				}
			}
		})
	}
	work.Go(func() {
		defer cancel()
		r := rand.New(rand.NewPCG(99, 1))
		// pick returns a client and a server, in random order.
		pick := func() (string, string) {
			c, s := nodes[servers+r.IntN(clients)], nodes[r.IntN(servers)]
			if r.IntN(2) == 0 {
				return c, s
			}
			return s, c
		}
		start := time.Now()
		for {
			elapsed := time.Since(start)
			faulted := resets.Load() > 0 && n.Stats().Refused > 0 && cutShort.Load() > 0 && completed.Load() > 0
			if ctx.Err() != nil || elapsed > maxRun || (elapsed > minRun && faulted) {
				return
			}
			switch r.IntN(10) {
			case 0, 1:
				n.Cut(pick())
			case 2, 3:
				n.Heal(pick())
			case 4:
				n.Partition(nodes[:len(nodes)/2], nodes[len(nodes)/2:])
			case 5:
				n.Isolate(nodes[r.IntN(len(nodes))])
			case 6:
				n.HealAll()
			case 7:
				resets.Add(int64(n.Reset(pick())))
			case 8:
				from, to := pick()
				n.SetLatency(from, to, time.Duration(r.IntN(3))*time.Millisecond, time.Millisecond)
			case 9:
				from, to := pick()
				_ = n.SetDropRate(from, to, r.Float64()/2)
			}
			t := time.NewTimer(time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	})
	work.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	n.HealAll() // let the last FINs through
	for _, ln := range listeners {
		ln.Close()
	}
	finished := make(chan struct{})
	go func() {
		serving.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(long):
		t.Fatal("echo servers did not finish")
	}
	await(t, "all conns to be closed", func() bool { return n.Stats().Conns == 0 })
	s := n.Stats()
	t.Logf("%+v; exchanges completed %d, cut short %d; conns reset %d", s, completed.Load(), cutShort.Load(), resets.Load())
	// The faults must have happened and the traffic flowed despite them.
	if completed.Load() == 0 || cutShort.Load() == 0 || resets.Load() == 0 || s.Refused == 0 {
		t.Fatal("want completed and cut-short exchanges, resets and refusals")
	}
}

// echoOnce dials addr, sends a few messages and checks that whatever comes
// back is a prefix of what was sent. Faults may cut the exchange short
// (then ok is false): that is not an error; corrupted or reordered bytes
// are.
func echoOnce(ctx context.Context, n *Network, from, addr string, r *rand.Rand) (ok bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	c, err := n.Dial(dctx, from, addr)
	if err != nil {
		return false, nil
	}
	defer c.Close()
	var sent, got []byte
	buf := make([]byte, 256)
	for i := range 1 + r.IntN(5) {
		msg := fmt.Appendf(nil, "%s#%d;", from, i)
		_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Write(msg); err != nil {
			return false, nil
		}
		sent = append(sent, msg...)
		for len(got) < len(sent) {
			k, err := c.Read(buf)
			got = append(got, buf[:k]...)
			if len(got) > len(sent) || string(got) != string(sent[:len(got)]) {
				return false, fmt.Errorf("read %q, sent %q", got, sent)
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					return false, errors.New("EOF from an echo server that should still be running")
				}
				return false, nil
			}
		}
	}
	return true, nil
}
