// Package ambassador is a client-side proxy: the ambassador pattern
// (Designing Distributed Systems, ch. 3) and replicated, load-balanced
// services (ch. 5). It stands beside a client and hides where a service
// really is: it picks a backend for each request by a Policy, forwards
// the request, and keeps per-backend stats that the policies read.
//
// One routing core (Router) serves two front ends:
//   - Router.Transport, an http.RoundTripper: the ambassador in the
//     client's own process (put it in an http.Client);
//   - Router.Proxy, an http.Handler: the ambassador as a reverse proxy in
//     a process of its own, which removes hop-by-hop headers and adds
//     X-Forwarded-For as RFC 9110 asks of a proxy.
//
// Policies balance (RoundRobin, WeightedRoundRobin, LeastRequests: the
// lesser loaded of two backends picked at random, and PeakEWMA: the same
// by latency times load, the default), shard (Sharded: the backend a
// Locator such as a shard.Table names for the request's key) or split
// traffic for experiments (Split: arms by weight, sticky by a key such
// as a cookie). A KeyFunc takes the key from a header, query parameter,
// path segment or cookie, or anything else. Backends change at run time
// with SetBackends; requests in flight finish where they started.
//
// Plain-HTTP backends are reached over pooled HTTP/1.1 connections,
// written and read in the request's own goroutine (see WithTransport).
//
// Errors: a Router with no backends answers 503 (ErrNoBackends), a
// request without the key its policy routes by 400 (ErrNoKey), a backend
// that times out 504, and one that fails, or a policy that cannot place
// the request, 502; the body gives a reason that names no address or key,
// and the error goes to the log. The Transport returns the errors
// themselves (a *BackendError names the backend). Bad configuration is
// ErrInvalid.
package ambassador
