package ambassador

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpServer is a TCP backend on 127.0.0.1 (over TLS with tlsConfig, if
// given) that runs handle on each connection it accepts, in a goroutine
// of its own, and then reports the connection on the returned channel
// (if there is room). handle owns the connection. It stops at the end of
// the test, waiting for every handle.
func tcpServer(t *testing.T, tlsConfig *tls.Config, handle func(c net.Conn)) (string, <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	accepted := make(chan struct{}, 100)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				handle(c)
				select {
				case accepted <- struct{}{}:
				default:
				}
			})
		}
	})
	return l.Addr().String(), accepted
}

// echoServer is a TCP backend on 127.0.0.1 that answers each connection
// with its name, then echoes what it reads and, at the client's end of
// stream, writes "bye" and closes. It stops at the end of the test.
func echoServer(t *testing.T, name string, tlsConfig *tls.Config) string {
	t.Helper()
	addr, _ := tcpServer(t, tlsConfig, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, name+"\n")
		io.Copy(c, c)
		io.WriteString(c, "bye")
	})
	return addr
}

// serve runs f on a listener on 127.0.0.1 (through wrap, if given) and
// closes f at the end of the test.
func serve(t *testing.T, f *Forwarder, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		l = wrap(l)
	}
	done := make(chan error, 1)
	go func() { done <- f.Serve(l) }()
	t.Cleanup(func() {
		f.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve: %v, want ErrClosed", err)
		}
	})
	return l.Addr().String()
}

// talk opens a connection through dial, sends msg, ends its side, and
// returns all it read.
func talk(t *testing.T, dial func() (net.Conn, error), msg string) string {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	b, _ := io.ReadAll(c) // a dropped connection may end in a reset: what was read tells
	return string(b)
}

func tcpDial(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", addr) }
}

// Connections are balanced over the backends, bytes go both ways with
// half-closes passed on, and a backend that refuses is passed over.
func TestForwarderBalances(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{
		{Name: "a", Addr: echoServer(t, "a", nil)}, {Name: "b", Addr: echoServer(t, "b", nil)}, {Name: "dead", Addr: deadAddr},
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, nil)
	got := map[string]int{}
	for i := range 40 {
		out := talk(t, tcpDial(addr), "ping")
		name, rest, _ := strings.Cut(out, "\n")
		if rest != "pingbye" {
			t.Fatalf("connection %d read %q", i, out)
		}
		got[name]++
	}
	st := f.Stats()
	if got["a"]+got["b"] != 40 || got["a"] < 10 || got["b"] < 10 || st[2].Errors == 0 || st[2].Open != 0 {
		t.Fatalf("spread %v; stats %+v", got, st)
	}
	if st[0].BytesIn != uint64(4*got["a"]) || st[0].BytesOut != uint64(9*got["a"]) {
		t.Fatalf("a's bytes %+v after %d connections", st[0], got["a"])
	}
}

// With a key function and a locator, each connection goes to its key's
// backend, and the bytes the key function read are forwarded too.
func TestForwarderShards(t *testing.T) {
	key := func(r *bufio.Reader) (string, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		k, ok := strings.CutPrefix(strings.TrimSpace(line), "KEY ")
		if !ok {
			return "", errors.New("no KEY line")
		}
		return k, nil
	}
	f, err := NewForwarder(ForwarderConfig{
		Backends: []TCPBackend{{Name: "a", Addr: echoServer(t, "a", nil)}, {Name: "b", Addr: echoServer(t, "b", nil)}},
		Key:      key, Locator: mapLocator{"k1": "a", "k2": "b", "k3": "nowhere"}, KeyTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, nil)
	for _, c := range []struct{ send, want string }{
		{"KEY k1\nrest", "a\nKEY k1\nrestbye"},
		{"KEY k2\n", "b\nKEY k2\nbye"},
		{"KEY k3\n", ""},                // placed on no backend: dropped
		{"HELLO\n", ""},                 // no key: dropped
		{"KEY k1", ""},                  // the line never ends
		{strings.Repeat("x", 5000), ""}, // longer than MaxKeyBytes
	} {
		if got := talk(t, tcpDial(addr), c.send); got != c.want {
			t.Errorf("sent %.20q: read %q, want %q", c.send, got, c.want)
		}
	}
	// A connection that sends nothing is dropped after KeyTimeout.
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	var ne net.Error
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() || time.Since(start) > 2*time.Second {
		t.Fatalf("silent connection: %d, %v after %v", n, err, time.Since(start))
	}
}

// TLS on both sides: the client talks TLS to the Forwarder, which talks
// TLS to the backend.
func TestForwarderTLS(t *testing.T) {
	certs := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate, made for 127.0.0.1
	certs.Close()
	serverConfig := &tls.Config{Certificates: certs.TLS.Certificates}
	roots := x509.NewCertPool()
	roots.AddCert(certs.Certificate())
	clientConfig := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}

	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: echoServer(t, "secure", serverConfig)}}, TLS: clientConfig})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, func(l net.Listener) net.Listener { return tls.NewListener(l, serverConfig) })
	got := talk(t, func() (net.Conn, error) { return tls.Dial("tcp", addr, clientConfig) }, "hi")
	if got != "secure\nhibye" {
		t.Fatalf("read %q", got)
	}
}

// Close ends Serve and the connections open, both sides.
func TestForwarderClose(t *testing.T) {
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: echoServer(t, "a", nil)}}})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- f.Serve(l) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); line != "a\n" {
		t.Fatalf("read %q", line)
	}
	f.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection is still open after Close")
	}
	if st := f.Stats()[0]; st.Open != 0 || st.Conns != 1 {
		t.Fatalf("stats %+v", st)
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := f.Serve(l2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestForwarderConfig(t *testing.T) {
	key := func(*bufio.Reader) (string, error) { return "", nil }
	for _, c := range []ForwarderConfig{
		{Backends: []TCPBackend{{Addr: "nohost"}}},
		{Backends: []TCPBackend{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:1"}}},
		{Key: key},
		{Locator: mapLocator{}},
		{MaxKeyBytes: 2},
		{DialTimeout: -1},
	} {
		if _, err := NewForwarder(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", c, err)
		}
	}
	f, _ := NewForwarder(ForwarderConfig{})
	if _, _, err := f.dial(""); !errors.Is(err, ErrNoBackends) {
		t.Fatalf("no backends: %v", err)
	}
}

// IdleTimeout closes a connection quiet both ways for that long, and
// leaves one that carries bytes open.
func TestForwarderIdleTimeout(t *testing.T) {
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: echoServer(t, "a", nil)}}, IdleTimeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, nil)
	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if line, _ := br.ReadString('\n'); line != "a\n" {
			t.Fatalf("read %q", line)
		}
		return c, br
	}
	busy, busyR := open()
	quiet, quietR := open()
	start := time.Now()
	for time.Since(start) < 500*time.Millisecond { // busy talks every 50 ms
		io.WriteString(busy, "x\n")
		if line, err := busyR.ReadString('\n'); line != "x\n" {
			t.Fatalf("busy connection after %v: %q, %v", time.Since(start), line, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	quiet.SetDeadline(time.Now().Add(time.Second))
	var ne net.Error
	if _, err := quietR.ReadByte(); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the quiet connection is still open: %v", err)
	}
	if _, err := NewForwarder(ForwarderConfig{IdleTimeout: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("IdleTimeout -1: %v", err)
	}
}
