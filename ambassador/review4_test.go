package ambassador

import (
	"bufio"
	"bytes"
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

// Bug (regression of 07f0c4c; router.go SetBackends / h1.go closeIdleTo):
// requests with a body now go through h1Transport.next, an
// http.Transport, whose idle pool closeIdleTo never reaches. SetBackends
// says "connections kept to backends that are gone would stay open
// forever" and closes them for bodyless requests (TestSetBackendsClosesIdle),
// but the connection a POST used stays open in http.Transport's pool for
// IdleConnTimeout (90 s by default) after its backend is dropped; before
// the change h1 carried the POST and closed it at once. Expected: the
// connection closed soon after SetBackends drops the backend, as for a
// GET; observed: still open.
func TestReview4SetBackendsLeavesUploadConnOpen(t *testing.T) {
	s, closed := closeWatch(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	other := backend(t, "other", nil)
	r := newRouter(t, map[string]*httptest.Server{"a": s, "b": other}, []string{"a"})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/upload", strings.NewReader("some body"))
	req.RemoteAddr = "127.0.0.1:5555"
	r.Proxy().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST answered %d", rec.Code)
	}
	if err := r.SetBackends([]BackendConfig{{Name: "b", URL: other.URL}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the idle connection a POST used to a dropped backend stayed open (in http.Transport's pool, which closeIdleTo does not reach)")
	}
}

// Bug (h1.go get, closeIdleTo): get looks the address's pool up only
// after its dial returns, and makes a new one if there is none. When
// SetBackends drops the backend while a dial to it is under way,
// closeIdleTo marks the old pool gone and deletes it, and the dial then
// makes a fresh, live pool for the dropped address: the connection goes
// back there when its request ends and stays open for IdleConnTimeout
// (90 s by default), against closeIdleTo's "and those in use when their
// requests end", which is what the gone flag was added for (and the
// fresh pool stays in t.pools for good). Expected: the connection closed
// once its request ends; observed: kept idle for the dropped backend.
// (The same happens to a request that picked the backend just before
// SetBackends stored the new set and reaches get just after closeIdleTo.)
// Fix: look up (or make) the pool before dialing, so that a removal
// during the dial marks the pool this connection goes back to; for the
// wider window, keep the gone pool in t.pools as a tombstone that only
// SetBackends re-adding the address clears.
func TestReview4DialDuringRemovalKeepsConn(t *testing.T) {
	s, closed := closeWatch(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	other := backend(t, "other", nil)
	tr := newH1Transport(defaultTransport())
	t.Cleanup(tr.CloseIdleConnections)
	dialing, release := make(chan struct{}), make(chan struct{})
	dial := tr.dial
	var first atomic.Bool
	tr.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if first.CompareAndSwap(false, true) {
			close(dialing)
			<-release
		}
		return dial(ctx, network, addr)
	}
	r, err := New([]BackendConfig{{Name: "a", URL: s.URL}}, WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	done := make(chan error, 1)
	go func() {
		resp, err := r.Transport().RoundTrip(must(http.NewRequest("GET", "http://svc/", nil)))
		if err == nil {
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	<-dialing
	if err := r.SetBackends([]BackendConfig{{Name: "b", URL: other.URL}}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(time.Second):
		t.Fatalf("the connection dialed while its backend was dropped stayed open after its request (%d kept idle for the dropped address)",
			tr.idleTo(strings.TrimPrefix(s.URL, "http://")))
	}
}

// Bug (regression of 07f0c4c; options.go defaultTransport): requests with
// a body now go through http.Transport, which, with DisableCompression
// false, adds "Accept-Encoding: gzip" to a request that has none and
// then gunzips the answer itself, dropping Content-Encoding and
// Content-Length. So the Proxy changes what the backend sees (a header
// the client never sent) and what the client gets (an uncompressed,
// unframed body, decompressed on the proxy's CPU) for uploads only: a
// GET goes through h1, which sends the client's headers as they are.
// Expected: the backend sees no Accept-Encoding for a POST, as for a
// GET; observed: "gzip". Fix: DisableCompression: true in
// defaultTransport (a proxy passes Accept-Encoding through untouched).
func TestReview4ProxyAsksGzipForUploads(t *testing.T) {
	seen := make(chan []string, 2)
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen <- r.Header["Accept-Encoding"]
		io.WriteString(w, "ok")
	})
	r := newRouter(t, map[string]*httptest.Server{"a": s}, []string{"a"})
	get(t, r.Proxy(), "/")
	if ae := <-seen; ae != nil {
		t.Fatalf("a GET without Accept-Encoding reached the backend with %q", ae)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/", strings.NewReader("body"))
	req.RemoteAddr = "127.0.0.1:5555"
	r.Proxy().ServeHTTP(rec, req)
	if ae := <-seen; ae != nil {
		t.Fatalf("a POST without Accept-Encoding reached the backend with Accept-Encoding %q, which the proxy added (and would gunzip the answer itself); a GET gets none", ae)
	}
}

// Bug (left by the change; router.go try): validStatus now lets a 101
// through to a request that asked for an upgrade with Connection:
// upgrade, and h1 sends such requests to http.Transport, which gives a
// 101's Body as an io.ReadWriteCloser, the only way to use the switched
// connection (http.Response: "If the response is a 101 Switching
// Protocols, Body ... implements io.Writer"). But try wraps every body in
// a doneBody, whose embedded io.ReadCloser hides the Write: a client of
// Router.Transport gets the 101 and cannot send a byte on the upgraded
// connection. Expected: the 101's body writable (echoed back here);
// observed: a *doneBody without Write. Fix: for a 101, wrap in a type
// that also forwards Write when the body has one.
func TestReview4UpgradeBodyNotWritable(t *testing.T) {
	addr, _ := rv3Backend(t, func(req *http.Request, _ int, c net.Conn, br *bufio.Reader) []byte {
		if req.Header.Get("Upgrade") == "" {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		line, err := br.ReadString('\n')
		if err == nil {
			io.WriteString(c, line)
		}
		return nil
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: "http://" + addr}})
	req := must(http.NewRequest("GET", "http://svc/", nil))
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := r.Transport().RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("the 101's body is a %T, not an io.ReadWriteCloser: the upgraded connection cannot be written", resp.Body)
	}
	io.WriteString(rw, "hello\n")
	got, _ := bufio.NewReader(rw).ReadString('\n')
	if got != "hello\n" {
		t.Fatalf("echo %q, want %q", got, "hello\n")
	}
}

// Bug (regression of 07f0c4c; router.go try, the tryTimer): for a request
// with a body, Retry.PerTry now starts at httptrace's WroteRequest. When
// the backend stops reading (a hung process: the kernel accepts and
// buffers a few MB, then the write blocks), the body is never all sent,
// so PerTry never starts; http.Transport's ResponseHeaderTimeout starts
// after the write too, and nothing bounds the write: the try hangs until
// the request's own deadline, if it has one, and the backend is never
// charged. Here the client's body is all there (in memory): the time is
// the backend's, not a slow client's, which is what PerTry's doc gives as
// the reason to start late. Before the change PerTry bounded it.
// Expected: ErrTryTimeout about PerTry (200 ms) after the start;
// observed: the request's 3 s deadline. Fix: count PerTry from the start
// but pause it while the transport waits on the client's body (a
// wrapping Body that stops the clock during Read), or start it at the
// latest when the client body has been read to EOF.
func TestReview4PerTryNeverStartsWhenBackendStopsReading(t *testing.T) {
	stop := make(chan struct{})
	addr, _ := tcpServer(t, nil, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		<-stop // hung: reads no more, answers nothing
	})
	t.Cleanup(func() { close(stop) })
	r := routerFor(t, []BackendConfig{{Name: "a", URL: "http://" + addr}},
		WithRetry(Retry{PerTry: 200 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	body := bytes.Repeat([]byte("x"), 64<<20)
	req := must(http.NewRequestWithContext(ctx, "POST", "http://svc/upload", bytes.NewReader(body)))
	start := time.Now()
	resp, err := r.Transport().RoundTrip(req)
	took := time.Since(start)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d", resp.StatusCode)
	}
	if !errors.Is(err, ErrTryTimeout) || took > 2*time.Second {
		t.Fatalf("a try to a backend that stopped reading an in-memory body ended after %v with %v; want ErrTryTimeout about PerTry (200ms) after its start", took.Round(time.Millisecond), err)
	}
}

// Was a doc bug (options.go WithTransport): the doc said the default
// transport takes "at most five 1xx answers before the real one", but
// 07f0c4c replaced that count with a byte limit over all the heads. The
// doc is mended; six small 102s before a 200 are taken.
func TestReview4DocFiveInformational(t *testing.T) {
	addr, _ := rv3Backend(t, func(*http.Request, int, net.Conn, *bufio.Reader) []byte {
		return []byte(strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	r, err := New([]BackendConfig{{Name: "a", URL: "http://" + addr}}) // the default transport
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The doc now says what the code does: 1xx answers are bounded by
	// bytes, with the head after them, not by count; six small ones pass.
	resp, err := r.Transport().RoundTrip(must(http.NewRequest("GET", "http://svc/", nil)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("six 102s then a 200: got %d %q", resp.StatusCode, b)
	}
}

// Bug (left by the change; router.go try): the change starts PerTry for a
// request with a body once the body is sent, since "a slow client's
// upload is not the backend's time", but try still measures the
// backend's latency (peak-EWMA, which jumps up to a slow sample at once,
// and which PeakEWMA routes by) from the try's start: one slow upload
// makes a backend that answers at once look as slow as the upload, and
// steers traffic away from it. Expected: the backend's latency about the
// time it took to answer after the body (~0 here); observed: ~600 ms.
// Fix: for a request with a body, measure rtt from WroteRequest too.
func TestReview4SlowUploadCountsAsBackendLatency(t *testing.T) {
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "got it")
	})
	r := newRouter(t, map[string]*httptest.Server{"a": s}, []string{"a"})
	rec := rv3SlowUpload(r)
	if rec.Code != http.StatusOK {
		t.Fatalf("answered %d", rec.Code)
	}
	if l := r.Stats()[0].Latency; l > 200*time.Millisecond {
		t.Fatalf("a backend that answered as soon as a 600 ms upload ended has latency %v: the client's upload counted as the backend's time", l)
	}
}

// Bug (router.go backendURL, against its doc "so that a %2F in either
// stays one"): the decoded and escaped paths are trimmed apart: a
// backend path ending in an escaped slash ("/a%2F": one segment "a/")
// loses its last "/" from Path (TrimSuffix of the decoded "/a/") but not
// from RawPath ("/a%2F" has no literal "/" to trim), so Path "/a/c" and
// RawPath "/a%2F/c" disagree, url.URL.EscapedPath drops RawPath, and the
// backend gets /a/c: the %2F is lost. httputil's joinURLPath decides on
// the escaped paths and keeps it. Expected: /a%2F/c; observed: /a/c.
// Fix: decide the slashes on the escaped paths and build Path from them
// (or Path = unescape(RawPath)).
func TestReview4BackendPathTrailingEscapedSlashLost(t *testing.T) {
	paths := make(chan string, 1)
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) { paths <- r.URL.EscapedPath() })
	r := routerFor(t, []BackendConfig{{Name: "a", URL: s.URL + "/a%2F"}})
	get(t, r.Proxy(), "/c")
	if p := <-paths; p != "/a%2F/c" {
		t.Fatalf("backend saw path %q, want /a%%2F/c", p)
	}
}
