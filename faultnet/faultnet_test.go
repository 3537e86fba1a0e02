package faultnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEcho(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("server:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(c, c)
		c.Close() // before reporting, so that the test sees no conn left
		done <- err
	}()

	c, err := n.Dial(context.Background(), "client", "server:7")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		msg := fmt.Sprintf("message %d", i)
		write(t, c, msg)
		if got := readN(t, c, len(msg)); got != msg {
			t.Fatalf("echo = %q, want %q", got, msg)
		}
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("echo server: %v", err)
		}
	case <-time.After(long):
		t.Fatal("echo server did not see EOF")
	}
	if s := n.Stats(); s.Conns != 0 || s.Dials != 1 || s.Delivered == 0 {
		t.Fatalf("Stats = %+v; want 0 conns, 1 dial, some bytes delivered", s)
	}
}

func TestAddrs(t *testing.T) {
	n := New(1)
	client, server := connect(t, n, "client", "server:80")
	for _, tc := range []struct {
		name string
		got  net.Addr
		want string
	}{
		{"client local", client.LocalAddr(), "client:ephemeral-1"},
		{"client remote", client.RemoteAddr(), "server:80"},
		{"server local", server.LocalAddr(), "server:80"},
		{"server remote", server.RemoteAddr(), "client:ephemeral-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got.Network() != "faultnet" || tc.got.String() != tc.want {
				t.Fatalf("addr = %s/%s, want faultnet/%s", tc.got.Network(), tc.got, tc.want)
			}
		})
	}
}

func TestEOFAndClose(t *testing.T) {
	n := New(1)
	client, server := connect(t, n, "client", "server")
	write(t, client, "last words")
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, server, 10); got != "last words" {
		t.Fatalf("read %q before EOF", got)
	}
	for range 2 {
		if k, err := server.Read(make([]byte, 10)); k != 0 || err != io.EOF {
			t.Fatalf("Read after drain = %d, %v; want 0, EOF", k, err)
		}
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write to a closed peer = %v, want EPIPE", err)
	}

	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"read", func() error { _, err := client.Read(make([]byte, 1)); return err }},
		{"write", func() error { _, err := client.Write([]byte("x")); return err }},
		{"close", client.Close},
		{"deadline", func() error { return client.SetDeadline(time.Now()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s on a closed conn = %v, want net.ErrClosed", tc.name, err)
			}
		})
	}
}

func TestEOFWaitsForLatency(t *testing.T) {
	n := New(1)
	client, server := connect(t, n, "client", "server")
	n.SetLatency("client", "server", time.Hour, 0)
	write(t, client, "slow")
	client.Close()
	expectNothing(t, server) // neither the data nor the EOF is due yet
}

func TestCloseWakesBlockedCalls(t *testing.T) {
	n := New(1)
	client, _ := connect(t, n, "client", "server")
	ch := readAsync(client, 1)
	stillBlocked(t, ch)
	client.Close()
	if r := within(t, ch); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("blocked Read after Close = %v, want net.ErrClosed", r.err)
	}
}

func TestRefused(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("gone:1")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	for _, addr := range []string{"nobody", "nobody:80", "gone:1"} {
		t.Run(addr, func(t *testing.T) {
			start := time.Now()
			c, err := n.Dial(context.Background(), "client", addr)
			if !errors.Is(err, ErrRefused) || c != nil {
				t.Fatalf("Dial = %v, %v; want ErrRefused", c, err)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Dial = %v, want it to match ECONNREFUSED", err)
			}
			if d := time.Since(start); d > long {
				t.Fatalf("refusal took %v", d)
			}
		})
	}
	if s := n.Stats(); s.Dials != 3 || s.Refused != 3 {
		t.Fatalf("Stats = %+v, want 3 dials refused", s)
	}
}

func TestListenErrors(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("taken:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a := ln.Addr(); a.Network() != "faultnet" || a.String() != "taken:80" {
		t.Fatalf("Addr = %s/%s", a.Network(), a)
	}
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"", ErrInvalidAddr},
		{":80", ErrInvalidAddr},
		{"taken:80", ErrAddrInUse},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if _, err := n.Listen(tc.addr); !errors.Is(err, tc.want) {
				t.Fatalf("Listen(%q) = %v, want %v", tc.addr, err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ from, addr string }{{"", "taken:80"}, {"client", ""}, {"client", ":80"}} {
		t.Run("dial "+tc.from+" "+tc.addr, func(t *testing.T) {
			if _, err := n.Dial(context.Background(), tc.from, tc.addr); !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("Dial(%q, %q) = %v, want ErrInvalidAddr", tc.from, tc.addr, err)
			}
		})
	}
	// The same node may listen on several ports, and a bare name is an
	// address of its own.
	for _, addr := range []string{"taken:81", "taken"} {
		other, err := n.Listen(addr)
		if err != nil {
			t.Fatalf("Listen(%q): %v", addr, err)
		}
		other.Close()
	}
	ln.Close()
	again, err := n.Listen("taken:80")
	if err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
	again.Close()
}

