package ambassador

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rv2Certs returns a server config with a certificate for 127.0.0.1 and a
// client config that trusts it.
func rv2Certs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	certs := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	certs.Close()
	roots := x509.NewCertPool()
	roots.AddCert(certs.Certificate())
	return &tls.Config{Certificates: certs.TLS.Certificates}, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

// rv2Hold is a TCP backend on 127.0.0.1 that keeps every connection it
// accepts open, saying nothing, until the end of the test, and reports
// each on the returned channel.
func rv2Hold(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return tcpServer(t, nil, func(c net.Conn) { mu.Lock(); held = append(held, c); mu.Unlock() })
}

func rv2Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Finding: behind a TLS listener, a backend that closes a connection
// without writing anything is never passed on to the client. copyConn
// calls (*tls.Conn).CloseWrite on the client's connection, which returns
// an error (and sends nothing) while the server handshake, run by the
// other copy's Read, is not complete; copyConn ignores the error and does
// not fall back to Close. The client then waits for ever (a
// server-speaks-first protocol hangs), and the connection and its two
// goroutines stay until the client gives up or Forwarder.Close. With a
// plain TCP listener the client sees the end of stream at once.
func TestReview2ForwarderTLSBackendCloseNeverReachesClient(t *testing.T) {
	serverConfig, clientConfig := rv2Certs(t)
	addrB, accepted := tcpServer(t, nil, func(c net.Conn) { c.Close() }) // closes at once, says nothing
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: addrB}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, func(l net.Listener) net.Listener { return tls.NewListener(l, serverConfig) })

	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(raw, clientConfig)
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.Handshake(); err != nil { // the Forwarder now shakes hands before it dials
		t.Fatal(err)
	}
	rv2Wait(t, accepted, "the backend connection")
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the backend closed its connection, but the TLS client saw nothing in 2 s (read %d, %v); Stats %+v", n, err, f.Stats())
	}
}

// rv2Stacks reports whether any goroutine's stack satisfies match.
func rv2Stacks(match func(g string) bool) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if match(g) {
			return true
		}
	}
	return false
}

func rv2StackHas(subs ...string) bool {
	return rv2Stacks(func(g string) bool {
		for _, s := range subs {
			if !strings.Contains(g, s) {
				return false
			}
		}
		return true
	})
}

// Finding: Serve calls f.wg.Add(1) after track has released f.mu, so a
// Close that takes f.mu between the two finds the counter at 0 and
// returns while Serve still holds an accepted connection; forward then
// runs after Close returned (and, without a key, dials a backend). Close
// promises to wait for the connections' goroutines; goleak-checked user
// tests flake on it. The interleaving is forced here through f.mu itself
// (on one P, a starving mutex hands over directly): the test holds f.mu
// while Serve's track and then Close wait for it.
func TestReview2ForwarderCloseRacesServe(t *testing.T) {
	var dialed atomic.Bool
	addrB, _ := tcpServer(t, nil, func(c net.Conn) { dialed.Store(true); c.Close() })
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: addrB}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	go func() { served <- f.Serve(l) }()
	waitFor(t, "Serve in Accept", func() bool { return rv2StackHas("(*Forwarder).Serve", "Accept") })
	f.mu.Lock()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		f.mu.Unlock()
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "Serve's track to wait", func() bool { return rv2StackHas("(*Forwarder).track", "(*Mutex).Lock") })
	closed := make(chan struct{})
	var pending bool
	go func() {
		f.Close()
		// Close has returned: nothing of the Forwarder may run, or be
		// about to, but a Serve in Accept on its closed listener.
		pending = rv2StackHas("(*Forwarder).forward") || rv2Stacks(func(g string) bool {
			return strings.Contains(g, "(*Forwarder).Serve") && !strings.Contains(g, "Accept")
		})
		close(closed)
	}()
	waitFor(t, "Close to wait", func() bool { return rv2StackHas("(*Forwarder).Close", "(*Mutex).Lock") })
	time.Sleep(5 * time.Millisecond) // both have waited over 1 ms
	f.mu.Unlock()
	f.mu.Lock() // track's waiter wakes to find it taken: the mutex starves
	time.Sleep(5 * time.Millisecond)
	f.mu.Unlock() // hands over to track, whose Unlock hands over to Close
	<-closed
	runtime.GOMAXPROCS(prev)
	<-served
	waitFor(t, "forward to end", func() bool { return !rv2StackHas("(*Forwarder).forward") })
	if pending {
		t.Fatalf("Close returned while Serve still had a connection for forward, which ran after it (backend dialed: %v)", dialed.Load())
	}
}

