package ambassador

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Bug (h1.go sweepIdle/put/closeIdleTo; regression of 02f8efd): the
// sweep now deletes a pool that is empty, though connections in use may
// still point to it (every connection of the address out on a request
// at the sweep: one long request, or a busy backend). closeIdleTo then
// finds no pool for the address and marks nothing gone, and when the
// request ends put sees its pool missing from the map and puts it back,
// live, with the connection in it: a connection to a backend that was
// removed while the request was in flight is kept for reuse, open until
// the next sweep (IdleConnTimeout, 90 s by default), against
// closeIdleTo's promise ("and those in use when their requests end") and
// get's ("if the backend is removed during it, the connection is closed
// after its request, not kept"). The same happens to a connection dialed
// while the sweep drops the pool get just made. Expected: no connection
// kept to the removed address after its request ends, and the backend
// sees its connection closed at once; observed: one kept, still open.
func TestReview6InUseConnKeptAfterSweepDroppedPool(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	a, closed := closeWatch(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "a")
	})
	b := backend(t, "b", nil)
	next := defaultTransport()
	next.IdleConnTimeout = 300 * time.Millisecond // the sweep's period
	tr := newH1Transport(next)
	t.Cleanup(tr.CloseIdleConnections)
	r, err := New([]BackendConfig{{Name: "a", URL: a.URL}}, WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	addr := hostPort(must(url.Parse(a.URL)))

	if code, _, _ := get(t, r.Proxy(), "/"); code != http.StatusOK { // a connection kept: the sweep is armed
		t.Fatalf("GET answered %d", code)
	}
	done := make(chan int, 1)
	go func() {
		code, _, _ := get(t, r.Proxy(), "/slow") // takes the kept connection: the pool is empty
		done <- code
	}()
	<-entered
	// With the fix the sweep keeps a pool whose connection is in use: two
	// sweeps pass, and the pool is still there for closeIdleTo to mark.
	time.Sleep(700 * time.Millisecond)
	tr.mu.Lock()
	kept := tr.pools[addr] != nil
	tr.mu.Unlock()
	if !kept {
		t.Errorf("the sweep dropped a pool whose connection is in use")
	}
	if err := r.SetBackends([]BackendConfig{{Name: "b", URL: b.URL}}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("GET /slow answered %d", code)
	}
	if n := tr.idleTo(addr); n != 0 {
		t.Errorf("after a request in flight at its backend's removal ended, %d connection(s) to the removed address are kept for reuse (the sweep had dropped the in-use pool, so closeIdleTo marked nothing gone and put put the pool back)", n)
	}
	select {
	case <-closed:
	case <-time.After(100 * time.Millisecond): // well before the sweep (300 ms) would close it
		t.Errorf("the connection of a GET in flight at its backend's removal is still open after the GET ended")
	}
}

// Bug (router.go SetBackends / doneBody.Close; 02f8efd): SetBackends
// marks removed every old Backend not carried into the new set as the
// same object, but newBackendSet makes a new Backend for one whose weight
// (or name, or URL path) changed at the same address: nothing was
// removed (no closeIdleTo is run, the address is kept), yet the old
// Backend is marked removed, and every request in flight to it then
// runs next.CloseIdleConnections as it ends, closing every idle
// connection http.Transport keeps, to every backend (uploads, https).
// With requests in flight all the time, a weight change (a routine
// rollout step for WeightedRoundRobin) churns all of next's connections
// once per in-flight request. Expected: after a weight change the next
// upload to the same backend reuses the kept connection (2 connections
// in all: one for the uploads through http.Transport, one for the GET
// through h1); observed: 3, the upload's kept connection was closed.
// Fix: mark removed by address (the addresses not kept, as closeIdleTo
// uses), not by Backend identity.
func TestReview6WeightChangeMarksRemoved(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	a, conns := countConns(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "a")
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: a.URL}})
	post := func() {
		t.Helper()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/upload", strings.NewReader("body"))
		req.RemoteAddr = "127.0.0.1:5555"
		r.Proxy().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("POST answered %d", rec.Code)
		}
	}
	post() // a connection kept in http.Transport's pool
	done := make(chan int, 1)
	go func() {
		code, _, _ := get(t, r.Proxy(), "/slow") // through h1, on a connection of its own
		done <- code
	}()
	<-entered
	if err := r.SetBackends([]BackendConfig{{Name: "a", URL: a.URL, Weight: 2}}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("GET /slow answered %d", code)
	}
	post()
	if n := conns.Load(); n != 2 {
		t.Fatalf("a weight change (same name, same URL) with a request in flight: %d connections to the backend, want 2; the old Backend was marked removed, and its request's end closed http.Transport's idle connections", n)
	}
}

// Bug (h1.go get/sweepIdle/put; same cause as
// TestReview6InUseConnKeptAfterSweepDroppedPool): get takes (makes) the
// address's pool before it dials, so that "if the backend is removed
// during it, the connection is closed after its request, not kept". But
// the sweep drops that pool while it is still empty, during the dial;
// closeIdleTo then finds no pool and marks nothing gone, and put puts the
// pool back with the new connection in it. Expected: nothing kept to an
// address removed while its request's connection was being dialed;
// observed: the connection kept (until the next sweep).
func TestReview6DialingConnKeptAfterSweepDroppedPool(t *testing.T) {
	a := backend(t, "a", nil)
	b := backend(t, "b", nil)
	next := defaultTransport()
	next.IdleConnTimeout = 300 * time.Millisecond
	tr := newH1Transport(next)
	t.Cleanup(tr.CloseIdleConnections)
	aAddr := hostPort(must(url.Parse(a.URL)))
	dialing, dialOK := make(chan struct{}, 1), make(chan struct{})
	dial := tr.dial
	tr.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == aAddr {
			dialing <- struct{}{}
			<-dialOK
		}
		return dial(ctx, network, addr)
	}
	ctx := context.Background()
	read := func(resp *http.Response, err error) {
		if err != nil {
			t.Error(err)
			return
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	read(h1Get(t, tr, ctx, b.URL+"/")) // a connection kept (to b): the sweep is armed
	done := make(chan struct{})
	go func() {
		defer close(done)
		read(h1Get(t, tr, ctx, a.URL+"/")) // get makes a's pool, then dials
	}()
	<-dialing
	// With the fix the sweep keeps the pool a dial holds: two sweeps pass.
	time.Sleep(700 * time.Millisecond)
	tr.closeIdleTo(aAddr) // a's backend removed (what SetBackends does)
	close(dialOK)
	<-done
	if n := tr.idleTo(aAddr); n != 0 {
		t.Fatalf("a connection dialed while its address was removed is kept for reuse (%d idle): the sweep had dropped the pool get took before the dial", n)
	}
}
