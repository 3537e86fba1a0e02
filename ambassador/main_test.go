package ambassador

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a test server on 127.0.0.1 that answers with its name, and
// runs h first if given.
func backend(t *testing.T, name string, h func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// closeWatch starts a backend that runs h and reports each connection it
// sees closed on the returned channel.
func closeWatch(t *testing.T, h http.HandlerFunc) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	closed := make(chan struct{}, 100)
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, closed
}

// newRouter makes a Router over servers named by their keys, in the order
// of names (see routerFor).
func newRouter(t *testing.T, servers map[string]*httptest.Server, names []string, opts ...Option) *Router {
	t.Helper()
	var cs []BackendConfig
	for _, n := range names {
		cs = append(cs, BackendConfig{Name: n, URL: servers[n].URL})
	}
	return routerFor(t, cs, opts...)
}

// routerFor makes a Router over cs with a transport of its own, both
// closed at the end of the test.
func routerFor(t *testing.T, cs []BackendConfig, opts ...Option) *Router {
	t.Helper()
	tr := newH1Transport(defaultTransport())
	t.Cleanup(tr.CloseIdleConnections)
	r, err := New(cs, append([]Option{WithTransport(tr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// get sends a GET for path through h and returns the answer's status,
// backend and body.
func get(t *testing.T, h http.Handler, path string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = "127.0.0.1:5555"
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("X-Backend"), rec.Body.String()
}
