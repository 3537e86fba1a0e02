package faultnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

// newMemberlistTransport returns a transport at addr, shut down at
// cleanup.
func newMemberlistTransport(t *testing.T, n *Network, addr string) *MemberlistTransport {
	t.Helper()
	tr, err := n.MemberlistTransport(addr)
	if err != nil {
		t.Fatalf("MemberlistTransport(%q): %v", addr, err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

// shutdownWithin runs tr.Shutdown and fails the test if it takes longer
// than long.
func shutdownWithin(t *testing.T, tr *MemberlistTransport) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(long):
		t.Fatal("Shutdown blocked")
	}
}

func TestMemberlistTransportAddrs(t *testing.T) {
	n := New(1)
	for _, tc := range []struct{ addr, why string }{
		{"node:7946", "not a literal"},
		{"127.0.0.1", "not IP:port"},
		{"", "not IP:port"},
		{"127.0.0.1:0", "not in 1–65535"},
		{"127.0.0.1:65536", "not in 1–65535"},
		{"127.0.0.1:http", "not in 1–65535"},
		{"0.0.0.0:7946", "not a literal, specified IP"},
		{"127.0.0.1:07946", `use "127.0.0.1:7946"`},
		{"[::ffff:127.0.0.1]:7946", `use "127.0.0.1:7946"`},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			_, err := n.MemberlistTransport(tc.addr)
			if !errors.Is(err, ErrInvalidAddr) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("MemberlistTransport(%q) = %v, want ErrInvalidAddr saying %q", tc.addr, err, tc.why)
			}
		})
	}

	tr := newMemberlistTransport(t, n, "127.0.0.7:7946")
	if _, err := n.MemberlistTransport("127.0.0.7:7946"); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second transport at one address = %v, want ErrAddrInUse", err)
	}
	if s := n.Stats(); s.PacketConns != 1 {
		t.Fatalf("Stats = %+v, want the failed transport to leave nothing open", s)
	}
	v6 := newMemberlistTransport(t, n, "[::1]:7946")
	if ip, port, err := v6.FinalAdvertiseAddr("", 7946); err != nil || !ip.Equal(net.IPv6loopback) || port != 7946 {
		t.Fatalf("IPv6 FinalAdvertiseAddr = %v, %d, %v", ip, port, err)
	}

	for _, tc := range []struct {
		ip      string
		port    int
		wantErr bool
	}{
		{"", 7946, false},
		{"", 1234, false}, // memberlist passes its default port when nothing is configured
		{"127.0.0.7", 7946, false},
		{"::ffff:127.0.0.7", 7946, false},
		{"127.0.0.8", 7946, true},
		{"127.0.0.7", 7947, true},
		{"localhost", 7946, true},
	} {
		t.Run(fmt.Sprintf("advertise %s %d", tc.ip, tc.port), func(t *testing.T) {
			ip, port, err := tr.FinalAdvertiseAddr(tc.ip, tc.port)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidAddr) || !strings.Contains(err.Error(), "127.0.0.7:7946") {
					t.Fatalf("FinalAdvertiseAddr = %v, %d, %v; want an error naming the transport's address", ip, port, err)
				}
				return
			}
			if err != nil || ip.String() != "127.0.0.7" || len(ip) != net.IPv4len || port != 7946 {
				t.Fatalf("FinalAdvertiseAddr = %v, %d, %v; want 127.0.0.7, 7946", ip, port, err)
			}
		})
	}
}

func TestMemberlistTransportCarries(t *testing.T) {
	n := New(1)
	t1 := newMemberlistTransport(t, n, "127.0.0.1:7946")
	t2 := newMemberlistTransport(t, n, "127.0.0.2:7946")

	sent, err := t1.WriteToAddress([]byte("ping"), memberlist.Address{Addr: "127.0.0.2:7946", Name: "two"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-t2.PacketCh():
		if string(p.Buf) != "ping" || p.From.String() != "127.0.0.1:7946" || p.Timestamp.Before(sent.Add(-time.Second)) {
			t.Fatalf("packet %q from %v at %v", p.Buf, p.From, p.Timestamp)
		}
	case <-time.After(long):
		t.Fatal("no packet")
	}

	c, err := t1.DialAddressTimeout(memberlist.Address{Addr: "127.0.0.2:7946", Name: "two"}, long)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-t2.StreamCh():
		defer s.Close()
	case <-time.After(long):
		t.Fatal("no stream")
	}
	write(t, c, "push")
	if got := readN(t, s, 4); got != "push" {
		t.Fatalf("stream carried %q", got)
	}

	// A cut loses packets and makes dials time out.
	n.CutBoth("127.0.0.1", "127.0.0.2")
	if _, err := t1.WriteTo([]byte("lost"), "127.0.0.2:7946"); err != nil {
		t.Fatalf("WriteTo into a cut = %v, want no error", err)
	}
	if _, err := t1.DialTimeout("127.0.0.2:7946", short); err == nil {
		t.Fatal("DialTimeout through a cut succeeded")
	} else if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("DialTimeout through a cut = %v, want a timeout", err)
	}
	n.HealAll()
	select {
	case p := <-t2.PacketCh():
		t.Fatalf("received %q sent during the cut", p.Buf)
	case <-time.After(short):
	}
}

