package ambassador

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Shadow mirrors a share of the requests to another service, whose
// answers are read and thrown away (traffic shadowing, as mcrouter and
// Envoy do it: a new version sees real traffic without answering it).
// Copies go after the request is sent, from goroutines of their own, and
// never hold up or change the real request; beyond MaxInFlight copies
// out at once, more are dropped. The copy's Host gets "-shadow" added, as
// Envoy's does, so that the shadow can tell. Requests with a body are
// copied only if GetBody can make it again (the Proxy does not keep
// bodies, so it mirrors requests without one). Zero fields take the
// defaults.
type Shadow struct {
	// URL is where the copies go: http or https, with a host and an
	// optional path prefix. Required.
	URL string
	// Fraction is the share of requests copied, more than 0 and at most 1.
	// Default 1.
	Fraction float64
	// MaxInFlight bounds the copies out at once, at most 10000. Default
	// 64.
	MaxInFlight int
	// Timeout bounds each copy, answer included. Default 5 s.
	Timeout time.Duration
}

// ShadowStats counts a Router's copies to its shadow.
type ShadowStats struct {
	Sent    uint64 // copies sent
	Dropped uint64 // copies not sent: MaxInFlight were out
	Errors  uint64 // copies that failed or got a 5xx
}

// maxShadowInFlight bounds Shadow.MaxInFlight: Close takes every slot.
const maxShadowInFlight = 10000

type shadow struct {
	c    Shadow
	to   *Backend // the shadow as a backend, for its URL
	slot chan struct{}

	sent, dropped, errors atomic.Uint64
}

func (c *Shadow) check() (*shadow, error) {
	def(&c.Fraction, 1)
	def(&c.MaxInFlight, 64)
	def(&c.Timeout, 5*time.Second)
	to, err := newBackend(0, BackendConfig{URL: c.URL, Name: "shadow"})
	switch {
	case err != nil:
		return nil, invalid("Shadow.URL %q: want http or https with a host", c.URL)
	case !(c.Fraction > 0 && c.Fraction <= 1):
		return nil, invalid("Shadow.Fraction %v: want more than 0 and at most 1", c.Fraction)
	case c.MaxInFlight < 1 || c.MaxInFlight > maxShadowInFlight:
		return nil, invalid("Shadow.MaxInFlight %d: want 1 to %d", c.MaxInFlight, maxShadowInFlight)
	case c.Timeout <= 0:
		return nil, invalid("Shadow.Timeout %v: want more than 0", c.Timeout)
	}
	return &shadow{c: *c, to: to, slot: make(chan struct{}, c.MaxInFlight)}, nil
}

// WithShadow mirrors requests as c says; see Shadow. Default: none.
func WithShadow(c Shadow) Option {
	return func(o *options) error {
		sh, err := c.check()
		if err != nil {
			return err
		}
		o.shadow = sh
		return nil
	}
}

// ShadowStats returns the counts of the copies to the shadow (zero
// without one).
func (r *Router) ShadowStats() ShadowStats {
	sh := r.o.shadow
	if sh == nil {
		return ShadowStats{}
	}
	return ShadowStats{Sent: sh.sent.Load(), Dropped: sh.dropped.Load(), Errors: sh.errors.Load()}
}

// wait waits for the copies out, which the Router's closing cancels,
// and takes every slot so that no more go.
func (sh *shadow) wait() {
	for range cap(sh.slot) {
		sh.slot <- struct{}{}
	}
}

// mirror sends a copy of out to the shadow, if this request is one of
// its share. It copies what it needs now: the caller may change out when
// mirror returns.
func (r *Router) mirror(out *http.Request) {
	sh := r.o.shadow
	if r.closing.Err() != nil {
		return // closed: no more shadowing
	}
	if sh.c.Fraction < 1 && rand.Float64() >= sh.c.Fraction {
		return
	}
	var body io.ReadCloser
	if out.Body != nil && out.Body != http.NoBody {
		if out.GetBody == nil {
			return
		}
		var err error
		if body, err = out.GetBody(); err != nil {
			return
		}
	}
	select {
	case sh.slot <- struct{}{}:
	default:
		sh.dropped.Add(1)
		if body != nil {
			body.Close()
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.closing, sh.c.Timeout)
	req := out.Clone(ctx) // the caller may change out's headers afterwards
	req.Body = body
	req.URL = backendURL(sh.to, out.URL)
	req.Host = shadowHost(out)
	sh.sent.Add(1)
	go func() {
		defer func() { <-sh.slot }()
		defer cancel()
		resp, err := r.o.transport.RoundTrip(req)
		if err != nil {
			if r.closing.Err() != nil {
				return // cut short by Close: no fault of the shadow's
			}
			sh.errors.Add(1)
			r.o.log.Debug("ambassador: shadow copy failed", zap.Error(err))
			return
		}
		if resp.StatusCode >= 500 {
			sh.errors.Add(1)
		}
		bp := bufPool.Get().(*[]byte)
		io.CopyBuffer(io.Discard, resp.Body, *bp)
		bufPool.Put(bp)
		resp.Body.Close()
	}()
}

// shadowHost is the Host a copy of r carries: r's own, or the URL's, with
// "-shadow" after the name.
func shadowHost(r *http.Request) string {
	h := r.Host
	if h == "" && r.URL != nil {
		h = r.URL.Host
	}
	name, port := h, ""
	if i := lastColonOutsideBrackets(h); i >= 0 {
		name, port = h[:i], h[i:]
	}
	return name + "-shadow" + port
}

func lastColonOutsideBrackets(h string) int {
	for i := len(h) - 1; i >= 0; i-- {
		switch h[i] {
		case ':':
			return i
		case ']':
			return -1
		}
	}
	return -1
}
