// Command proxy serves the parts of the proxy benchmark (run.sh): a
// trivial backend, distkit's reverse proxy, and httputil.ReverseProxy
// with its default settings. Each listens on 127.0.0.1, port 0 unless
// told, prints its address on stdout, and serves until killed.
//
//	proxy backend
//	proxy distkit  -backend http://127.0.0.1:PORT
//	proxy httputil -backend http://127.0.0.1:PORT
//	proxy min-nethttp|min-poller|min-blocking -backend 127.0.0.1:PORT
//	proxy freeport
//
// The min- modes are lower bounds, described in floor.go.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/distkit/distkit/ambassador"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: proxy backend|distkit|httputil|min-nethttp|min-poller|min-blocking|freeport [-backend URL] [-listen ADDR]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	backendURL := fs.String("backend", "", "the backend's URL (host:port for the min- modes)")
	listen := fs.String("listen", "127.0.0.1:0", "where to listen (loopback only)")
	fs.Parse(os.Args[2:])

	var h http.Handler
	switch mode {
	case "backend":
		body := []byte("hello, world\n")
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})
	case "distkit":
		r, err := ambassador.New([]ambassador.BackendConfig{{URL: *backendURL}})
		if err != nil {
			fail(err)
		}
		h = r.Proxy()
	case "httputil":
		u, err := url.Parse(*backendURL)
		if err != nil || u.Host == "" {
			fail(fmt.Errorf("-backend %q: want a URL", *backendURL))
		}
		h = httputil.NewSingleHostReverseProxy(u)
	case "min-nethttp", "min-poller", "min-blocking":
		l, err := net.Listen("tcp", *listen)
		if err != nil {
			fail(err)
		}
		fmt.Println(l.Addr())
		fail(floor(mode, l, *backendURL))
	case "freeport":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(err)
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		return
	default:
		fail(fmt.Errorf("unknown mode %q", mode))
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(err)
	}
	fmt.Println(l.Addr())
	fail(http.Serve(l, h))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "proxy:", err)
	os.Exit(1)
}
