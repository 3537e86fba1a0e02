package ambassador

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rv3Backend is a raw HTTP/1.1 backend on 127.0.0.1: for each request it
// reads (body discarded) it calls answer with the request and the
// connection's number (1 for the first accepted), and writes what answer
// returns; a nil answer ends the connection. It also counts connections.
func rv3Backend(t *testing.T, answer func(req *http.Request, conn int, c net.Conn, br *bufio.Reader) []byte) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	addr, _ := tcpServer(t, nil, func(c net.Conn) {
		defer c.Close()
		id := int(n.Add(1))
		br := bufio.NewReader(c)
		for {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			out := answer(req, id, c, br)
			if out == nil {
				return
			}
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
	return addr, &n
}

// Bug: after a 101 Switching Protocols answer to a request that asked for
// no upgrade (h1Transport sends upgrades to http.Transport, so every 101
// it sees is unasked for), the connection goes back to the pool:
// ReadResponse gives a 101 no body (http.NoBody), so h1Body starts at eof
// and Close puts it back. From the 101 on, the backend speaks another
// protocol on that connection, so the next request (maybe another
// client's) is written into the switched stream and gets whatever that
// stream says. http.Transport never reuses a connection after a status
// of 199 or less (readLoop: alive = false when StatusCode <= 199), nor
// after a 101 (bodyWritable). Expected: the second GET on a fresh
// connection, with its own "ok"; observed: it goes over the switched
// connection and gets the tunnel's answer.
func TestReview3SwitchingProtocolsConnReused(t *testing.T) {
	addr, conns := rv3Backend(t, func(req *http.Request, _ int, c net.Conn, br *bufio.Reader) []byte {
		if req.URL.Path != "/switch" {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tunnel\r\n\r\n")
		// Now the other protocol: whatever comes is data, answered in
		// the tunnel's own way.
		buf := make([]byte, 4096)
		n, err := br.Read(buf)
		if err != nil {
			return nil
		}
		_ = n
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ntunnel")
		io.Copy(io.Discard, c)
		return nil
	})
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	// The fix: h1 sends no request that asks for an upgrade (those go
	// to http.Transport), so a 101 is refused and its connection closed.
	resp, err := h1Get(t, tr, context.Background(), "http://"+addr+"/switch")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want errUnaskedSwitch", resp.StatusCode)
	}
	if !errors.Is(err, errUnaskedSwitch) {
		t.Fatalf("error %v, want errUnaskedSwitch", err)
	}
	resp, err = h1Get(t, tr, context.Background(), "http://"+addr+"/other-user")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || conns.Load() != 2 {
		t.Fatalf("the request after a 101 got %q over %d connection(s): the switched connection was reused, want %q on a second connection", b, conns.Load(), "ok")
	}
}

// Bug: the Proxy passes a backend's 101 Switching Protocols to its client
// although the client asked for no upgrade (the Proxy even strips
// Upgrade, so no request it sends asks for one). net/http's server
// writes the 101 as the final status, with no Upgrade header, and then
// goes on reading HTTP requests from the client connection. A front
// proxy in front of the ambassador that trusts the 101 now treats the
// connection as a tunnel and stops inspecting it, while the ambassador
// keeps taking requests from it: the "websocket smuggling" desync, which
// lets a client reach paths the front proxy would refuse. A backend that
// returns a status a user influences (e.g. a URL health check) is enough.
// httputil.ReverseProxy answers such a 101 with 502 ("backend tried to
// switch protocol"). Expected: 502; observed: 101 to the client.
func TestReview3ProxyPassesUnaskedSwitchingProtocols(t *testing.T) {
	addr, _ := rv3Backend(t, func(req *http.Request, _ int, c net.Conn, br *bufio.Reader) []byte {
		if req.URL.Path == "/admin" {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		return nil
	})
	// talk sends a plain GET, and once its answer's head has come, a
	// second request on the same connection (what a front proxy in
	// tunnel mode would pass on without looking), and returns all that
	// came back.
	talk := func(h http.Handler) string {
		c := rv3Front(t, h)
		io.WriteString(c, "GET /status HTTP/1.1\r\nHost: front\r\n\r\n")
		br := bufio.NewReader(c)
		var got strings.Builder
		for {
			line, err := br.ReadString('\n')
			got.WriteString(line)
			if err != nil || line == "\r\n" {
				break
			}
		}
		if !strings.Contains(got.String(), " 101 ") {
			return got.String()
		}
		io.WriteString(c, "GET /admin HTTP/1.1\r\nHost: front\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(time.Second))
		rest, _ := io.ReadAll(br)
		return got.String() + string(rest)
	}
	// The reference: httputil.ReverseProxy.
	ref := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	refTr := defaultTransport()
	defer refTr.CloseIdleConnections()
	ref.Transport = refTr
	ref.ErrorLog = log.New(io.Discard, "", 0)
	if got := talk(ref); !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Fatalf("reference httputil.ReverseProxy answered %q, want 502", got)
	}
	r := routerFor(t, []BackendConfig{{Name: "a", URL: "http://" + addr}})
	if got := talk(r.Proxy()); !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Fatalf("the Proxy answered a plain GET with a 101 and then took the next bytes as a request:\n%q\nwant a 502", got)
	}
}

// Bug: h1Transport writes the whole request body before it reads any of
// the answer (send: req.Write, then ReadResponse). A backend may answer
// before it has read the body, and for a large one it must: net/http's
// server answers (413 here), reads at most 256 KiB more, and closes. The
// write then fails (reset or broken pipe), the answer the backend gave is
// never read, and the Proxy answers 502 instead of 413. Worse, try counts
// the refusal as the backend's failure (Errors, the latency penalty,
// outlier detection, the breaker), so any client can make healthy
// backends look broken by sending large uploads they will refuse.
// http.Transport reads the response while the body is being written
// (separate read and write loops) and returns the 413; httputil's
// ReverseProxy passes it on. Expected: 413, and no error counted;
// observed: 502, and the backend charged with an error.
func TestReview3EarlyAnswerToUploadLost(t *testing.T) {
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			w.WriteHeader(http.StatusRequestEntityTooLarge) // refused unread
			return
		}
		io.Copy(io.Discard, r.Body)
	})
	body := bytes.Repeat([]byte("x"), 32<<20)
	post := func(h http.Handler) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/upload", bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:5555"
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	u, _ := url.Parse(s.URL)
	ref := httputil.NewSingleHostReverseProxy(u)
	refTr := defaultTransport()
	defer refTr.CloseIdleConnections()
	ref.Transport = refTr
	if code := post(ref); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("reference httputil.ReverseProxy answered %d, want 413", code)
	}
	r := newRouter(t, map[string]*httptest.Server{"a": s}, []string{"a"})
	code := post(r.Proxy())
	st := r.Stats()[0]
	if code != http.StatusRequestEntityTooLarge || st.Errors != 0 {
		t.Fatalf("the backend's early 413 came to the client as %d, and the backend was charged %d error(s); want 413 and none", code, st.Errors)
	}
}

