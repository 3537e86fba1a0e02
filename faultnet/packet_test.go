package faultnet

import (
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenPacket opens a packet conn at addr, closed at cleanup.
func listenPacket(t *testing.T, n *Network, addr string) net.PacketConn {
	t.Helper()
	pc, err := n.ListenPacket(addr)
	if err != nil {
		t.Fatalf("ListenPacket(%q): %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// send sends s from pc to addr or fails the test; WriteTo succeeds
// whether or not the datagram arrives.
func send(t *testing.T, pc net.PacketConn, addr, s string) {
	t.Helper()
	if k, err := pc.WriteTo([]byte(s), Addr(addr)); k != len(s) || err != nil {
		t.Fatalf("WriteTo(%q, %q) = %d, %v", s, addr, k, err)
	}
}

// receive reads one datagram from pc within long and returns it and its
// sender.
func receive(t *testing.T, pc net.PacketConn) (string, net.Addr) {
	t.Helper()
	if err := pc.SetReadDeadline(time.Now().Add(long)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	k, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if err := pc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	return string(buf[:k]), from
}

// expectNoDatagram checks that pc receives nothing for a short while.
func expectNoDatagram(t *testing.T, pc net.PacketConn) {
	t.Helper()
	if err := pc.SetReadDeadline(time.Now().Add(short)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	k, from, err := pc.ReadFrom(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom = %q from %v, %v; want a deadline error", buf[:k], from, err)
	}
	if err := pc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// readFromAsync starts a ReadFrom and returns its result channel.
func readFromAsync(pc net.PacketConn) <-chan result {
	ch := make(chan result, 1)
	go func() {
		k, _, err := pc.ReadFrom(make([]byte, 64))
		ch <- result{k, err}
	}()
	return ch
}

func TestDatagrams(t *testing.T) {
	n := New(1)
	a := listenPacket(t, n, "a:53")
	b := listenPacket(t, n, "b:53")
	udp := listenPacket(t, n, "127.0.0.1:53")

	send(t, a, "b:53", "hello")
	if got, from := receive(t, b); got != "hello" || from.Network() != "faultnet" || from.String() != "a:53" {
		t.Fatalf("received %q from %s/%s, want hello from faultnet/a:53", got, from.Network(), from)
	}
	if la := a.LocalAddr(); la.Network() != "faultnet" || la.String() != "a:53" {
		t.Fatalf("LocalAddr = %s/%s", la.Network(), la)
	}

	// Any net.Addr whose String is a packet address will do.
	if _, err := b.WriteTo([]byte("to udp"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}); err != nil {
		t.Fatal(err)
	}
	if got, from := receive(t, udp); got != "to udp" || from.String() != "b:53" {
		t.Fatalf("received %q from %s", got, from)
	}

	// Datagrams keep their boundaries; a short buffer truncates one.
	send(t, a, "b:53", "0123456789")
	send(t, a, "b:53", "")
	send(t, a, "b:53", "next")
	buf := make([]byte, 4)
	for _, want := range []string{"0123", "", "next"} {
		k, _, err := b.ReadFrom(buf)
		if err != nil || string(buf[:k]) != want {
			t.Fatalf("ReadFrom = %q, %v; want %q", buf[:k], err, want)
		}
	}

	// A stream listener and a packet conn can share an address.
	ln, err := n.Listen("b:53")
	if err != nil {
		t.Fatalf("Listen on a packet conn's address: %v", err)
	}
	ln.Close()

	if s := n.Stats(); s.DatagramsSent != 5 || s.DatagramsDelivered != 5 || s.DatagramsDropped != 0 || s.DatagramsQueued != 0 || s.PacketConns != 3 {
		t.Fatalf("Stats = %+v; want 5 datagrams sent and delivered, 3 packet conns", s)
	}
}

func TestDatagramLatency(t *testing.T) {
	const base, jitter = 40 * time.Millisecond, 20 * time.Millisecond
	n := New(1)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	n.SetLatency("a", "b", base, jitter)

	start := time.Now()
	send(t, a, "b", "ping")
	receive(t, b)
	if d := time.Since(start); d < base {
		t.Fatalf("datagram arrived after %v, want at least %v", d, base)
	}

	// Each datagram is due within [base, base+jitter) of when it was sent.
	// Inspect the queue rather than time reads, which a busy machine skews.
	q := b.(*packetConn)
	for i := range 100 {
		msg := strconv.Itoa(i)
		before := time.Now()
		send(t, a, "b", msg)
		after := time.Now()
		q.mu.Lock()
		var at time.Time
		for _, d := range q.queue {
			if string(d.data) == msg {
				at = d.at
			}
		}
		ordered := slices.IsSortedFunc(q.queue, func(x, y datagram) int { return x.at.Compare(y.at) })
		q.mu.Unlock()
		if at.Before(before.Add(base)) || !at.Before(after.Add(base+jitter)) {
			t.Fatalf("datagram %d due %v after it was sent, want in [%v, %v)", i, at.Sub(before), base, base+jitter)
		}
		if !ordered {
			t.Fatalf("queue not ordered by delivery time after datagram %d", i)
		}
	}
}

// TestDatagramJitterReorders shows that, unlike a stream, datagrams may
// overtake each other under jitter, and that without faults every one
// arrives exactly once.
func TestDatagramJitterReorders(t *testing.T) {
	const count = 200
	n := New(7)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	n.SetLatency("a", "b", 0, 5*time.Millisecond)
	for i := range count {
		send(t, a, "b", strconv.Itoa(i))
	}
	seen := make(map[int]bool)
	reordered := false
	last := -1
	for range count {
		s, _ := receive(t, b)
		i, err := strconv.Atoi(s)
		if err != nil || seen[i] {
			t.Fatalf("received %q twice or corrupted", s)
		}
		seen[i] = true
		reordered = reordered || i < last
		last = i
	}
	if !reordered {
		t.Fatal("200 datagrams under 5ms of jitter arrived in order; want some reordered")
	}
	if s := n.Stats(); s.DatagramsDelivered != count || s.DatagramsDropped != 0 {
		t.Fatalf("Stats = %+v, want all %d delivered", s, count)
	}
}

func TestDatagramCutDrops(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(n *Network)
	}{
		{"cut", func(n *Network) { n.Cut("a", "b") }},
		{"partition", func(n *Network) { n.Partition([]string{"a"}, []string{"b", "c"}) }},
		{"isolate sender", func(n *Network) { n.Isolate("a") }},
		{"isolate receiver", func(n *Network) { n.Isolate("b") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := New(1)
			a := listenPacket(t, n, "a:1")
			b := listenPacket(t, n, "b:1")
			send(t, a, "b:1", "before") // arrived before the fault: stays readable
			tc.fault(n)
			send(t, a, "b:1", "during-1")
			send(t, a, "b:1", "during-2")
			if got, _ := receive(t, b); got != "before" {
				t.Fatalf("received %q, want the datagram sent before the fault", got)
			}
			expectNoDatagram(t, b)
			n.HealAll()
			expectNoDatagram(t, b) // lost, not held
			send(t, a, "b:1", "after")
			if got, _ := receive(t, b); got != "after" {
				t.Fatalf("after heal received %q", got)
			}
			if s := n.Stats(); s.DatagramsSent != 4 || s.DatagramsDropped != 2 || s.DatagramsDelivered != 2 {
				t.Fatalf("Stats = %+v, want 4 sent, 2 dropped, 2 delivered", s)
			}
		})
	}
}

func TestDatagramOneWayCut(t *testing.T) {
	n := New(1)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	n.Cut("a", "b")
	send(t, a, "b", "lost")
	send(t, b, "a", "back")
	if got, _ := receive(t, a); got != "back" {
		t.Fatalf("the other direction carried %q", got)
	}
	expectNoDatagram(t, b)
}

// TestDatagramCutDropsInFlight shows that a cut also loses the datagrams
// already on their way, as a cut cable would.
func TestDatagramCutDropsInFlight(t *testing.T) {
	n := New(1)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	c := listenPacket(t, n, "c")
	n.SetLatency("a", "b", time.Hour, 0)
	send(t, a, "b", "in flight")
	send(t, c, "b", "unaffected") // no latency: arrived
	if s := n.Stats(); s.DatagramsQueued != 2 {
		t.Fatalf("Stats = %+v, want 2 queued", s)
	}
	n.Cut("a", "b")
	if s := n.Stats(); s.DatagramsQueued != 1 || s.DatagramsDropped != 1 {
		t.Fatalf("Stats = %+v, want the datagram in flight dropped by the cut", s)
	}
	if got, _ := receive(t, b); got != "unaffected" {
		t.Fatalf("received %q", got)
	}
	n.HealAll()
	expectNoDatagram(t, b)
}

// dropPattern sends 400 datagrams at drop rate 0.5 on a fresh network and
// returns which arrived, as a string of '1's (arrived) and '0's.
func dropPattern(t *testing.T, seed uint64) string {
	t.Helper()
	const count = 400
	n := New(seed)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	if err := n.SetDropRate("a", "b", 0.5); err != nil {
		t.Fatal(err)
	}
	for i := range count {
		send(t, a, "b", strconv.Itoa(i))
	}
	s := n.Stats()
	if s.DatagramsSent != count || s.DatagramsDropped+uint64(s.DatagramsQueued) != count {
		t.Fatalf("Stats = %+v, want every datagram dropped or queued", s)
	}
	arrived := make([]byte, count)
	for i := range arrived {
		arrived[i] = '0'
	}
	for range s.DatagramsQueued {
		got, _ := receive(t, b)
		i, err := strconv.Atoi(got)
		if err != nil {
			t.Fatalf("received %q", got)
		}
		arrived[i] = '1'
	}
	return string(arrived)
}

func TestDatagramDropRate(t *testing.T) {
	first, second, other := dropPattern(t, 42), dropPattern(t, 42), dropPattern(t, 43)
	if first != second {
		t.Fatalf("same seed, different drops:\n%s\n%s", first, second)
	}
	if first == other {
		t.Fatalf("seeds 42 and 43 dropped the same datagrams: %s", first)
	}
	if ones := strings.Count(first, "1"); ones < 140 || ones > 260 {
		t.Fatalf("%d of 400 arrived at p=0.5: %s", ones, first)
	}

	// The rate applies to one direction only, and 1 drops everything.
	n := New(1)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	if err := n.SetDropRate("a", "b", 1); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		send(t, a, "b", "x")
		send(t, b, "a", "y")
	}
	if s := n.Stats(); s.DatagramsDropped != 10 || s.DatagramsQueued != 10 {
		t.Fatalf("Stats = %+v, want a→b dropped and b→a queued", s)
	}
}

func TestDatagramClosed(t *testing.T) {
	n := New(1)
	a := listenPacket(t, n, "a")
	b, err := n.ListenPacket("b")
	if err != nil {
		t.Fatal(err)
	}
	send(t, a, "b", "unread")
	blocked := readFromAsync(a)
	stillBlocked(t, blocked)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if r := within(t, blocked); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("blocked ReadFrom after Close = %v, want net.ErrClosed", r.err)
	}
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"read", func() error { _, _, err := a.ReadFrom(make([]byte, 1)); return err }},
		{"write", func() error { _, err := a.WriteTo([]byte("x"), Addr("b")); return err }},
		{"close", a.Close},
		{"deadline", func() error { return a.SetDeadline(time.Now()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s on a closed packet conn = %v, want net.ErrClosed", tc.name, err)
			}
		})
	}

	// Unread datagrams die with the receiver; later ones go nowhere.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c := listenPacket(t, n, "c")
	send(t, c, "b", "to nobody")
	send(t, c, "nobody:1", "to nobody")
	if s := n.Stats(); s.DatagramsSent != 3 || s.DatagramsDropped != 3 || s.PacketConns != 1 {
		t.Fatalf("Stats = %+v, want 3 sent and dropped, 1 packet conn", s)
	}

	// The address is free again.
	again := listenPacket(t, n, "b")
	send(t, c, "b", "hi")
	if got, _ := receive(t, again); got != "hi" {
		t.Fatalf("received %q", got)
	}
}

func TestDatagramDeadlines(t *testing.T) {
	t.Run("past", func(t *testing.T) {
		n := New(1)
		a := listenPacket(t, n, "a")
		b := listenPacket(t, n, "b")
		send(t, a, "b", "ready")
		if err := b.SetDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		_, _, err := b.ReadFrom(make([]byte, 8))
		isTimeout(t, err)
		_, err = b.WriteTo([]byte("x"), Addr("a"))
		isTimeout(t, err)
		if err := b.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := receive(t, b); got != "ready" {
			t.Fatalf("after clearing the deadline received %q", got)
		}
		if s := n.Stats(); s.DatagramsSent != 1 {
			t.Fatalf("Stats = %+v, want the timed-out WriteTo not counted", s)
		}
	})
	t.Run("before the datagram is due", func(t *testing.T) {
		n := New(1)
		a := listenPacket(t, n, "a")
		b := listenPacket(t, n, "b")
		n.SetLatency("a", "b", time.Hour, 0)
		send(t, a, "b", "slow")
		if err := b.SetReadDeadline(time.Now().Add(short)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, err := b.ReadFrom(make([]byte, 8))
		isTimeout(t, err)
		if d := time.Since(start); d < short {
			t.Fatalf("ReadFrom timed out after %v, before its deadline %v", d, short)
		}
	})
	t.Run("shortened while blocked", func(t *testing.T) {
		b := listenPacket(t, New(1), "b")
		ch := readFromAsync(b)
		stillBlocked(t, ch)
		if err := b.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		isTimeout(t, within(t, ch).err)
	})
	t.Run("extended while blocked", func(t *testing.T) {
		n := New(1)
		a := listenPacket(t, n, "a")
		b := listenPacket(t, n, "b")
		if err := b.SetReadDeadline(time.Now().Add(short)); err != nil {
			t.Fatal(err)
		}
		ch := readFromAsync(b)
		if err := b.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		stillBlocked(t, ch) // past the first deadline
		send(t, a, "b", "x")
		if r := within(t, ch); r.err != nil || r.n != 1 {
			t.Fatalf("ReadFrom = %d, %v, want 1 byte", r.n, r.err)
		}
	})
}

func TestDatagramCrash(t *testing.T) {
	n := New(1)
	dns := listenPacket(t, n, "db:53")
	gossip := listenPacket(t, n, "db:7946")
	web := listenPacket(t, n, "web:53")
	send(t, web, "db:53", "unread")
	blocked := readFromAsync(gossip)
	stillBlocked(t, blocked)

	n.Crash("db")
	if r := within(t, blocked); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("blocked ReadFrom on a crashed node = %v, want net.ErrClosed", r.err)
	}
	if _, _, err := dns.ReadFrom(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom on a crashed node = %v, want net.ErrClosed", err)
	}
	send(t, web, "db:53", "to a crashed node")
	if s := n.Stats(); s.DatagramsDropped != 2 || s.DatagramsQueued != 0 || s.PacketConns != 1 {
		t.Fatalf("Stats = %+v, want 2 dropped, 1 packet conn left", s)
	}

	restarted := listenPacket(t, n, "db:53") // the node comes back
	send(t, web, "db:53", "hi")
	if got, _ := receive(t, restarted); got != "hi" {
		t.Fatalf("after restart received %q", got)
	}
}

func TestDatagramQueueOverflow(t *testing.T) {
	const extra = 10
	n := New(1)
	a := listenPacket(t, n, "a")
	b := listenPacket(t, n, "b")
	for i := range MaxQueuedDatagrams + extra {
		send(t, a, "b", strconv.Itoa(i))
	}
	if s := n.Stats(); s.DatagramsDropped != extra || s.DatagramsQueued != MaxQueuedDatagrams {
		t.Fatalf("Stats = %+v, want %d dropped and %d queued", s, extra, MaxQueuedDatagrams)
	}
	for i := range MaxQueuedDatagrams { // the first ones, in order
		if got, _ := receive(t, b); got != strconv.Itoa(i) {
			t.Fatalf("datagram %d is %q", i, got)
		}
	}
	send(t, a, "b", "room again")
	if got, _ := receive(t, b); got != "room again" {
		t.Fatalf("received %q", got)
	}
}

func TestListenPacketErrors(t *testing.T) {
	n := New(1)
	pc := listenPacket(t, n, "taken:53")
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"", ErrInvalidAddr},
		{":53", ErrInvalidAddr},
		{"taken:53", ErrAddrInUse},
	} {
		t.Run("listen "+tc.addr, func(t *testing.T) {
			if _, err := n.ListenPacket(tc.addr); !errors.Is(err, tc.want) {
				t.Fatalf("ListenPacket(%q) = %v, want %v", tc.addr, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		addr net.Addr
	}{
		{"nil", nil},
		{"empty", Addr("")},
		{"no host", Addr(":53")},
		{"udp no host", &net.UDPAddr{Port: 53}},
	} {
		t.Run("write to "+tc.name, func(t *testing.T) {
			if k, err := pc.WriteTo([]byte("x"), tc.addr); k != 0 || !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("WriteTo(%v) = %d, %v; want ErrInvalidAddr", tc.addr, k, err)
			}
		})
	}
	if s := n.Stats(); s.DatagramsSent != 0 {
		t.Fatalf("Stats = %+v, want rejected writes not counted", s)
	}
}
