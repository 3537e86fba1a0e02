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

// The proxy passes method, path, query and body, removes hop-by-hop
// headers both ways (with those that Connection names), keeps TE:
// trailers, appends the client to X-Forwarded-For, and passes trailers.
func TestProxyHeaders(t *testing.T) {
	seen := make(chan *http.Request, 1)
	body := make(chan string, 1)
	s := map[string]*httptest.Server{"a": backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- r
		body <- string(b)
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "yes")
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(201)
		io.WriteString(w, "made")
		w.Header().Set("X-Sum", "42")
	})}
	r := newRouter(t, s, []string{"a"})
	front := httptest.NewServer(r.Proxy())
	defer front.Close()

	req, _ := http.NewRequest("POST", front.URL+"/p/q?x=1&y=2", strings.NewReader("payload"))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	req.Header.Set("X-End", "kept")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	in := <-seen
	if in.Method != "POST" || in.URL.Path != "/p/q" || in.URL.RawQuery != "x=1&y=2" || <-body != "payload" {
		t.Errorf("backend saw %s %s?%s", in.Method, in.URL.Path, in.URL.RawQuery)
	}
	for _, h := range []string{"X-Hop", "Proxy-Authorization", "Connection"} {
		if v := in.Header.Get(h); v != "" {
			t.Errorf("backend saw hop-by-hop %s: %q", h, v)
		}
	}
	if in.Header.Get("X-End") != "kept" || in.Header.Get("Te") != "trailers" {
		t.Errorf("backend saw X-End %q, TE %q", in.Header.Get("X-End"), in.Header.Get("Te"))
	}
	if xff := in.Header.Get("X-Forwarded-For"); xff != "10.1.2.3, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	if in.Header.Get("X-Forwarded-Host") != strings.TrimPrefix(front.URL, "http://") || in.Host != strings.TrimPrefix(front.URL, "http://") {
		t.Errorf("backend saw Host %q, X-Forwarded-Host %q", in.Host, in.Header.Get("X-Forwarded-Host"))
	}
	if in.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-Proto %q", in.Header.Get("X-Forwarded-Proto"))
	}
	if resp.StatusCode != 201 || string(got) != "made" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("client got %d %q, X-Kept %q", resp.StatusCode, got, resp.Header.Get("X-Kept"))
	}
	if resp.Header.Get("X-Resp-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("client got hop-by-hop headers %v", resp.Header)
	}
	if resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("client got trailers %v", resp.Trailer)
	}
}

// A backend URL's path goes before the request's.
func TestBackendPathPrefix(t *testing.T) {
	paths := make(chan string, 1)
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) { paths <- r.URL.EscapedPath() })
	tr := newH1Transport(defaultTransport())
	defer tr.CloseIdleConnections()
	r, err := New([]BackendConfig{{URL: s.URL + "/api/"}}, WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	get(t, r.Proxy(), "/v1/a%2Fb")
	if p := <-paths; p != "/api/v1/a%2Fb" {
		t.Fatalf("backend saw path %q, want /api/v1/a%%2Fb", p)
	}
}

func TestProxyErrors(t *testing.T) {
	r, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, r.Proxy(), "/"); code != 503 || body != "Service Unavailable: no backends\n" {
		t.Fatalf("no backends: %d %q", code, body)
	}
	// A backend that is not listening: 502, with a reason that does not
	// give its address away.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := r.SetBackends([]BackendConfig{{Name: "gone", URL: "http://" + addr}}); err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, r.Proxy(), "/"); code != 502 || body != "Bad Gateway: the backend refused the connection\n" || strings.Contains(body, addr) {
		t.Fatalf("backend down: %d %q", code, body)
	}
	if st := r.Stats(); st[0].Requests != 1 || st[0].Errors != 1 || st[0].InFlight != 0 || st[0].Latency < penalty {
		t.Fatalf("stats %+v", st)
	}
	// The client's transport sees the errors as errors.
	client := &http.Client{Transport: r.Transport()}
	var be *BackendError
	if _, err := client.Get("http://svc/"); !errors.As(err, &be) || be.Backend != "gone" {
		t.Fatalf("Transport to a backend that is down: %v", err)
	}
	r.SetBackends(nil)
	if _, err := client.Get("http://svc/"); !errors.Is(err, ErrNoBackends) {
		t.Fatalf("Transport with no backends: %v", err)
	}
	// WithErrorHandler answers instead.
	h, err := New(nil, WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "custom: "+err.Error(), 599)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, h.Proxy(), "/"); code != 599 || !strings.HasPrefix(body, "custom: ambassador: no backends") {
		t.Fatalf("error handler: %d %q", code, body)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cs   []BackendConfig
		want string
	}{
		{[]BackendConfig{{URL: ""}}, `scheme ""`},
		{[]BackendConfig{{URL: "ftp://h"}}, `scheme "ftp"`},
		{[]BackendConfig{{URL: "http://"}}, "no host"},
		{[]BackendConfig{{URL: "http://u:p@h"}}, "scheme, host and path only"},
		{[]BackendConfig{{URL: "http://h/?q=1"}}, "scheme, host and path only"},
		{[]BackendConfig{{URL: "http://h\x7f"}}, "invalid control character"},
		{[]BackendConfig{{URL: "http://h", Weight: -1}}, "weight -1"},
		{[]BackendConfig{{URL: "http://h", Weight: MaxWeight + 1}}, "weight 1001"},
		{[]BackendConfig{{URL: "http://h"}, {URL: "http://h"}}, `name "h" is taken`},
		{[]BackendConfig{{URL: "http://h", Name: "x"}, {URL: "http://i", Name: "x"}}, `name "x" is taken`},
	} {
		if _, err := New(tc.cs); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want ErrInvalid saying %q", tc.cs, err, tc.want)
		}
	}
	for _, opt := range []Option{nil, WithPolicy(nil), WithTransport(nil), WithLogger(nil), WithErrorHandler(nil)} {
		if _, err := New(nil, opt); !errors.Is(err, ErrInvalid) {
			t.Errorf("a bad option: %v", err)
		}
	}
	// A policy that picks nothing fails the request, not the process.
	r, err := New([]BackendConfig{{URL: "http://h"}}, WithPolicy(PolicyFunc(func(*http.Request, Backends) (*Backend, error) { return nil, nil })))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, r.Proxy(), "/"); code != 502 || !strings.Contains(body, "no backend for the request") {
		t.Fatalf("a policy that picks nothing: %d %q", code, body)
	}
}