// Bug: h1Transport has no idle timer: an idle connection is looked at
// (idle timeout, quiet) only when get pops it, and get pops the most
// recent first. After a burst of N concurrent requests, N connections
// stay open for ever once traffic goes back to one at a time (or stops):
// idleTimeout (IdleConnTimeout, 90 s by default) is never applied to the
// ones below the top of the stack. With MaxIdleConnsPerHost 1024, one
// burst holds up to 1024 descriptors per backend here and in the backend
// (net/http's server keeps idle connections for ever unless IdleTimeout
// or ReadTimeout is set). http.Transport closes each idle connection
// when its IdleConnTimeout passes. Expected: the burst's connections
// closed after the idle timeout; observed: none closed.
func TestReview3IdleConnsNeverReaped(t *testing.T) {
	var closed atomic.Int32
	gate := make(chan struct{})
	var arrived atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			arrived.Add(1)
			<-gate
		}
		io.WriteString(w, "ok")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	s.Start()
	defer s.Close()
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	tr.idleTimeout = 50 * time.Millisecond
	const burst = 4
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			resp, err := h1Get(t, tr, context.Background(), s.URL+"/burst")
			if err == nil {
				io.ReadAll(resp.Body)
				resp.Body.Close()
			}
		})
	}
	for arrived.Load() < burst {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	// Light traffic after the burst, and then none, for six idle timeouts.
	for range 15 {
		resp, err := h1Get(t, tr, context.Background(), s.URL+"/")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond)
	if n := closed.Load(); n < burst-1 {
		t.Fatalf("%d of the burst's %d connections closed, %v after they went idle with an idle timeout of %v; want at least %d closed", n, burst, 300*time.Millisecond, tr.idleTimeout, burst-1)
	}
}