func TestLatency(t *testing.T) {
	const base, jitter = 40 * time.Millisecond, 20 * time.Millisecond
	n := New(1)
	ln, err := n.Listen("server")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n.SetLatency("client", "server", base, jitter)
	n.SetLatency("server", "client", base, 0)

	start := time.Now()
	client, err := n.Dial(context.Background(), "client", "server")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if d := time.Since(start); d < 2*base {
		t.Fatalf("Dial took %v, want at least one round trip (%v)", d, 2*base)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	start = time.Now()
	write(t, client, "ping")
	readN(t, server, 4)
	if d := time.Since(start); d < base {
		t.Fatalf("bytes arrived after %v, want at least %v", d, base)
	}

	// Each write is due within [base, base+jitter) of when it was written.
	// Inspect the queue rather than time reads, which a busy machine skews.
	p := client.(*conn).out
	for i := range 100 {
		before := time.Now()
		write(t, client, "x")
		after := time.Now()
		p.mu.Lock()
		at := p.chunks[len(p.chunks)-1].at
		p.mu.Unlock()
		if at.Before(before.Add(base)) || !at.Before(after.Add(base+jitter)) {
			t.Fatalf("write %d due %v after it started, want in [%v, %v)", i, at.Sub(before), base, base+jitter)
		}
	}
}

func TestJitterKeepsOrder(t *testing.T) {
	n := New(7)
	n.SetLatency("client", "server", 0, 5*time.Millisecond)
	client, server := connect(t, n, "client", "server")
	var want bytes.Buffer
	for i := range 200 {
		msg := fmt.Sprintf("%03d,", i)
		want.WriteString(msg)
		write(t, client, msg)
	}
	if got := readN(t, server, want.Len()); got != want.String() {
		t.Fatalf("stream reordered:\n got %s\nwant %s", got, want.String())
	}
}

func TestCutOneWay(t *testing.T) {
	n := New(1)
	a, b := connect(t, n, "a", "b")
	n.Cut("a", "b")

	write(t, a, "held-1,")
	write(t, a, "held-2")
	expectNothing(t, b)
	if s := n.Stats(); s.Held != 13 {
		t.Fatalf("Stats.Held = %d, want 13", s.Held)
	}
	write(t, b, "back")
	if got := readN(t, a, 4); got != "back" {
		t.Fatalf("other direction read %q", got)
	}

	// A Read blocked by the cut wakes when it heals.
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 13)
		k, _ := io.ReadFull(b, buf)
		got <- string(buf[:k])
	}()
	select {
	case s := <-got:
		t.Fatalf("read %q through the cut", s)
	case <-time.After(short):
	}
	n.Heal("a", "b")
	select {
	case s := <-got:
		if s != "held-1,held-2" {
			t.Fatalf("after heal read %q, want held-1,held-2", s)
		}
	case <-time.After(long):
		t.Fatal("Read still blocked after heal")
	}
	if s := n.Stats(); s.Held != 0 {
		t.Fatalf("Stats.Held = %d after heal, want 0", s.Held)
	}
}

func TestCutHealDeliversInOrder(t *testing.T) {
	n := New(1)
	a, b := connect(t, n, "a", "b")
	write(t, a, "before,") // arrived before the cut: stays readable
	n.Cut("a", "b")
	write(t, a, "during-1,")
	write(t, a, "during-2")
	if got := readN(t, b, 7); got != "before," {
		t.Fatalf("read %q, want the bytes that arrived before the cut", got)
	}
	expectNothing(t, b)
	n.Heal("a", "b")
	if got := readN(t, b, 17); got != "during-1,during-2" {
		t.Fatalf("after heal read %q", got)
	}
}

