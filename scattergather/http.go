package scattergather

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// TimeoutHeader carries what is left of the caller's deadline from an
// HTTPLeaf to a Handler, as milliseconds (a decimal number, possibly with
// a fraction). A remaining time rather than a point in time, so that the
// two clocks need not agree.
const TimeoutHeader = "Distkit-Timeout-Ms"

// DefaultMaxBody is the default limit on request and response bodies.
const DefaultMaxBody = 4 << 20

// maxTimeout bounds what a Handler accepts in TimeoutHeader; an HTTPLeaf
// sends at most this.
const maxTimeout = 24 * time.Hour

// maxMaxBody bounds WithMaxBody (1 TiB), leaving room to read one byte
// past the limit.
const maxMaxBody = 1 << 40

// Codec encodes requests and responses for HTTPLeaf and Handler.
type Codec interface {
	ContentType() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec.
type JSON struct{}

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }

// Marshal is json.Marshal.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal is json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// HTTPOption configures an HTTPLeaf or a Handler.
type HTTPOption func(*httpOptions) error

type httpOptions struct {
	client  *http.Client
	codec   Codec
	maxBody int64
}

// WithHTTPClient sends an HTTPLeaf's requests with c. Default: a client
// of its own on a clone of http.DefaultTransport that keeps up to 64 idle
// connections per host, since a root sends many requests at once to each
// leaf server.
func WithHTTPClient(c *http.Client) HTTPOption {
	return func(o *httpOptions) error {
		if c == nil {
			return invalid("WithHTTPClient: nil client")
		}
		o.client = c
		return nil
	}
}

// WithCodec encodes requests and responses with c; both sides must agree.
// Default: JSON.
func WithCodec(c Codec) HTTPOption {
	return func(o *httpOptions) error {
		if c == nil {
			return invalid("WithCodec: nil codec")
		}
		o.codec = c
		return nil
	}
}

// WithMaxBody limits the bodies an HTTPLeaf reads (responses) or a
// Handler reads (requests) to n bytes. Default: DefaultMaxBody (4 MiB).
func WithMaxBody(n int64) HTTPOption {
	return func(o *httpOptions) error {
		if n < 1 || n > maxMaxBody {
			return invalid("WithMaxBody(%d): want 1 to %d", n, int64(maxMaxBody))
		}
		o.maxBody = n
		return nil
	}
}

