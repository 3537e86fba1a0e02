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
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A backend that sends a body with a HEAD answer (or 204/304) leaves bytes
// on the connection; the pooled connection then hands them to the next
// request as its response.
func TestReviewUnreadBytesDesync(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serve := func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "HEAD" { // broken: a body after a HEAD answer
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("HEAD", "http://"+l.Addr().String(), nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, err = h1Get(t, tr, context.Background(), "http://"+l.Addr().String()+"/other-user")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("GET got %q: bytes left on a pooled connection were taken for its answer", b)
	}
}

// A bodiless POST that reached the backend is sent again when no answer
// came, once per idle connection and once more on a fresh one.
func TestReviewReplayNonIdempotent(t *testing.T) {
	var posts atomic.Int32
	s, _ := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			posts.Add(1) // processed; then the backend dies before answering
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	})
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 3 { // three idle connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h1Get(t, tr, context.Background(), s.URL)
			if err == nil {
				io.ReadAll(resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	req, _ := http.NewRequest("POST", s.URL+"/charge", nil)
	tr.RoundTrip(req)
	if n := posts.Load(); n != 1 {
		t.Fatalf("one POST reached the backend %d times", n)
	}
}

// A request with a body on an idle connection the backend has since
// closed (its idle timeout) fails, where http.Transport would notice the
// close while idle.
func TestReviewBodyOnClosedIdleConn(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	s.Config.IdleTimeout = 50 * time.Millisecond
	s.Start()
	defer s.Close()
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	resp, err := h1Get(t, tr, context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	time.Sleep(200 * time.Millisecond)
	req, _ := http.NewRequest("POST", s.URL, strings.NewReader("payload"))
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST after the backend's idle timeout: %v", err)
	}
	resp.Body.Close()
}

// http://[::1]/ is dialed as [[::1]]:80.
func TestReviewIPv6NoPort(t *testing.T) {
	tr := newH1Transport(defaultTransport())
	var got string
	tr.dial = func(_ context.Context, _, addr string) (net.Conn, error) {
		got = addr
		return nil, io.EOF
	}
	h1Get(t, tr, context.Background(), "http://[::1]/")
	if got != "[::1]:80" {
		t.Fatalf("dialed %q", got)
	}
}

// deadlineConn lets the test cancel the request just before send clears
// the header timeout, and wait for the AfterFunc's past deadline.
type deadlineConn struct {
	net.Conn
	cancel func()
	past   chan struct{}
	once   sync.Once
}

func (c *deadlineConn) SetDeadline(d time.Time) error {
	err := c.Conn.SetDeadline(d)
	if d.Equal(aLongTimeAgo) {
		close(c.past)
	}
	return err
}

func (c *deadlineConn) SetReadDeadline(d time.Time) error {
	if d.IsZero() {
		c.once.Do(func() { c.cancel(); <-c.past })
	}
	return c.Conn.SetReadDeadline(d)
}

// A cancel that lands as the headers arrive must not be undone by clearing
// the header timeout (a streaming body then blocked although its context
// had ended).
func TestReviewCancelLostAtHeaders(t *testing.T) {
	s := streamingBackend(t)
	tr := newH1Transport(defaultTransport())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := tr.dial
	tr.dial = func(ctx2 context.Context, n, a string) (net.Conn, error) {
		c, err := base(ctx2, n, a)
		if err != nil {
			return nil, err
		}
		return &deadlineConn{Conn: c, cancel: cancel, past: make(chan struct{})}, nil
	}
	resp, err := h1Get(t, tr, ctx, s.URL)
	if err != nil { // the cancel is seen as the headers come: right
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a request canceled as its headers came: %v", err)
		}
		return
	}
	done := make(chan error, 1)
	go func() { _, err := resp.Body.Read(make([]byte, 1)); done <- err }()
	select {
	case <-done:
	case <-time.After(time.Second):
		resp.Body.Close()
		t.Fatal("a body read blocks after its context was canceled")
	}
	resp.Body.Close()
}

// Close from another goroutine while a Read waits (the usual way to abort
// a read) races on h1Body's fields.
func TestReviewConcurrentClose(t *testing.T) {
	s := streamingBackend(t)
	tr := newH1Transport(defaultTransport())
	resp, err := h1Get(t, tr, context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { resp.Body.Read(make([]byte, 1)); close(done) }()
	time.Sleep(20 * time.Millisecond)
	resp.Body.Close()
	<-done
}

// An inbound request without User-Agent goes out with Go's default.
func TestReviewUserAgent(t *testing.T) {
	ua := make(chan []string, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ua <- r.Header["User-Agent"] }))
	defer s.Close()
	r, _ := New([]BackendConfig{{URL: s.URL}})
	in := httptest.NewRequest("GET", "/", nil)
	in.Header.Del("User-Agent")
	r.Proxy().ServeHTTP(httptest.NewRecorder(), in)
	if got := <-ua; len(got) != 0 {
		t.Fatalf("backend saw User-Agent %q", got)
	}
}

// streamingBackend answers with its headers at once and no more body
// until the test ends.
func streamingBackend(t *testing.T) *httptest.Server {
	release := make(chan struct{})
	s, _ := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	return s
}