// Bug: SetBackends closes the idle connections to the backends it drops
// ("connections kept to backends that are gone would stay open
// forever"), but a connection in use at that moment is put back into
// the pool when its response ends, under the dropped backend's address,
// which nothing looks up again: it stays open for ever (there is no idle
// timer, see TestReview3IdleConnsNeverReaped). Expected: the connection
// closed once its request ends; observed: it stays open, in t.idle.
func TestReview3PutAfterBackendDropped(t *testing.T) {
	release := make(chan struct{})
	s, closed := closeWatch(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "done")
	})
	other := backend(t, "other", nil)
	r := newRouter(t, map[string]*httptest.Server{"a": s, "b": other}, []string{"a"})
	resp, err := r.Transport().RoundTrip(must(http.NewRequest("GET", "http://svc/", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetBackends([]BackendConfig{{Name: "b", URL: other.URL}}); err != nil {
		t.Fatal(err)
	}
	close(release)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case <-closed:
	case <-time.After(time.Second):
		tr := r.o.transport.(*h1Transport)
		n := tr.idleTo(strings.TrimPrefix(s.URL, "http://"))
		t.Fatalf("the connection to a dropped backend stayed open after its request (%d kept idle for it)", n)
	}
}

// Bug (also in httputil.ReverseProxy, which has the same WriteHeader
// call): a backend status below 100 ("HTTP/1.1 099 x" parses: three
// digits) makes the Proxy's handler panic in w.WriteHeader(99) ("invalid
// WriteHeader code 99"). net/http's server recovers, logs the panic with
// a full stack trace, and drops the client connection: one log stack per
// request a broken or hostile backend answers, and the client gets no
// answer at all where every other bad answer gets a 502. Expected: 502
// (a status outside 100-599, or any 1xx here, is a bad answer);
// observed: an empty reply and a panic.
func TestReview3StatusBelow100Panics(t *testing.T) {
	addr, _ := rv3Backend(t, func(*http.Request, int, net.Conn, *bufio.Reader) []byte {
		return []byte("HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok")
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: "http://" + addr}})
	var panics atomic.Int32
	front := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				panics.Add(1)
				panic(v)
			}
		}()
		r.Proxy().ServeHTTP(w, req)
	})
	c := rv3Front(t, front)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: front\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 502 ") || panics.Load() != 0 {
		t.Fatalf("a backend's status 099 got the client %q, with %d handler panic(s); want a 502 and none", line, panics.Load())
	}
}

// Bug (router.go, backendURL): a backend URL whose path has an escape
// that matters ("/a%2Fb/": one segment "a/b") loses it for every request
// without one of its own: out.RawPath is set only when the request's
// RawPath is, so the joined path is re-escaped from the decoded Path and
// the backend gets /a/b/c, a different resource, two segments deeper.
// (With a RawPath in the request the prefix is kept, so the same backend
// sees its prefix two ways.) httputil's joinURLPath joins the escaped
// paths whenever either has a RawPath. Expected: /a%2Fb/c; observed:
// /a/b/c.
func TestReview3BackendPathEscapeLost(t *testing.T) {
	paths := make(chan string, 1)
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) { paths <- r.URL.EscapedPath() })
	r := routerFor(t, []BackendConfig{{Name: "a", URL: s.URL + "/a%2Fb/"}})
	get(t, r.Proxy(), "/c")
	if p := <-paths; p != "/a%2Fb/c" {
		t.Fatalf("backend saw path %q, want /a%%2Fb/c", p)
	}
}

// Bug (router.go, try): Retry.PerTry is documented as bounding "each
// try's wait for response headers", but try starts its timer before
// RoundTrip, which first writes the whole request body. An upload that
// takes longer than PerTry (a slow client, a large file) is cut with
// ErrTryTimeout although the backend answers as soon as it has the body:
// the client gets 504, and the backend is charged with a failure (Errors,
// the latency penalty, outlier detection, breaker): any client can make
// healthy backends look broken by uploading slowly. Requests with a body
// are not retried by the Proxy, but PerTry still applies to them.
// http.Transport's ResponseHeaderTimeout, the model for such a timeout,
// starts once the request is written. Expected: 200 and no error
// counted; observed: 504 and one error.
func TestReview3PerTryCountsSlowUpload(t *testing.T) {
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "got it")
	})
	r := newRouter(t, map[string]*httptest.Server{"a": s}, []string{"a"},
		WithRetry(Retry{PerTry: 200 * time.Millisecond}))
	rec := rv3SlowUpload(r)
	st := r.Stats()[0]
	if rec.Code != http.StatusOK || st.Errors != 0 {
		t.Fatalf("a 600 ms upload with PerTry 200 ms got %d %q, and the backend was charged %d error(s); want 200 and none", rec.Code, rec.Body.String(), st.Errors)
	}
}

// rv3SlowUpload sends r's Proxy a POST whose body a client takes 600 ms
// to upload.
func rv3SlowUpload(r *Router) *httptest.ResponseRecorder {
	pr, pw := io.Pipe()
	go func() {
		for range 6 {
			if _, err := pw.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	defer pr.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/upload", pr)
	req.RemoteAddr = "127.0.0.1:5555"
	r.Proxy().ServeHTTP(rec, req)
	return rec
}

// rv3Front serves h on 127.0.0.1, its error log quiet, and returns a raw
// connection to it, closed with its server at the end of the test.
func rv3Front(t *testing.T, h http.Handler) net.Conn {
	t.Helper()
	front := httptest.NewUnstartedServer(h)
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.Start()
	t.Cleanup(front.Close)
	c, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}