// Finding: behind a TLS listener the backend is dialed before the
// client's handshake (which runs lazily, in the first Read of the copy),
// and with no deadline on the handshake when there is no Key. A client
// that never completes it (no certificate under
// RequireAndVerifyClientCert, or just silent) costs a backend connection
// and two goroutines, for ever if it stays silent.
func TestReview2ForwarderDialsBeforeClientHandshake(t *testing.T) {
	serverConfig, _ := rv2Certs(t)
	serverConfig.ClientAuth = tls.RequireAndVerifyClientCert
	serverConfig.ClientCAs = x509.NewCertPool()
	addrB, accepted := rv2Hold(t)
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: addrB}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, func(l net.Listener) net.Listener { return tls.NewListener(l, serverConfig) })
	c, err := net.Dial("tcp", addr) // no hello, no certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-accepted:
		t.Fatalf("a client that has not shaken hands (nor shown a certificate) got a backend connection; Stats %+v", f.Stats())
	case <-time.After(500 * time.Millisecond):
	}
}

// ptrLocator is a Locator with a pointer receiver, as shard.Table is.
type ptrLocator struct{ m map[string]string }

func (p *ptrLocator) Locate(key string) (string, bool) { n, ok := p.m[key]; return n, ok }

// Finding: a typed nil Locator (a nil *shard.Table, say) passes
// NewForwarder's "Key and Locator go together" check, and the first
// keyed connection calls Locate on it in forward's goroutine: a nil
// pointer dereference that takes the process down (shard.Table.Locate
// dereferences t). a842685 refuses a typed-nil Budget for this reason;
// Sharded has the same gap.
func TestReview2ForwarderTypedNilLocator(t *testing.T) {
	key := func(*bufio.Reader) (string, error) { return "k", nil }
	if _, err := NewForwarder(ForwarderConfig{Key: key, Locator: (*ptrLocator)(nil)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewForwarder with a nil *Locator: %v, want ErrInvalid", err)
	}
	if _, err := Sharded(Header("K"), (*ptrLocator)(nil)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sharded with a nil *Locator: %v, want ErrInvalid", err)
	}
}

// acceptErrListener fails its first Accepts with an error, then accepts.
type acceptErrListener struct {
	net.Listener
	fails atomic.Int32
	err   error
}

func (l *acceptErrListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// Finding: Serve backs off only on errors whose Timeout() is true, but
// running out of file descriptors (EMFILE, ENFILE) is not a timeout: its
// syscall.Errno is Temporary, not Timeout (net/http checks Temporary).
// So the first time the process runs out of descriptors Serve returns
// the error and closes its listener: the Forwarder stops serving for good
// instead of waiting, as its comment says it does.
func TestReview2ForwarderServeGivesUpOnEMFILE(t *testing.T) {
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Name: "a", Addr: echoServer(t, "a", nil)}}})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &acceptErrListener{Listener: inner, err: &net.OpError{Op: "accept", Net: "tcp", Addr: inner.Addr(),
		Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	l.fails.Store(1)
	done := make(chan error, 1)
	go func() { done <- f.Serve(l) }()
	defer func() {
		f.Close()
		<-done
	}()
	select {
	case err := <-done:
		done <- err
		t.Fatalf("Serve returned at the first EMFILE: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if got := talk(t, tcpDial(inner.Addr().String()), "ping"); got != "a\npingbye" {
		t.Fatalf("after an EMFILE: read %q", got)
	}
}

// Finding: Close does not stop dials in progress. dialOne's context is
// context.Background with DialTimeout, so Close waits (f.wg.Wait) for a
// dial or a TLS handshake to a slow backend to time out: up to
// DialTimeout (5 s by default, whatever the user set) after Close was
// called.
func TestReview2ForwarderCloseWaitsForDial(t *testing.T) {
	addrB, accepted := rv2Hold(t) // accepts, but never answers the TLS handshake
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Addr: addrB}},
		TLS: &tls.Config{RootCAs: x509.NewCertPool()}, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Serve(l) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rv2Wait(t, accepted, "the dial to the backend")
	start := time.Now()
	f.Close()
	took := time.Since(start)
	<-done
	if took > time.Second {
		t.Fatalf("Close took %v: it waited for a dial it could have cancelled", took)
	}
}

