package ambassador

import (
	"net"
	"net/http"
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
// HTTP over pooled HTTP/1.1 connections, written and read in the
// request's goroutine (http.Transport hands each request between two
// goroutines per connection, which on one core cost more than the
// proxying), and https through an http.Transport; both keep up to 1024
// idle connections per backend (the standard library's default of 2
// makes a busy proxy dial for most requests), dial in at most 5 s and
// wait at most 30 s for response headers.
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
	}
}