func TestDialDuringCut(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("b:1")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n.Cut("b", "a") // one way is enough to stop connection setup both ways

	c, err := dialWithin(n, short, "a", "b:1")
	var ne net.Error
	if c != nil || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial during cut = %v, %v; want a timeout", c, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Dial(ctx, "a", "b:1"); !errors.As(err, &ne) || ne.Timeout() || !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a cancelled ctx = %v; want context.Canceled, not a timeout", err)
	}

	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := dialWithin(n, long, "a", "b:1")
		ch <- dialed{c, err}
	}()
	select {
	case d := <-ch:
		t.Fatalf("Dial returned %v, %v during the cut", d.c, d.err)
	case <-time.After(short):
	}
	n.Heal("b", "a")
	select {
	case d := <-ch:
		if d.err != nil {
			t.Fatalf("Dial after heal: %v", d.err)
		}
		d.c.Close()
	case <-time.After(long):
		t.Fatal("Dial still blocked after heal")
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestPartition(t *testing.T) {
	n := New(1)
	for _, node := range []string{"a", "b", "c", "d"} {
		ln, err := n.Listen(node)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	_, cEnd := connect(t, n, "a", "c") // established before the partition
	n.Partition([]string{"a", "b"}, []string{"c"})
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"a", "b", true}, {"b", "a", true},
		{"a", "c", false}, {"c", "a", false}, {"b", "c", false}, {"c", "b", false},
		{"d", "a", true}, {"c", "d", true}, // d is in no group
	} {
		t.Run(tc.from+"-"+tc.to, func(t *testing.T) {
			if got := canDial(t, n, tc.from, tc.to); got != tc.want {
				t.Fatalf("can dial = %v, want %v", got, tc.want)
			}
		})
	}
	write(t, cEnd, "x")
	if s := n.Stats(); s.Held != 1 {
		t.Fatalf("Held = %d, want the byte across the partition held", s.Held)
	}
	n.HealAll()
	if !canDial(t, n, "c", "a") {
		t.Fatal("c cannot dial a after HealAll")
	}
}

func TestIsolate(t *testing.T) {
	n := New(1)
	for _, node := range []string{"a", "b", "c", "later"} {
		ln, err := n.Listen(node)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	n.Isolate("a")
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"a", "b", false}, {"b", "a", false}, {"a", "later", false}, {"later", "a", false},
		{"b", "c", true}, {"a", "a", true},
	} {
		t.Run(tc.from+"-"+tc.to, func(t *testing.T) {
			if got := canDial(t, n, tc.from, tc.to); got != tc.want {
				t.Fatalf("can dial = %v, want %v", got, tc.want)
			}
		})
	}

	n.Heal("a", "b")
	if canDial(t, n, "a", "b") {
		t.Fatal("a dialled b with only one direction healed")
	}
	n.Heal("b", "a")
	if !canDial(t, n, "a", "b") || canDial(t, n, "a", "c") {
		t.Fatal("healing a↔b should reconnect a and b only")
	}
	n.Isolate("a") // again: undoes the heals
	if canDial(t, n, "a", "b") {
		t.Fatal("a dialled b after a second Isolate")
	}
	n.HealAll()
	if !canDial(t, n, "a", "c") {
		t.Fatal("a cannot dial c after HealAll")
	}
}