// Finding: Conns ("connections forwarded") is counted before the dial,
// and a failed dial is not taken back: a backend that refuses every
// connection shows as many Conns as Errors, though it forwarded none
// (and without a key, one client connection may count up to three Conns
// on three backends).
func TestReview2ForwarderStatsCountFailedDials(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Name: "dead", Addr: deadAddr}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, nil)
	if got := talk(t, tcpDial(addr), "x"); got != "" {
		t.Fatalf("read %q through a dead backend", got)
	}
	waitFor(t, "the failed dial", func() bool { return f.Stats()[0].Errors == 1 })
	if st := f.Stats()[0]; st.Conns != 0 {
		t.Fatalf("no connection was forwarded, but Stats say %+v", st)
	}
}

// Finding: BytesIn and BytesOut are added only when a connection ends
// (copyConn returns its total), so Stats show nothing of what long-lived
// connections (database pools, Redis clients) carry while they are open.
func TestReview2ForwarderStatsBytesWhileOpen(t *testing.T) {
	f, err := NewForwarder(ForwarderConfig{Backends: []TCPBackend{{Name: "a", Addr: echoServer(t, "a", nil)}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "ping\n")
	for _, want := range []string{"a\n", "ping\n"} {
		if line, err := br.ReadString('\n'); line != want {
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
	}
	// A chunk is counted just after it is written: the client may read it
	// first.
	deadline := time.Now().Add(2 * time.Second)
	for st := f.Stats()[0]; (st.BytesIn != 5 || st.BytesOut != 7) && time.Now().Before(deadline); st = f.Stats()[0] {
		time.Sleep(time.Millisecond)
	}
	if st := f.Stats()[0]; st.BytesIn != 5 || st.BytesOut != 7 {
		t.Fatalf("5 bytes went in and 7 out of an open connection; Stats say %+v", st)
	}
}

// Regression (a842685): pick gives up with ErrCircuitOpen as soon as the
// policy returns a refused backend that is not in the view ("the policy
// picks outside the view"), although other backends are left. Split
// returns an excluded backend of its arm when all of them are out
// (rotating which one first): with X's breaker open and Y down by health
// checks (breaker closed), every other request to the arm fails with 503
// where before a842685 pick asked the policy again and Y took it.
func TestReview2PickSplitRefusedOutsideView(t *testing.T) {
	x := backend(t, "x", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(500)
		}
	})
	y := backend(t, "y", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "y")
	})
	z := backend(t, "z", nil)
	split, err := Split([]Arm{{Name: "a", Backends: []string{"x", "y"}, Weight: 1}, {Name: "b", Backends: []string{"z"}, Weight: 0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := routerFor(t, []BackendConfig{{Name: "x", URL: x.URL}, {Name: "y", URL: y.URL}, {Name: "z", URL: z.URL}},
		WithPolicy(split),
		WithBreaker(Breaker{MinRequests: 1, FailureRate: 1, OpenFor: time.Minute}),
		WithHealthCheck(HealthCheck{Interval: 20 * time.Millisecond, Unhealthy: 1, Healthy: 1}))
	waitFor(t, "y down", func() bool { return !r.Stats()[1].Healthy })
	// Y is out: the arm sends to X, whose 500 opens its breaker.
	if code, _, _ := get(t, r.Proxy(), "/"); code != 500 {
		t.Fatalf("first request: %d, want x's 500", code)
	}
	if st := r.Stats()[0]; st.Breaker != Open {
		t.Fatalf("x: %+v, want its breaker open", st)
	}
	failed := 0
	for range 6 {
		if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "y" {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 6 requests failed though y (down, but its breaker closed) was left to take them", failed)
	}
}

// Regression (a842685): a retry's backend is now picked (and its breaker
// asked) before the backoff, and sent to after it, without asking again.
// A breaker that opens during the backoff is bypassed: the retry goes to
// a backend whose breaker is open (before a842685 the pick came after
// the wait and the retry was not sent). The same holds for ejections and
// health checks meanwhile, and a half-open probe slot is held through the
// whole backoff (up to Backoff<<8, minutes with Backoff up to 1m).
func TestReview2RetryBypassesBreakerOpenedDuringBackoff(t *testing.T) {
	var rp atomic.Pointer[Router]
	var aHits atomic.Int32
	var bOpenOnArrival atomic.Int32
	a := backend(t, "a", func(w http.ResponseWriter, _ *http.Request) {
		aHits.Add(1)
		w.WriteHeader(502)
	})
	b := backend(t, "b", func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("X-Fail") != "" {
			w.WriteHeader(500) // not retried
			return
		}
		if rp.Load().Stats()[1].Breaker == Open {
			bOpenOnArrival.Add(1)
		}
		io.WriteString(w, "b")
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: a.URL}, {Name: "b", URL: b.URL}},
		WithPolicy(RoundRobin()),
		WithRetry(Retry{Attempts: 2, Backoff: 800 * time.Millisecond}),
		WithBreaker(Breaker{MinRequests: 1, FailureRate: 1, OpenFor: time.Minute}))
	rp.Store(r)
	done := make(chan int, 1)
	go func() {
		code, _, _ := get(t, r.Proxy(), "/")
		done <- code
	}()
	waitFor(t, "a's 502", func() bool { return aHits.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // the retry is picked, and waits out its backoff (400-800 ms)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Fail", "1")
	rec := httptest.NewRecorder()
	r.Proxy().ServeHTTP(rec, req) // b's 500 opens its breaker
	if st := r.Stats()[1]; rec.Code != 500 || st.Breaker != Open {
		t.Fatalf("the failing request: %d; b %+v", rec.Code, st)
	}
	<-done
	if n := bOpenOnArrival.Load(); n > 0 {
		t.Fatalf("%d retry reached b after its breaker had opened", n)
	}
}

// Finding: after Router.Close every request counts as a Dropped copy
// (wait took all the slots for good), though shadowing is off, as Close's
// doc says, and no MaxInFlight copies are out; GetBody is still called
// for each. ShadowStats then say the shadow is overloaded.
func TestReview2ShadowDroppedAfterClose(t *testing.T) {
	sh := backend(t, "shadow", nil)
	s := map[string]*httptest.Server{"a": backend(t, "a", nil)}
	r := newRouter(t, s, []string{"a"}, WithShadow(Shadow{URL: sh.URL}))
	r.Close()
	for range 3 {
		if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "a" {
			t.Fatalf("%d from %q after Close", code, from)
		}
	}
	if st := r.ShadowStats(); st.Dropped != 0 {
		t.Fatalf("after Close, with shadowing off: %+v", st)
	}
}

// Finding: MaxInFlight has no upper bound, and Close takes every slot
// one channel send at a time: Close's time grows with MaxInFlight even
// with no copy out. MaxInFlight: math.MaxInt (the natural "unbounded")
// makes Close run for ever; 1<<24 takes ~0.4 s (~2 s under -race).
func TestReview2ShadowCloseTimeGrowsWithMaxInFlight(t *testing.T) {
	sh := backend(t, "shadow", nil)
	s := map[string]*httptest.Server{"a": backend(t, "a", nil)}
	if _, err := New(nil, WithShadow(Shadow{URL: sh.URL, MaxInFlight: 1 << 24})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("MaxInFlight 1<<24: %v, want ErrInvalid", err)
	}
	r := newRouter(t, s, []string{"a"}, WithShadow(Shadow{URL: sh.URL, MaxInFlight: maxShadowInFlight}))
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > 500*time.Millisecond { // loose: a loaded machine
		t.Fatalf("Close with no copy out took %v", took)
	}
}

// Regression (a842685): WeightedRoundRobin's schedule is made once per
// view, but pick now makes a new view for every retry and hedge (without
// the last backend) and for every backend a breaker refuses, so each of
// those picks laid out a whole schedule: sum(weights) x len(backends)
// steps, ~0.4 ms a pick with 10 backends of weight ~1000, tens of ms
// with 100. A derived view must lay out no schedule of its own (it picks
// by weight at random, see TestReview7WeightedRetriesSkewed). (This checks
// that, not the time: speed is not asserted in unit tests, and an
// earlier version that timed the picks failed on a loaded CI machine.)
func TestReview2WRRDerivedViewCost(t *testing.T) {
	var cs []BackendConfig
	for i := range 10 {
		cs = append(cs, BackendConfig{Name: fmt.Sprint(i), URL: fmt.Sprintf("http://127.0.0.1:%d", 1000+i), Weight: 1000 - i})
	}
	s, err := newBackendSet(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := s.view.Load()
	p := WeightedRoundRobin()
	p.Pick(nil, Backends{s, v})
	for range 20 {
		dv := v.without(s.list[0]) // what pick does for a retry that avoids backend 0
		b, err := p.Pick(nil, Backends{s, dv})
		if err != nil || b == s.list[0] {
			t.Fatalf("a pick for a retry that avoids backend 0 gave %v, %v", b, err)
		}
		if dv.wrr != nil {
			t.Fatalf("a derived view laid out a schedule of its own (%d steps)", len(dv.wrr))
		}
	}
}