// TestMemberlistTransportShutdown shows that Shutdown returns while its
// goroutines hold a packet and a connection nobody takes, that it can be
// called again and concurrently, and that the transport is closed after.
func TestMemberlistTransportShutdown(t *testing.T) {
	n := New(1)
	t1 := newMemberlistTransport(t, n, "127.0.0.1:7946")
	t2 := newMemberlistTransport(t, n, "127.0.0.2:7946")
	if _, err := t1.WriteTo([]byte("never read"), "127.0.0.2:7946"); err != nil {
		t.Fatal(err)
	}
	c, err := t1.DialTimeout("127.0.0.2:7946", long)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	await(t, "t2 to take the packet and the conn", func() bool {
		t2.ln.mu.Lock()
		accepted := len(t2.ln.queue) == 0
		t2.ln.mu.Unlock()
		return accepted && n.Stats().DatagramsDelivered == 1
	})

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { shutdownWithin(t, t2) })
	}
	wg.Wait()
	// The conn was accepted but never handed to memberlist: the transport
	// closed it.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read on a conn the transport dropped = %v, want EOF", err)
	}
	if _, err := t2.WriteTo([]byte("x"), "127.0.0.1:7946"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Shutdown = %v, want net.ErrClosed", err)
	}
	if _, err := t2.DialTimeout("127.0.0.1:7946", long); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("DialTimeout after Shutdown = %v, want net.ErrClosed", err)
	}
	again := newMemberlistTransport(t, n, "127.0.0.2:7946") // the address is free
	shutdownWithin(t, again)

	// A crash ends the goroutines too; Shutdown afterwards still returns.
	n.Crash("127.0.0.1")
	if _, err := t1.DialTimeout("127.0.0.2:7946", long); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("DialTimeout from a crashed node = %v, want net.ErrClosed", err)
	}
	shutdownWithin(t, t1)
	if s := n.Stats(); s.PacketConns != 0 {
		t.Fatalf("Stats = %+v, want no packet conns open", s)
	}
}

// logRing keeps the last lines memberlist logged, to show when a test
// fails. Writes after the test ends are harmless, unlike t.Log.
type logRing struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) == 400 {
		r.lines = slices.Delete(r.lines, 0, 100)
	}
	r.lines = append(r.lines, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (r *logRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// cluster is memberlist members on a Network, member i named "m<i>" at
// "127.0.0.<i+1>:7946".
type cluster struct {
	n       *Network
	members []*memberlist.Memberlist
	log     logRing
}

// memberNode returns the node and the address of member i.
func memberNode(i int) (node, addr string) {
	node = fmt.Sprintf("127.0.0.%d", i+1)
	return node, node + ":7946"
}

// startCluster starts size members, each with its own transport, and
// makes them all join member 0.
func startCluster(t *testing.T, n *Network, size int) *cluster {
	t.Helper()
	c := &cluster{n: n}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("memberlist log (last lines):\n%s", c.log.String())
		}
	})
	for i := range size {
		_, addr := memberNode(i)
		tr := newMemberlistTransport(t, n, addr)
		conf := memberlist.DefaultLocalConfig()
		conf.Name = fmt.Sprint("m", i)
		conf.Transport = tr
		conf.LogOutput = &c.log
		// Fast failure detection: a missed probe is suspected after 50ms,
		// and a suspicion turns into death after 200ms to 1.2s.
		conf.ProbeInterval = 100 * time.Millisecond
		conf.ProbeTimeout = 50 * time.Millisecond
		conf.SuspicionMult = 2
		conf.GossipInterval = 20 * time.Millisecond
		// Frequent anti-entropy. Without it a member that missed the few
		// retransmissions of a suspicion about itself (with SuspicionMult
		// 2 nobody confirms, and a suspicion lasts 200ms) is declared dead
		// without knowing, and stays dead to the others until the next
		// push/pull, 15s away by default.
		conf.PushPullInterval = 250 * time.Millisecond
		m, err := memberlist.Create(conf)
		if err != nil {
			t.Fatalf("memberlist.Create(%s): %v", conf.Name, err)
		}
		t.Cleanup(func() { m.Shutdown() })
		c.members = append(c.members, m)
	}
	_, seed := memberNode(0)
	for _, m := range c.members[1:] {
		if _, err := m.Join([]string{seed}); err != nil {
			t.Fatalf("%s joins %s: %v", m.LocalNode().Name, seed, err)
		}
	}
	return c
}

