package main

// The floor modes are not proxies anyone should run. Each does the least
// a proxy can for this benchmark's requests (a GET with no body, answered
// with a Content-Length), so that what a real proxy adds on top can be
// told apart from what its I/O model costs:
//
//	min-nethttp   net/http's server, a handler that forwards over a kept connection
//	min-poller    a loop of its own on net.Conn, so on Go's network poller
//	min-blocking  the same loop on blocking system calls, a thread per connection
//
// run.sh measures them when they are named in PATHS.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
)

// floor serves one of the floor modes on l, forwarding to backend.
func floor(mode string, l net.Listener, backend string) error {
	switch mode {
	case "min-nethttp":
		return http.Serve(l, minHandler(backend))
	case "min-poller":
		return serveEach(l, func(c net.Conn) (io.ReadWriteCloser, io.ReadWriteCloser, error) {
			b, err := net.Dial("tcp", backend)
			return c, b, err
		})
	case "min-blocking":
		return serveEach(l, func(c net.Conn) (io.ReadWriteCloser, io.ReadWriteCloser, error) {
			cf, err := blocking(c)
			if err != nil {
				return nil, nil, err
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				cf.Close()
				return nil, nil, err
			}
			bf, err := blocking(b)
			if err != nil {
				cf.Close()
				return nil, nil, err
			}
			return cf, bf, nil
		})
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// blocking turns c into a file in blocking mode, out of the network
// poller: reads and writes are then plain system calls that block their
// thread.
func blocking(c net.Conn) (*os.File, error) {
	f, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		return nil, err
	}
	f.Fd() // sets blocking mode
	return f, nil
}

// serveEach accepts connections and relays each over its own backend
// connection, which open makes.
func serveEach(l net.Listener, open func(net.Conn) (client, backend io.ReadWriteCloser, err error)) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			client, backend, err := open(c)
			if err != nil {
				c.Close()
				return
			}
			defer client.Close()
			defer backend.Close()
			relay(client, backend)
		}()
	}
}

// relay passes request heads from client to backend and responses back,
// until either side ends or sends what the floor does not handle.
func relay(client, backend io.ReadWriter) {
	cr, br := bufio.NewReader(client), bufio.NewReader(backend)
	var head, resp []byte
	for {
		var err error
		if head, _, err = readHead(cr, head[:0]); err != nil {
			return
		}
		if _, err := backend.Write(head); err != nil {
			return
		}
		if resp, err = readResponse(br, resp[:0]); err != nil {
			return
		}
		if _, err := client.Write(resp); err != nil {
			return
		}
	}
}

// readHead appends a message head, through its empty line, to buf, and
// returns it with its Content-Length (0 if it has none).
func readHead(r *bufio.Reader, buf []byte) ([]byte, int, error) {
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return buf, 0, err
		}
		buf = append(buf, line...)
		if len(line) <= 2 {
			return buf, n, nil
		}
		const cl = "content-length:"
		if len(line) > len(cl) && bytes.EqualFold(line[:len(cl)], []byte(cl)) {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(line[len(cl):]))); err != nil {
				return buf, 0, err
			}
		}
	}
}

var errNoLength = errors.New("floor: a response without Content-Length")

// readResponse appends a whole response to buf.
func readResponse(r *bufio.Reader, buf []byte) ([]byte, error) {
	buf, n, err := readHead(r, buf)
	if err != nil {
		return buf, err
	}
	if n == 0 && !bytes.Contains(buf, []byte("\nContent-Length: 0")) {
		return buf, errNoLength
	}
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	_, err = io.ReadFull(r, buf[start:])
	return buf, err
}

// minHandler forwards each request as a bare GET over kept connections.
func minHandler(backend string) http.Handler {
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	idle := make(chan *conn, 64)
	get := []byte("GET / HTTP/1.1\r\nHost: " + backend + "\r\n\r\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var bc *conn
		select {
		case bc = <-idle:
		default:
			c, err := net.Dial("tcp", backend)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			bc = &conn{c: c, br: bufio.NewReader(c)}
		}
		resp, err := []byte(nil), error(nil)
		if _, err = bc.c.Write(get); err == nil {
			resp, err = readResponse(bc.br, nil)
		}
		if err != nil {
			bc.c.Close()
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		select {
		case idle <- bc:
		default:
			bc.c.Close()
		}
		body := resp[bytes.Index(resp, []byte("\r\n\r\n"))+4:]
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Write(body)
	})
}