// Backends change at run time, all or none; unchanged ones keep their
// counts.
func TestSetBackends(t *testing.T) {
	s := servers(t, "a", "b")
	r := newRouter(t, s, []string{"a"}, WithPolicy(RoundRobin()))
	get(t, r.Proxy(), "/")
	if err := r.SetBackends([]BackendConfig{{Name: "a", URL: s["a"].URL}, {Name: "b", URL: s["b"].URL}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 4 {
		_, b, _ := get(t, r.Proxy(), "/")
		seen[b]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("after adding b: %v", seen)
	}
	if st := r.Stats(); st[0].Requests != 3 || st[1].Requests != 2 {
		t.Fatalf("stats %+v: a kept its count", st)
	}
	if err := r.SetBackends([]BackendConfig{{Name: "b", URL: s["b"].URL}, {URL: "bad"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a bad set: %v", err)
	}
	if len(r.Backends()) != 2 {
		t.Fatalf("a bad set changed the backends: %v", r.Backends())
	}
}

// The Transport sends a client's requests to the backends, keeping path
// and query.
func TestTransport(t *testing.T) {
	got := make(chan string, 1)
	s := map[string]*httptest.Server{"a": backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.URL.RequestURI()
	})}
	r := newRouter(t, s, []string{"a"})
	resp, err := (&http.Client{Transport: r.Transport()}).Post("http://kv/items/7?v=2", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if g := <-got; g != "POST /items/7?v=2" {
		t.Fatalf("backend saw %q", g)
	}
}

// A response of unknown length is passed on as it comes.
func TestProxyStreams(t *testing.T) {
	next := make(chan struct{})
	s := map[string]*httptest.Server{"a": backend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-next
		io.WriteString(w, "second\n")
	})}
	r := newRouter(t, s, []string{"a"})
	front := httptest.NewServer(r.Proxy())
	defer front.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(next)
	if line, err := br.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second line %q, %v", line, err)
	}
}

// A backend that does not answer in time is a 504.
func TestProxyTimeout(t *testing.T) {
	release := make(chan struct{})
	s := map[string]*httptest.Server{"slow": backend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	defer close(release)
	tr := newH1Transport(defaultTransport())
	tr.headerTimeout = 50 * time.Millisecond
	defer tr.CloseIdleConnections()
	r, err := New([]BackendConfig{{Name: "slow", URL: s["slow"].URL}}, WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, r.Proxy(), "/"); code != 504 || body != "Gateway Timeout: the backend did not answer in time\n" {
		t.Fatalf("a backend past the header timeout: %d %q", code, body)
	}
}

// A deadline a middleware put on the request is answered with a 504,
// not left for net/http to send as an empty 200.
func TestProxyInboundDeadline(t *testing.T) {
	var gone atomic.Int32
	s := map[string]*httptest.Server{"a": backend(t, "a", slow(5*time.Second, &gone))}
	r := newRouter(t, s, []string{"a"})
	h := http.HandlerFunc(func(w http.ResponseWriter, in *http.Request) {
		ctx, cancel := context.WithTimeout(in.Context(), 50*time.Millisecond)
		defer cancel()
		r.Proxy().ServeHTTP(w, in.WithContext(ctx))
	})
	if code, _, body := get(t, h, "/"); code != 504 {
		t.Fatalf("%d %q, want 504", code, body)
	}
}
