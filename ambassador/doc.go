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
// Plain-HTTP requests without a body reach their backends over pooled
// HTTP/1.1 connections, written and read in the request's own goroutine
// (see WithTransport); requests with a body, upgrades and https go
// through an http.Transport (configured for TLS by WithTLS), whose reader
// beside its writer sees a backend that answers before the body is sent.
//
// Resilience, each off until asked for:
//   - WithRetry retries requests safe to repeat, on failures worth another
//     try (never a 4xx), to another backend, within the request's deadline
//     and a Budget shared with hedges (WithBudget), with a per-try timeout;
//   - WithHedge sends a copy of a slow request to another backend, within
//     the same budget, and takes the first answer;
//   - WithOutlierDetection takes backends that fail in a row or too often
//     out of balancing for a time that grows each time, capped so that
//     the pool never empties; WithHealthCheck does the same by asking
//     each backend for a path;
//   - WithBreaker fails requests to a backend at once while its failure
//     rate is high, and lets a capped number of probes find out when it
//     is back;
//   - WithShadow mirrors a share of the requests to another service and
//     throws its answers away.
//
// Stats counts, per backend, requests, errors, latency, retries, hedges,
// budget refusals, ejections and the breaker's state.
//
// Forwarder is the ambassador for protocols that are not HTTP: it
// balances TCP connections, or shards them by a key read from their
// first bytes, with TLS on either side.
//
// Errors: a Router with no backends answers 503 (ErrNoBackends), a
// request without the key its policy routes by 400 (ErrNoKey), a backend
// that times out 504, one whose breaker is open 503 (ErrCircuitOpen), and
// one that fails, or a policy that cannot place the request, 502; the body gives a reason that names no address or key,
// and the error goes to the log. The Transport returns the errors
// themselves (a *BackendError names the backend). Bad configuration is
// ErrInvalid.
package ambassador