// sees returns the names of the members m considers alive or suspect
// (not dead), sorted.
func sees(m *memberlist.Memberlist) []string {
	var names []string
	for _, node := range m.Members() {
		names = append(names, node.Name)
	}
	slices.Sort(names)
	return names
}

// awaitViews polls until every member i for which want returns non-nil
// sees exactly want(i), failing the test after timeout.
func (c *cluster) awaitViews(t *testing.T, what string, timeout time.Duration, want func(i int) []string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var wrong []string
		for i, m := range c.members {
			if w := want(i); w != nil {
				if got := sees(m); !slices.Equal(got, w) {
					wrong = append(wrong, fmt.Sprintf("m%d sees %v, want %v", i, got, w))
				}
			}
		}
		if len(wrong) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v:\n%s", what, timeout, strings.Join(wrong, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemberlistCluster runs five memberlist members over the network:
// they converge; an isolated member is declared dead by the others and
// declares them dead in turn; after the heal, one Join from the isolated
// member reunites the cluster; and Shutdown leaves no goroutine behind.
//
// The Join is needed. Dead members are neither probed nor picked for
// push/pull, so once the broadcasts about the deaths have all been sent
// (into the cut), both sides stay apart after the heal: when we delayed
// the heal by a second, the cluster was still split 3s after it. A heal
// right after the deaths, as here, may reunite them by itself through the
// broadcasts still queued (memberlist gossips to members dead for less
// than GossipToTheDeadTime); the Join is then harmless.
func TestMemberlistCluster(t *testing.T) {
	const size, isolated = 5, 2
	const bound = 10 * time.Second
	ignore := goleak.IgnoreCurrent()
	n := New(1)
	c := startCluster(t, n, size)
	all := make([]string, size)
	for i := range size {
		all[i] = fmt.Sprint("m", i)
	}
	rest := slices.Delete(slices.Clone(all), isolated, isolated+1)
	self := []string{all[isolated]}

	d := c.awaitViews(t, "all members to see each other", bound, func(int) []string { return all })
	t.Logf("converged in %v", d)

	node, addr := memberNode(isolated)
	n.Isolate(node)
	d = c.awaitViews(t, "the isolated member and the others to declare each other dead", bound, func(i int) []string {
		if i == isolated {
			return self
		}
		return rest
	})
	t.Logf("isolated member and the rest declared each other dead in %v", d)

	n.HealAll()
	_, seed := memberNode(0)
	if _, err := c.members[isolated].Join([]string{seed}); err != nil {
		t.Fatalf("rejoin after heal: %v", err)
	}
	d = c.awaitViews(t, "all members to see each other after the heal", bound, func(int) []string { return all })
	t.Logf("reunited %v after %s joined %s", d, addr, seed)

	for _, m := range c.members {
		if err := m.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	// memberlist's connection handlers outlive Shutdown until their I/O
	// deadline; crashing the nodes resets their connections so that they
	// end now.
	for i := range size {
		node, _ := memberNode(i)
		n.Crash(node)
	}
	deadline := time.Now().Add(bound)
	for err := goleak.Find(ignore); err != nil; err = goleak.Find(ignore) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Shutdown: %v", err)
		}
	}
	if s := n.Stats(); s.Conns != 0 || s.PacketConns != 0 {
		t.Fatalf("Stats = %+v, want nothing left open", s)
	}
	t.Logf("%+v", n.Stats())
}

func FuzzParseIPPort(f *testing.F) {
	for _, s := range []string{"127.0.0.1:7946", "[::1]:7946", "[::ffff:1.2.3.4]:1", "a:1", "1.2.3.4:0", ":1", "[fe80::1%eth0]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		ip, port, err := parseIPPort(addr)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("parseIPPort(%q) = %v, want ErrInvalidAddr", addr, err)
			}
			return
		}
		if port < 1 || port > 65535 || net.JoinHostPort(ip.String(), fmt.Sprint(port)) != addr {
			t.Fatalf("parseIPPort(%q) = %v, %d", addr, ip, port)
		}
	})
}