func TestDropRate(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("server")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, p := range []float64{-0.1, 1.1, math.NaN(), math.Inf(1)} {
		if err := n.SetDropRate("client", "server", p); !errors.Is(err, ErrInvalidRate) {
			t.Fatalf("SetDropRate(%v) = %v, want ErrInvalidRate", p, err)
		}
	}
	for _, tc := range []struct {
		p           float64
		wantRefused int
	}{{1, 50}, {0, 0}} {
		t.Run(fmt.Sprint(tc.p), func(t *testing.T) {
			if err := n.SetDropRate("client", "server", tc.p); err != nil {
				t.Fatal(err)
			}
			refused := 0
			for range 50 {
				c, err := n.Dial(context.Background(), "client", "server")
				if errors.Is(err, ErrRefused) {
					refused++
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				s, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
			}
			if refused != tc.wantRefused {
				t.Fatalf("refused %d of 50, want %d", refused, tc.wantRefused)
			}
		})
	}
	// The rate applies to one direction only.
	if err := n.SetDropRate("client", "server", 1); err != nil {
		t.Fatal(err)
	}
	if !canDial(t, n, "other", "server") {
		t.Fatal("a drop rate for client affected other")
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// dropSequence dials 200 times at drop rate 0.5 on a fresh network and
// returns which dials were refused, as a string of '1's and '0's.
func dropSequence(t *testing.T, seed uint64) string {
	t.Helper()
	n := New(seed)
	ln, err := n.Listen("server")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n.SetLatency("server", "client", 0, time.Microsecond) // jitter draws from the same source
	if err := n.SetDropRate("client", "server", 0.5); err != nil {
		t.Fatal(err)
	}
	var seq strings.Builder
	for range 200 {
		c, err := n.Dial(context.Background(), "client", "server")
		if errors.Is(err, ErrRefused) {
			seq.WriteByte('1')
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		seq.WriteByte('0')
		c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	return seq.String()
}

func TestDropRateIsSeeded(t *testing.T) {
	first, second, other := dropSequence(t, 42), dropSequence(t, 42), dropSequence(t, 43)
	if first != second {
		t.Fatalf("same seed, different drops:\n%s\n%s", first, second)
	}
	if first == other {
		t.Fatalf("seeds 42 and 43 made the same 200 drop decisions: %s", first)
	}
	if ones := strings.Count(first, "1"); ones < 60 || ones > 140 {
		t.Fatalf("refused %d of 200 at p=0.5: %s", ones, first)
	}
}

func TestReset(t *testing.T) {
	n := New(1)
	a, b := connect(t, n, "a", "b")
	other, otherPeer := connect(t, n, "a", "c")
	write(t, a, "discarded")
	ch := readAsync(a, 1) // blocked when the reset comes
	stillBlocked(t, ch)

	if got := n.Reset("b", "a"); got != 1 {
		t.Fatalf("Reset = %d, want 1", got)
	}
	checkReset := func(what string, err error) {
		t.Helper()
		var ne net.Error
		if !errors.Is(err, ErrReset) || !errors.As(err, &ne) || ne.Timeout() || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s = %v; want ErrReset, a net.Error that is no timeout", what, err)
		}
	}
	checkReset("blocked Read", within(t, ch).err)
	_, err := b.Read(make([]byte, 16))
	checkReset("peer Read with data pending", err)
	_, err = a.Write([]byte("x"))
	checkReset("Write", err)
	_, err = b.Write([]byte("x"))
	checkReset("peer Write", err)
	if err := a.Close(); err != nil {
		t.Fatalf("Close after reset: %v", err)
	}

	write(t, other, "unaffected")
	if got := readN(t, otherPeer, 10); got != "unaffected" {
		t.Fatalf("other conn read %q", got)
	}
	if got := n.Reset("a", "b"); got != 0 {
		t.Fatalf("second Reset = %d, want 0", got)
	}
	if s := n.Stats(); s.Resets != 1 || s.Conns != 1 {
		t.Fatalf("Stats = %+v, want 1 reset and 1 live conn", s)
	}
}

func TestCrash(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("db:5432")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := n.Listen("db:9000")
	if err != nil {
		t.Fatal(err)
	}
	keep, err := n.Listen("web:80")
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	c1, _ := connect(t, n, "app", "db:5432")
	c2, _ := connect(t, n, "app", "db:5432")
	out, _ := connect(t, n, "db", "web:80")
	c3, _ := connect(t, n, "app", "web:80")
	accepting := make(chan error, 1)
	go func() { _, err := admin.Accept(); accepting <- err }()

	if got := n.Crash("db"); got != 3 {
		t.Fatalf("Crash = %d, want 3", got)
	}
	for name, l := range map[string]net.Listener{"db:5432": ln, "db:9000": admin} {
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept on crashed %s = %v, want net.ErrClosed", name, err)
		}
	}
	select {
	case err := <-accepting:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Accept = %v, want net.ErrClosed", err)
		}
	case <-time.After(long):
		t.Fatal("blocked Accept did not return")
	}
	for name, c := range map[string]net.Conn{"c1": c1, "c2": c2, "out": out} {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrReset) {
			t.Fatalf("%s Read = %v, want ErrReset", name, err)
		}
	}
	write(t, c3, "alive")
	if _, err := dialWithin(n, long, "app", "db:5432"); !errors.Is(err, ErrRefused) {
		t.Fatalf("Dial to crashed node = %v, want ErrRefused", err)
	}

	restarted, err := n.Listen("db:5432") // the node comes back
	if err != nil {
		t.Fatalf("Listen after Crash: %v", err)
	}
	defer restarted.Close()
	c, s := connect(t, n, "app", "db:5432")
	write(t, c, "hi")
	if got := readN(t, s, 2); got != "hi" {
		t.Fatalf("after restart read %q", got)
	}
}

func TestListenerCloseResetsPending(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("server")
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.Dial(context.Background(), "client", "server")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrReset) {
		t.Fatalf("Read on a never-accepted conn = %v, want ErrReset", err)
	}
	if s := n.Stats(); s.Conns != 0 || s.Resets != 1 {
		t.Fatalf("Stats = %+v, want 0 conns, 1 reset", s)
	}
}