func httpOpts(opts []HTTPOption) (httpOptions, error) {
	o := httpOptions{codec: JSON{}, maxBody: DefaultMaxBody}
	for _, opt := range opts {
		if opt == nil {
			return o, invalid("nil HTTPOption")
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// StatusError is an HTTP leaf's answer that was not a success.
type StatusError struct {
	Code    int    // the HTTP status
	Message string // the handler's error message, or the start of the body
}

// Error names the leaf server's status.
func (e *StatusError) Error() string {
	return fmt.Sprintf("scattergather: leaf answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// Unwrap returns context.DeadlineExceeded for 504 Gateway Timeout, the
// status a Handler answers with when the leaf ran out of time, so that
// the gatherer reports the leaf TimedOut.
func (e *StatusError) Unwrap() error {
	if e.Code == http.StatusGatewayTimeout {
		return context.DeadlineExceeded
	}
	return nil
}

// HTTPLeaf is a Leaf on a leaf server: Do posts the request to a URL
// served by Handler, carrying the deadline, and decodes the answer. It is
// safe for concurrent use.
type HTTPLeaf[Req, Resp any] struct {
	url string
	o   httpOptions
}

var _ Leaf[int, int] = (*HTTPLeaf[int, int])(nil)

// NewHTTPLeaf returns a leaf that posts to rawURL (http or https).
func NewHTTPLeaf[Req, Resp any](rawURL string, opts ...HTTPOption) (*HTTPLeaf[Req, Resp], error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, invalid("leaf URL %q: %v", rawURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalid("leaf URL %q: want http:// or https:// and a host", rawURL)
	}
	o, err := httpOpts(opts)
	if err != nil {
		return nil, err
	}
	if o.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		o.client = &http.Client{Transport: t}
	}
	return &HTTPLeaf[Req, Resp]{url: u.String(), o: o}, nil
}

// Do posts req and decodes the answer. A leaf that ran out of time
// answers 504, returned as a *StatusError that matches
// context.DeadlineExceeded.
func (l *HTTPLeaf[Req, Resp]) Do(ctx context.Context, req Req) (Resp, error) {
	var zero Resp
	body, err := l.o.codec.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("scattergather: encoding request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		return zero, fmt.Errorf("scattergather: %w", err)
	}
	hr.Header.Set("Content-Type", l.o.codec.ContentType())
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return zero, context.DeadlineExceeded
		}
		hr.Header.Set(TimeoutHeader, formatTimeout(left))
	}
	resp, err := l.o.client.Do(hr)
	if err != nil {
		return zero, fmt.Errorf("scattergather: leaf %s: %w", l.url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, l.o.maxBody+1)) // +1 to see an answer over it
	if err != nil {
		return zero, fmt.Errorf("scattergather: leaf %s: reading answer: %w", l.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return zero, &StatusError{Code: resp.StatusCode, Message: errorMessage(data)}
	}
	if int64(len(data)) > l.o.maxBody {
		return zero, fmt.Errorf("scattergather: leaf %s: answer larger than %d bytes", l.url, l.o.maxBody)
	}
	var out Resp
	if err := l.o.codec.Unmarshal(data, &out); err != nil {
		return zero, fmt.Errorf("scattergather: leaf %s: decoding answer: %w", l.url, err)
	}
	return out, nil
}

// errorBody is how a Handler reports an error.
type errorBody struct {
	Error string `json:"error"`
}

// errorMessage extracts a Handler's error message, or quotes the start
// of some other body.
func errorMessage(data []byte) string {
	var e errorBody
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	if len(data) > 200 {
		data = data[:200]
	}
	return strconv.Quote(string(data))
}

// Handler serves a Leaf over HTTP for HTTPLeaf: it takes POSTs of an
// encoded request, runs leaf.Do under the caller's remaining time
// (TimeoutHeader) and the request's own context, and answers 200 with the
// encoded answer. Errors are JSON {"error": "…"}: 405 for other methods,
// 413 for bodies over the limit, 400 for requests that do not decode or
// a bad TimeoutHeader, 504 when the leaf ran out of time, 500 for other
// leaf errors.
func Handler[Req, Resp any](leaf Leaf[Req, Resp], opts ...HTTPOption) (http.Handler, error) {
	if leaf == nil {
		return nil, invalid("Handler: nil Leaf")
	}
	o, err := httpOpts(opts)
	if err != nil {
		return nil, err
	}
	return &handler[Req, Resp]{leaf: leaf, o: o}, nil
}

type handler[Req, Resp any] struct {
	leaf Leaf[Req, Resp]
	o    httpOptions
}

// ServeHTTP answers one leaf request under the deadline it carries.
func (h *handler[Req, Resp]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; POST a request")
		return
	}
	ctx := r.Context()
	if v := r.Header.Get(TimeoutHeader); v != "" {
		d, err := parseTimeout(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", h.o.maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "reading request: "+err.Error())
		return
	}
	var req Req
	if err := h.o.codec.Unmarshal(data, &req); err != nil {
		writeError(w, http.StatusBadRequest, "decoding request: "+err.Error())
		return
	}
	resp, err := call(ctx, h.leaf, req)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		writeError(w, code, err.Error())
		return
	}
	out, err := h.o.codec.Marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", h.o.codec.ContentType())
	_, _ = w.Write(out)
}

// parseTimeout reads TimeoutHeader: milliseconds, above 0 and at most a
// day.
// formatTimeout writes the time left (more than 0) as the header's
// milliseconds: whole microseconds, rounded up so that a sliver is not
// sent as none, and at most what a Handler accepts.
func formatTimeout(left time.Duration) string {
	left = min((left + time.Microsecond - 1).Truncate(time.Microsecond), maxTimeout)
	return strconv.FormatFloat(float64(left)/float64(time.Millisecond), 'f', 3, 64)
}

func parseTimeout(v string) (time.Duration, error) {
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil || !(ms > 0) || ms > float64(maxTimeout/time.Millisecond) {
		return 0, fmt.Errorf("%s %q: want milliseconds above 0 and at most %v", TimeoutHeader, v, maxTimeout)
	}
	// A sliver of a nanosecond left is no time left, not no deadline.
	return max(time.Duration(ms*float64(time.Millisecond)), 1), nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}
