package ambassador

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"
)

// Proxy returns the Router as a reverse proxy: an http.Handler that sends
// each request to the backend its policy picks and copies the answer
// back. As RFC 9110 asks of a proxy, it removes hop-by-hop headers both
// ways and appends the client's address to X-Forwarded-For; it keeps the
// request's Host, and sets X-Forwarded-Host and X-Forwarded-Proto. With no
// backends it answers 503, without the routing key its policy needs 400,
// when the backend times out 504, and when it fails or the policy cannot
// place the request 502, each with a reason that names no address or key
// (the error itself goes to the log; see WithErrorHandler). Connection upgrades (WebSocket) are not
// proxied: the Upgrade header is hop-by-hop, so the backend sees a plain
// request.
func (r *Router) Proxy() http.Handler { return proxy{r} }

type proxy struct{ r *Router }

// bufPool holds the buffers that copy bodies: a buffer a request cost
// about 40% of a proxy's throughput in the research notes' measurements.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (p proxy) ServeHTTP(w http.ResponseWriter, in *http.Request) {
	out := new(http.Request)
	*out = *in
	out.RequestURI = "" // a client request must not have one
	out.Close = false
	out.Header = in.Header.Clone()
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	if in.ContentLength == 0 {
		out.Body = nil // no body: the transport may then retry the request on a fresh connection
	}
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's default
	}
	if teTrailers(in.Header) {
		out.Header["Te"] = []string{"trailers"} // gRPC needs it through
	}
	addForwardedFor(out.Header, in.RemoteAddr)
	if in.Host != "" {
		out.Header["X-Forwarded-Host"] = []string{in.Host}
	}
	if in.TLS != nil {
		out.Header["X-Forwarded-Proto"] = []string{"https"}
	} else {
		out.Header["X-Forwarded-Proto"] = []string{"http"}
	}
	// A server request's URL has no scheme or host: send sets them, on a
	// copy of its own.

	resp, err := p.r.send(out)
	if err != nil {
		p.fail(w, in, err)
		return
	}
	defer resp.Body.Close()

	h := w.Header()
	removeHopHeaders(resp.Header)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	bp := bufPool.Get().(*[]byte)
	err = copyBody(w, resp, *bp)
	bufPool.Put(bp)
	if err != nil {
		// The status is sent: all that is left is to cut the answer short,
		// so that the client does not take it for whole.
		p.r.o.log.Debug("ambassador: copying a response failed", zap.String("path", in.URL.Path), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
}

// copyBody copies resp's body to w through buf, flushing after each read
// when the body's length is unknown (a stream).
func copyBody(w http.ResponseWriter, resp *http.Response, buf []byte) error {
	if resp.ContentLength >= 0 {
		_, err := io.CopyBuffer(onlyWriter{w}, resp.Body, buf)
		return err
	}
	rc := http.NewResponseController(w)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// onlyWriter hides a ResponseWriter's ReadFrom, which would not use the
// pooled buffer.
type onlyWriter struct{ io.Writer }

// teTrailers reports whether h's TE header accepts trailers.
func teTrailers(h http.Header) bool {
	for _, v := range h["Te"] {
		for f := range strings.SplitSeq(v, ",") {
			if name, _, _ := strings.Cut(strings.TrimSpace(f), ";"); strings.EqualFold(strings.TrimSpace(name), "trailers") {
				return true
			}
		}
	}
	return false
}

// fail answers a request that could not be sent or answered. The client
// gets the status and a reason, but not the error itself, which may name
// internal addresses or the request's key: that goes to the log.
func (p proxy) fail(w http.ResponseWriter, in *http.Request, err error) {
	if errors.Is(in.Context().Err(), context.Canceled) {
		// The client went away: there is no one to answer. (A deadline
		// set on the request by a middleware is answered, with a 504.)
		p.r.o.log.Debug("ambassador: client gone", zap.String("path", in.URL.Path), zap.Error(err))
		return
	}
	p.r.o.log.Debug("ambassador: request failed", zap.String("path", in.URL.Path), zap.Error(err))
	if p.r.o.onError != nil {
		p.r.o.onError(w, in, err)
		return
	}
	code, reason := classify(err)
	http.Error(w, http.StatusText(code)+": "+reason, code)
}

// classify gives the status and the reason, safe to show a client, for
// a request's failure.
func classify(err error) (int, string) {
	var be *BackendError
	var ne net.Error
	switch {
	case errors.Is(err, ErrNoBackends):
		return http.StatusServiceUnavailable, "no backends"
	case errors.Is(err, ErrCircuitOpen):
		return http.StatusServiceUnavailable, "the backend is unavailable"
	case errors.Is(err, ErrNoKey):
		return http.StatusBadRequest, "the request has no routing key"
	case !errors.As(err, &be):
		return http.StatusBadGateway, "no backend for the request"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "the backend did not answer in time"
	case errors.Is(err, errBadStatus):
		return http.StatusBadGateway, "the backend's answer was malformed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "the backend refused the connection"
	default:
		return http.StatusBadGateway, "the backend failed"
	}
}