// isTimeout fails the test unless err is a deadline timeout, as net.Conn
// and net.PacketConn report them.
func isTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a deadline timeout", err)
	}
}

func TestDeadlines(t *testing.T) {
	t.Run("past", func(t *testing.T) {
		c, s := connect(t, New(1), "client", "server")
		write(t, c, "ready")
		if err := s.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		_, err := s.Read(make([]byte, 5))
		isTimeout(t, err)
		if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		_, err = c.Write([]byte("x"))
		isTimeout(t, err)
		if err := s.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, s, 5); got != "ready" {
			t.Fatalf("after clearing the deadline read %q", got)
		}
	})
	t.Run("read", func(t *testing.T) {
		_, s := connect(t, New(1), "client", "server")
		if err := s.SetReadDeadline(time.Now().Add(short)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := s.Read(make([]byte, 1))
		isTimeout(t, err)
		if d := time.Since(start); d < short {
			t.Fatalf("Read timed out after %v, before its deadline %v", d, short)
		}
	})
	t.Run("shortened while blocked", func(t *testing.T) {
		_, s := connect(t, New(1), "client", "server")
		ch := readAsync(s, 1)
		stillBlocked(t, ch)
		if err := s.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		isTimeout(t, within(t, ch).err)
	})
	t.Run("extended while blocked", func(t *testing.T) {
		c, s := connect(t, New(1), "client", "server")
		if err := s.SetReadDeadline(time.Now().Add(short)); err != nil {
			t.Fatal(err)
		}
		ch := readAsync(s, 1)
		if err := s.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		stillBlocked(t, ch) // past the first deadline
		write(t, c, "x")
		if r := within(t, ch); r.err != nil || r.n != 1 {
			t.Fatalf("Read = %d, %v, want 1 byte", r.n, r.err)
		}
	})
	t.Run("write under back-pressure", func(t *testing.T) {
		c, s := connect(t, New(1), "client", "server")
		if err := c.SetWriteDeadline(time.Now().Add(short)); err != nil {
			t.Fatal(err)
		}
		k, err := c.Write(make([]byte, MaxBuffered+10))
		isTimeout(t, err)
		if k != MaxBuffered {
			t.Fatalf("Write wrote %d before timing out, want %d", k, MaxBuffered)
		}

		// A blocked Write resumes when the reader drains the direction.
		if err := c.SetWriteDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		ch := make(chan result, 1)
		go func() {
			k, err := c.Write([]byte("tail"))
			ch <- result{n: k, err: err}
		}()
		stillBlocked(t, ch)
		readN(t, s, 1000)
		if r := within(t, ch); r.err != nil || r.n != 4 {
			t.Fatalf("Write after drain = %d, %v", r.n, r.err)
		}

		// And a write deadline set while blocked ends it.
		go func() {
			k, err := c.Write(make([]byte, 2000))
			ch <- result{n: k, err: err}
		}()
		stillBlocked(t, ch)
		if err := c.SetWriteDeadline(time.Now()); err != nil {
			t.Fatal(err)
		}
		r := within(t, ch)
		isTimeout(t, r.err)
		if r.n != 1000-4 {
			t.Fatalf("timed-out Write wrote %d, want the %d that fit", r.n, 1000-4)
		}
	})
}

func TestBlockedWriteEndsOnPeerClose(t *testing.T) {
	c, s := connect(t, New(1), "client", "server")
	if _, err := c.Write(make([]byte, MaxBuffered)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan result, 1)
	go func() {
		k, err := c.Write([]byte("more"))
		ch <- result{n: k, err: err}
	}()
	stillBlocked(t, ch)
	s.Close()
	if r := within(t, ch); !errors.Is(r.err, syscall.EPIPE) {
		t.Fatalf("blocked Write after peer Close = %v, want EPIPE", r.err)
	}
}

func TestDialer(t *testing.T) {
	n := New(1)
	ln, err := n.Listen("api:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := n.Dialer("web")
	c, err := dial(context.Background(), "tcp", "api:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().String(); !strings.HasPrefix(got, "web:") {
		t.Fatalf("accepted conn from %q, want node web", got)
	}
}

func FuzzNodeOf(f *testing.F) {
	for _, s := range []string{"", "a", "a:1", ":1", "[::1]:80", "a:b:c", "[x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		node, err := nodeOf(addr)
		if (err == nil) == (node == "") {
			t.Fatalf("nodeOf(%q) = %q, %v", addr, node, err)
		}
		if err == nil && !strings.Contains(addr, node) {
			t.Fatalf("nodeOf(%q) = %q, not part of the address", addr, node)
		}
	})
}
