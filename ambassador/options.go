package ambassador

import (
	"crypto/tls"
	"github.com/distkit/distkit/internal/budget"
	"net"
	"net/http"
	"reflect"
	"time"

	"go.uber.org/zap"
)

// Option configures a Router; pass options to New.
type Option func(*options) error

type options struct {
	policy    Policy
	transport http.RoundTripper
	log       *zap.Logger
	onError   func(http.ResponseWriter, *http.Request, error)
	retry     *Retry
	hedge     *Hedge
	budget    Budget
	outlier   *OutlierDetection
	breaker   *Breaker
	health    *HealthCheck
	shadow    *shadow
	tls       *tls.Config
}

// WithTLS is the TLS configuration for https backends: the CAs to trust,
// a client certificate, the server name. It configures the default
// transport, so it cannot go with WithTransport (configure that one's
// TLS instead). Default: the system's roots.
func WithTLS(c *tls.Config) Option {
	return func(o *options) error {
		if c == nil {
			return invalid("WithTLS: nil config")
		}
		o.tls = c.Clone()
		return nil
	}
}

// WithRetry retries requests as c says; see Retry. Default: no retries
// (but see WithTransport: a request with no body that finds a kept
// connection closed goes again on a new one).
func WithRetry(c Retry) Option {
	return func(o *options) error {
		if err := c.check(); err != nil {
			return err
		}
		o.retry = &c
		return nil
	}
}

// WithHedge hedges slow requests as c says; see Hedge. Default: none.
func WithHedge(c Hedge) Option {
	return func(o *options) error {
		if err := c.check(); err != nil {
			return err
		}
		o.hedge = &c
		return nil
	}
}

// WithBudget takes retries and hedges from b, which may be shared with
// other Routers and scatter/gathers. Default: a budget of the Router's
// own that allows 20% of its requests over 10 s plus 10 a second, as
// Linkerd's does.
func WithBudget(b Budget) Option {
	return func(o *options) error {
		if isNil(b) {
			return invalid("WithBudget: nil budget")
		}
		o.budget = b
		return nil
	}
}

// NewBudget returns a Budget that allows extra requests up to ratio (0 to
// 1) of the requests made over a sliding 10 s window, plus minPerSecond a
// second, so that a quiet service can still retry.
func NewBudget(ratio float64, minPerSecond int) (Budget, error) {
	b, err := budget.New(ratio, minPerSecond)
	if err != nil {
		return nil, invalid("NewBudget: %v", err)
	}
	return b, nil
}

// WithOutlierDetection ejects failing backends as c says; see
// OutlierDetection. Default: none.
func WithOutlierDetection(c OutlierDetection) Option {
	return func(o *options) error {
		if err := c.check(); err != nil {
			return err
		}
		o.outlier = &c
		return nil
	}
}

// WithBreaker gives each backend a circuit breaker as c says; see
// Breaker. Default: none.
func WithBreaker(c Breaker) Option {
	return func(o *options) error {
		if err := c.check(); err != nil {
			return err
		}
		o.breaker = &c
		return nil
	}
}

// WithHealthCheck checks the backends' health as c says; see
// HealthCheck. The checks run until Close. Default: none.
func WithHealthCheck(c HealthCheck) Option {
	return func(o *options) error {
		if err := c.check(); err != nil {
			return err
		}
		o.health = &c
		return nil
	}
}

// WithPolicy routes by p. Default: PeakEWMA.
func WithPolicy(p Policy) Option {
	return func(o *options) error {
		if p == nil {
			return invalid("WithPolicy: nil policy")
		}
		o.policy = p
		return nil
	}
}

// WithTransport sends requests to backends through rt. Default: plain
// HTTP without a body over pooled HTTP/1.1 connections, written and read
// in the request's goroutine (http.Transport hands each request between
// two goroutines per connection, which on one core cost more than the
// proxying), and requests with a body, upgrades and https through an
// http.Transport; both keep up to 1024 idle connections per backend
// (the standard library's default of 2 makes a busy proxy dial for most
// requests), dial in at most 5 s, wait at most 30 s for response
// headers, take at most 1 MB of them (the 1xx answers before them
// included), and leave compression to the client and backend.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return invalid("WithTransport: nil transport")
		}
		o.transport = rt
		return nil
	}
}

// WithLogger logs through l: failed requests at Debug. Nothing is ever
// written to stderr. Default: no logging.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalid("WithLogger: nil logger")
		}
		o.log = l
		return nil
	}
}

// WithErrorHandler answers the Proxy's failed requests with h, given the
// error itself, instead of a 503 (no backends), 400 (no routing key), 504
// (the backend timed out) or 502 (it failed) with a reason. It is not
// called when the client went away.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) Option {
	return func(o *options) error {
		if h == nil {
			return invalid("WithErrorHandler: nil handler")
		}
		o.onError = h
		return nil
	}
}

// defaultTransport is the http.Transport a Router uses, under an
// h1Transport, unless given one.
func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // an ambassador is the proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no limit across backends
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		// nginx refuses more than 4–8 KB (proxy_buffer_size);
		// http.Transport takes 10 MB, too much for a proxy to hold
		// for each request from a hostile backend.
		MaxResponseHeaderBytes: 1 << 20,
		// A proxy passes Accept-Encoding as the client sent it, and the
		// answer as the backend encoded it.
		DisableCompression: true,
	}
}

// isNil reports whether x is nil or a nil pointer, map, func or chan in
// an interface: a value whose methods would fail at first use.
func isNil(x any) bool {
	if x == nil {
		return true
	}
	switch v := reflect.ValueOf(x); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return v.IsNil()
	}
	return false
}
