package ambassador

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"testing"
)

// The in-process Transport takes requests a program built, maybe from
// what its own users sent. A method or header that carries a line break
// must not become a second request on the backend connection: it is
// refused, as http.Transport refuses it.
func TestTransportRefusesInjection(t *testing.T) {
	heads := make(chan string, 10)
	addr, _ := tcpServer(t, nil, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			heads <- req.Method + " " + req.URL.Path + " " + req.Header.Get("X-Injected")
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		}
	})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: "http://" + addr}})
	cases := []struct {
		name   string
		method string
		header http.Header
	}{
		{"method", "GET / HTTP/1.1\r\nHost: x\r\n\r\nDELETE", nil},
		{"header name", "GET", http.Header{"A\r\nX-Injected": {"1"}}},
		{"header value", "GET", http.Header{"A": {"1\r\nX-Injected: 1"}}},
		{"header value NUL", "GET", http.Header{"A": {"1\x00"}}},
	}
	for _, c := range cases {
		req, err := http.NewRequest("GET", "http://svc/p", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Method = c.method
		for k, v := range c.header {
			req.Header[k] = v
		}
		resp, err := r.Transport().RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: sent, want an error", c.name)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %q does not say what is wrong", c.name, err)
		}
	}
	// A clean request last: the backend reads requests in order, so by
	// its answer any request smuggled in before would have shown up.
	resp, err := r.Transport().RoundTrip(must(http.NewRequest("GET", "http://svc/clean", nil)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for h := <-heads; h != "GET /clean "; h = <-heads {
		t.Errorf("the backend got %q", h)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
