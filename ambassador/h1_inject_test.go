package ambassador

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
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

// A backend that answers with an endless head, or with 1xx answers that
// never end, gets an error in bounded memory, not the proxy's heap: the
// limit counts the 1xx heads too.
func TestH1HostileHeads(t *testing.T) {
	cases := []struct {
		name  string
		first string // sent once, before line is sent over and over
		line  string
		want  error
	}{
		{"header lines", "HTTP/1.1 200 OK\r\n", "X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", errHeadTooLarge},
		{"one long header", "HTTP/1.1 200 OK\r\nX-A: ", strings.Repeat("a", 64), errHeadTooLarge},
		{"1xx answers", "", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", errHeadTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := tcpServer(t, nil, func(conn net.Conn) {
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				conn.Write([]byte(c.first))
				more := []byte(strings.Repeat(c.line, 100))
				for range 10000 { // bounded: 10k writes of 100 lines
					if _, err := conn.Write(more); err != nil {
						return
					}
				}
			})
			tr := newH1Transport(defaultTransport())
			tr.maxHead = 64 << 10
			defer tr.CloseIdleConnections()
			resp, err := h1Get(t, tr, context.Background(), "http://"+addr+"/")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("answered %d, want an error", resp.StatusCode)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

// A transfer encoding other than chunked would send the body unframed.
func TestTransportRefusesUnframedBody(t *testing.T) {
	s := backend(t, "a", func(w http.ResponseWriter, r *http.Request) {})
	r := routerFor(t, []BackendConfig{{Name: "a", URL: s.URL}})
	for _, te := range [][]string{{"identity"}, {"gzip", "chunked"}} {
		req := must(http.NewRequest("POST", "http://svc/", strings.NewReader("GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")))
		req.ContentLength = -1
		req.TransferEncoding = te
		resp, err := r.Transport().RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%q: sent, want ErrInvalid", te)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q: %v, want ErrInvalid", te, err)
		}
	}
}
