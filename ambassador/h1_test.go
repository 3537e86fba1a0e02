package ambassador

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countConns starts a backend that counts the connections it accepts.
func countConns(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			n.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &n
}

// idleTo counts the connections kept idle to addr, or to all addresses
// if addr is "".
func (t *h1Transport) idleTo(addr string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for a, p := range t.pools {
		if addr == "" || a == addr {
			n += len(p.idle)
		}
	}
	return n
}

func h1Get(t *testing.T, tr *h1Transport, ctx context.Context, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr.RoundTrip(req)
}

// A connection is reused once a body is read to its end, and not after
// one closed before its end, or one the backend marked Connection: close.
func TestH1Reuse(t *testing.T) {
	s, conns := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, strings.Repeat("x", 100<<10)) // more than one read
	})
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	ctx := context.Background()
	for range 5 {
		resp, err := h1Get(t, tr, ctx, s.URL+"/")
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 100<<10 {
			t.Fatalf("body of %d bytes, %v", len(b), err)
		}
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for five requests read to the end, want 1", n)
	}
	resp, err := h1Get(t, tr, ctx, s.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close() // early: the connection goes
	resp, err = h1Get(t, tr, ctx, s.URL+"/close")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, err = h1Get(t, tr, ctx, s.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3: one new after an early close, one after Connection: close", n)
	}
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("read of a closed body")
	}
}

// An idle connection the backend closed is found out when next used, and
// a request with no body goes again on a fresh one.
func TestH1StaleConnection(t *testing.T) {
	s, conns := countConns(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	ctx := context.Background()
	resp, err := h1Get(t, tr, ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	s.CloseClientConnections() // the backend drops its idle connection
	time.Sleep(20 * time.Millisecond)
	resp, err = h1Get(t, tr, ctx, s.URL)
	if err != nil {
		t.Fatalf("after the backend closed an idle connection: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || conns.Load() != 2 {
		t.Fatalf("body %q over %d connections", b, conns.Load())
	}
}

// A request's context ending stops a wait for its answer at once, and
// the connection is not reused; so does the header timeout.
func TestH1CancelAndTimeout(t *testing.T) {
	release := make(chan struct{})
	s, _ := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := h1Get(t, tr, ctx, s.URL); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request whose context ended: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("it took %v to give up", d)
	}
	tr.headerTimeout = 50 * time.Millisecond
	if _, err := h1Get(t, tr, context.Background(), s.URL); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a request past the header timeout: %v", err)
	}
	if n := tr.idleTo(""); n != 0 {
		t.Fatalf("%d connections kept after failures", n)
	}
}

// 1xx answers before the real one are skipped; HEAD has no body.
func TestH1InformationalAndHead(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "HEAD" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}()
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	resp, err := h1Get(t, tr, context.Background(), "http://"+l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("got %d %q after an Early Hints", resp.StatusCode, b)
	}
	req, _ := http.NewRequest("HEAD", "http://"+l.Addr().String(), nil)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %d, %d bytes, length %d", resp.StatusCode, len(b), resp.ContentLength)
	}
	// Both answers came over the one connection.
	if n := tr.idleTo(l.Addr().String()); n != 1 {
		t.Fatalf("%d idle connections, want the one", n)
	}
}

// A connection idle past the idle timeout is not reused.
func TestH1IdleTimeout(t *testing.T) {
	s, conns := countConns(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	tr.idleTimeout = 30 * time.Millisecond
	for _, wait := range []time.Duration{0, 0, 60 * time.Millisecond} {
		time.Sleep(wait)
		resp, err := h1Get(t, tr, context.Background(), s.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: one reused, one after the idle timeout", n)
	}
}

// SetBackends closes the idle connections to the backends it drops.
func TestSetBackendsClosesIdle(t *testing.T) {
	s, closed := closeWatch(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	other := backend(t, "other", nil)
	r := newRouter(t, map[string]*httptest.Server{"a": s, "b": other}, []string{"a"})
	get(t, r.Proxy(), "/")
	select {
	case <-closed:
		t.Fatal("the connection closed while its backend was kept")
	case <-time.After(20 * time.Millisecond):
	}
	if err := r.SetBackends([]BackendConfig{{Name: "b", URL: other.URL}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection to a dropped backend stayed open")
	}
}

// A response with no body, closed unread, gives its connection back.
func TestH1EmptyBodyReused(t *testing.T) {
	s, conns := countConns(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	for range 3 {
		resp, err := h1Get(t, tr, context.Background(), s.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close() // unread
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for three 204s closed unread, want 1", n)
	}
}
