package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// short is how long a test waits to show that something does not happen;
// long bounds a wait for something that must happen.
const (
	short = 50 * time.Millisecond
	long  = 2 * time.Second
)

// connect listens at addr (unless a listener is there already), dials it
// from node from, and returns both ends, closed at cleanup.
func connect(t *testing.T, n *Network, from, addr string) (client, server net.Conn) {
	t.Helper()
	ln, err := n.Listen(addr)
	if err != nil && !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("Listen(%q): %v", addr, err)
	}
	if err == nil {
		t.Cleanup(func() { ln.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), long)
	defer cancel()
	client, err = n.Dial(ctx, from, addr)
	if err != nil {
		t.Fatalf("Dial(%q, %q): %v", from, addr, err)
	}
	t.Cleanup(func() { client.Close() })
	if ln == nil {
		n.mu.Lock()
		ln = n.listeners[addr]
		n.mu.Unlock()
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// write writes s to c or fails the test.
func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("Write(%q): %v", s, err)
	}
}

// readN reads exactly size bytes from c within long.
func readN(t *testing.T, c net.Conn, size int) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(long)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", size, err, buf)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

// expectNothing checks that c has nothing to read for a short while.
func expectNothing(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(short)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	k, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %q, %v; want a deadline error", buf[:k], err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// dialWithin dials with a context that ends after d.
func dialWithin(n *Network, d time.Duration, from, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return n.Dial(ctx, from, addr)
}

// canDial reports whether from can set up a connection to addr within
// short; it closes the connection (and the accepted end, if a listener is
// at addr) at once.
func canDial(t *testing.T, n *Network, from, addr string) bool {
	t.Helper()
	c, err := dialWithin(n, short, from, addr)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Dial(%q, %q) = %v; want success or a timeout", from, addr, err)
		}
		return false
	}
	c.Close()
	return true
}

// await polls cond until it holds, failing the test after long.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(long)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// result is what a Read or Write in another goroutine returned.
type result struct {
	n   int
	err error
}

// readAsync starts a Read of up to size bytes and returns its result
// channel.
func readAsync(c net.Conn, size int) <-chan result {
	ch := make(chan result, 1)
	go func() {
		k, err := c.Read(make([]byte, size))
		ch <- result{k, err}
	}()
	return ch
}

// within waits for a result for up to long.
func within(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(long):
		t.Fatal("blocked call did not return")
		return result{}
	}
}

// stillBlocked checks that no result arrives for a short while.
func stillBlocked(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("call returned %d, %v; want it still blocked", r.n, r.err)
	case <-time.After(short):
	}
}
