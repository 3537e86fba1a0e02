package ambassador

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzHeaders: whatever the headers and the client address, removing
// hop-by-hop headers leaves none of them and none that Connection named,
// keeps every other header, and X-Forwarded-For ends with the client.
func FuzzHeaders(f *testing.F) {
	f.Add("X-Hop, close", "X-Hop", "v", "127.0.0.1:80", "1.2.3.4")
	f.Add(",,, ,keep-alive", "Keep-Alive", "timeout=5", "[::1]:443", "")
	f.Add("Upgrade", "X-Other", "", "bad", "a, b")
	f.Fuzz(func(t *testing.T, connection, name, value, remote, prior string) {
		h := http.Header{}
		h.Set("Connection", connection)
		h.Set("Transfer-Encoding", "chunked")
		if name != "" {
			h.Add(name, value)
		}
		if prior != "" {
			h.Set("X-Forwarded-For", prior)
		}
		named := map[string]bool{}
		for f := range strings.SplitSeq(connection, ",") {
			if f = textproto.TrimString(f); f != "" {
				named[http.CanonicalHeaderKey(f)] = true
			}
		}
		removeHopHeaders(h)
		for _, k := range hopHeaders {
			if _, ok := h[k]; ok {
				t.Fatalf("hop-by-hop %s left in %v", k, h)
			}
		}
		for k := range named {
			if _, ok := h[k]; ok {
				t.Fatalf("%s, named by Connection %q, left in %v", k, connection, h)
			}
		}
		ck := http.CanonicalHeaderKey(name)
		hop := named[ck]
		for _, k := range hopHeaders {
			hop = hop || k == ck
		}
		if name != "" && !hop && ck != "X-Forwarded-For" && h.Get(name) != value {
			t.Fatalf("%s: %q was not hop-by-hop but is now %q", name, value, h.Get(name))
		}
		addForwardedFor(h, remote)
		if xff := h["X-Forwarded-For"]; len(xff) > 1 {
			t.Fatalf("X-Forwarded-For in %d lines: %q", len(xff), xff)
		}
	})
}

// rawServer is a TCP server on 127.0.0.1 that answers a request with
// header X-Raw with the bytes raw holds, and any other with a plain 200
// "ok", on connections it keeps open until the client closes them.
type rawServer struct {
	l   net.Listener
	wg  sync.WaitGroup
	raw atomic.Pointer[[]byte]
}

func newRawServer(tb testing.TB) *rawServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &rawServer{l: l}
	s.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					if req.Header.Get("X-Raw") != "" {
						answer = *s.raw.Load()
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			})
		}
	})
	tb.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

// FuzzBackendResponse: whatever bytes a backend answers with, the
// transport neither panics nor hangs past the request's deadline, and the
// next request on the pool gets its own answer, not what is left of the
// bad one.
func FuzzBackendResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nuntil close"))
	f.Add([]byte("garbage\r\n\r\n"))
	s := newRawServer(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		s.raw.Store(&raw)
		tr := newH1Transport(defaultTransport())
		defer tr.CloseIdleConnections()
		u := "http://" + s.l.Addr().String() + "/"
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		req.Header.Set("X-Raw", "1")
		if resp, err := tr.RoundTrip(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		cancel()
		ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel2()
		req2, _ := http.NewRequestWithContext(ctx2, "GET", u, nil)
		resp, err := tr.RoundTrip(req2)
		if err != nil {
			t.Fatalf("the next request failed: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" || err != nil {
			t.Fatalf("the next request got %d %q (%v), want its own 200 ok", resp.StatusCode, b, err)
		}
	})
}
