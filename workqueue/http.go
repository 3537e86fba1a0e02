package workqueue

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
	"strings"
	"sync"
	"time"
)

// The HTTP protocol, for Server and Client: POST requests with JSON
// bodies, at these paths under the base URL.
const (
	pathEnqueue = "/enqueue" // {"items": [wireItem]} → 204
	pathClaim   = "/claim"   // ?lease=ms&wait=ms → 200 wireClaim, or 204 if none came
	pathAck     = "/ack"     // wireRef → 204
	pathNack    = "/nack"    // wireRef with reason → 204
	pathExtend  = "/extend"  // wireRef with lease → 200 wireClaim
	pathDead    = "/dead"    // GET → 200 [wireDead]
	pathRequeue = "/requeue" // {"ids": [...]} → 204
	pathStats   = "/stats"   // GET → 200 Stats
	maxWait     = 25 * time.Second
	maxLease    = 24 * time.Hour // the longest lease a Server grants
)

// Status codes errors travel as; Client maps them back.
var statusOf = []struct {
	err    error
	status int
}{
	{ErrInvalid, http.StatusBadRequest},
	{ErrNotHeld, http.StatusConflict},
	{ErrNotFound, http.StatusNotFound},
	{ErrClosed, http.StatusServiceUnavailable},
}

type wireItem struct {
	ID        string    `json:"id,omitempty"`
	Payload   []byte    `json:"payload"`
	Key       string    `json:"key,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	Attempt   int       `json:"attempt,omitempty"`
}

type wireClaim struct {
	wireItem
	Token    uint64 `json:"token"`
	LeaseMs  int64  `json:"lease_left_ms"` // the deadline, as time left: clocks differ
	Failures int    `json:"failures,omitempty"`
	Expiries int    `json:"expiries,omitempty"`
}

type wireRef struct {
	ID        string `json:"id"`
	Token     uint64 `json:"token"`
	Reason    string `json:"reason,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	LeaseMs   int64  `json:"lease_ms,omitempty"`
}

type wireDead struct {
	wireItem
	Reason   string    `json:"reason"`
	Failures int       `json:"failures"`
	Expiries int       `json:"expiries"`
	At       time.Time `json:"at"`
}

// Server serves a Queue over HTTP to Clients on other machines, which
// share it as if it were theirs (the book's work-queue source). Dead
// letters and stats are served if the queue offers them.
//
// The server holds the claims it has handed out until they are acked or
// nacked, or, for claims whose holder went away, until a sweep (one every
// 1024 claims) finds them a minute past their deadline. A remote worker
// may lease an item for at most 24 hours at a time.
type Server struct {
	q        Queue
	maxBytes int64

	mu     sync.Mutex
	claims map[uint64]Claim // by token
	served int              // claims since the last sweep
}

// NewServer returns a Server (an http.Handler) serving q. Request bodies over maxBytes
// (0: 64 MiB) are refused.
func NewServer(q Queue, maxBytes int64) (*Server, error) {
	if q == nil {
		return nil, invalid("NewServer needs a queue")
	}
	if maxBytes < 0 {
		return nil, invalid("max bytes %d: want 0 or more", maxBytes)
	}
	if maxBytes == 0 {
		maxBytes = 64 << 20
	}
	return &Server{q: q, maxBytes: maxBytes, claims: map[uint64]Claim{}}, nil
}

// ServeHTTP serves the protocol.
func (h *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, h.maxBytes)
	ctx := r.Context()
	var err error
	switch r.URL.Path {
	case pathEnqueue:
		var body struct{ Items []wireItem }
		if err = decode(r, &body); err == nil {
			items := make([]Item, len(body.Items))
			for i, it := range body.Items {
				items[i] = Item(it) // the queue sets Attempt
			}
			err = h.q.Enqueue(ctx, items...)
		}
	case pathClaim:
		err = h.claim(w, r)
		if err == nil {
			return
		}
	case pathAck, pathNack, pathExtend:
		var ref wireRef
		if err = decode(r, &ref); err == nil {
			err = h.settle(w, r.URL.Path, ref)
			if err == nil && r.URL.Path == pathExtend {
				return
			}
		}
	case pathDead:
		if d, ok := h.q.(DeadLetters); ok {
			var ds []DeadLetter
			if ds, err = d.DeadLetters(ctx); err == nil {
				out := make([]wireDead, len(ds))
				for i, l := range ds {
					out[i] = wireDead{wireItem: toWire(l.Item), Reason: l.Reason, Failures: l.Failures, Expiries: l.Expiries, At: l.At}
				}
				reply(w, http.StatusOK, out)
				return
			}
		} else {
			err = fmt.Errorf("%w: this queue keeps no dead letters", ErrNotFound)
		}
	case pathRequeue:
		if d, ok := h.q.(DeadLetters); ok {
			var body struct{ IDs []string }
			if err = decode(r, &body); err == nil {
				err = d.Requeue(ctx, body.IDs...)
			}
		} else {
			err = fmt.Errorf("%w: this queue keeps no dead letters", ErrNotFound)
		}
	case pathStats:
		if s, ok := h.q.(interface{ Stats() Stats }); ok {
			reply(w, http.StatusOK, s.Stats())
			return
		}
		err = fmt.Errorf("%w: this queue keeps no stats", ErrNotFound)
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func decode(r *http.Request, v any) error {
	if r.Method != http.MethodPost {
		return invalid("%s %s: want POST", r.Method, r.URL.Path)
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return invalid("request body: %v", err)
	}
	return nil
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	for _, s := range statusOf {
		if errors.Is(err, s.err) {
			status = s.status
			break
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusRequestTimeout
	}
	http.Error(w, err.Error(), status)
}

func toWire(it Item) wireItem { return wireItem(it) }

func toWireClaim(c Claim) wireClaim {
	return wireClaim{wireItem: toWire(c.Item), Token: c.Token, LeaseMs: time.Until(c.Deadline).Milliseconds(), Failures: c.Failures, Expiries: c.Expiries}
}

// claim long-polls the queue for up to the wait the client asked for.
func (h *Server) claim(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return invalid("%s %s: want POST", r.Method, r.URL.Path)
	}
	lease, err := msParam(r, "lease")
	if err != nil {
		return err
	}
	wait, err := msParam(r, "wait")
	if err != nil {
		return err
	}
	// Read the body to its end: only then does the server watch the
	// connection, and end r.Context() when the client goes away.
	io.Copy(io.Discard, r.Body)
	ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
	defer cancel()
	c, err := h.q.Claim(ctx, lease)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		w.WriteHeader(http.StatusNoContent) // nothing came: ask again
		return nil
	}
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.claims[c.Token] = c
	if h.served++; h.served >= 1024 {
		h.sweepLocked()
	}
	h.mu.Unlock()
	reply(w, http.StatusOK, toWireClaim(c))
	return nil
}

// sweepLocked forgets claims a minute past their deadline: their holders
// crashed or gave up, and the queue has them back.
func (h *Server) sweepLocked() {
	h.served = 0
	cutoff := time.Now().Add(-time.Minute)
	for tok, c := range h.claims {
		if c.Deadline.Before(cutoff) {
			delete(h.claims, tok)
		}
	}
}

func msParam(r *http.Request, name string) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 || ms > int64(maxLease/time.Millisecond) {
		return 0, invalid("%s=%q: want a positive number of milliseconds", name, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// settle acks, nacks or extends the claim a client names.
func (h *Server) settle(w http.ResponseWriter, path string, ref wireRef) error {
	h.mu.Lock()
	c, ok := h.claims[ref.Token]
	h.mu.Unlock()
	if !ok || c.ID != ref.ID {
		return notHeld(Claim{Item: Item{ID: ref.ID}, Token: ref.Token})
	}
	ctx := context.Background() // the queue's answer must not be lost to a client gone
	var err error
	switch path {
	case pathAck:
		err = h.q.Ack(ctx, c)
	case pathNack:
		reason := errors.New(ref.Reason)
		if ref.Permanent {
			reason = Permanent(reason)
		}
		err = h.q.Nack(ctx, c, reason)
	case pathExtend:
		if ref.LeaseMs <= 0 || ref.LeaseMs > maxLease.Milliseconds() {
			return invalid("lease %d ms: want 1 to %d", ref.LeaseMs, maxLease.Milliseconds())
		}
		if c, err = h.q.Extend(ctx, c, time.Duration(ref.LeaseMs)*time.Millisecond); err == nil {
			h.mu.Lock()
			h.claims[c.Token] = c
			h.mu.Unlock()
			reply(w, http.StatusOK, toWireClaim(c))
			return nil
		}
	}
	if path != pathExtend || errors.Is(err, ErrNotHeld) {
		h.mu.Lock()
		delete(h.claims, ref.Token)
		h.mu.Unlock()
	}
	return err
}

// Client is a Queue served by a Server elsewhere. Claims long-poll, so
// a blocked Claim costs one request every 25 s.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client of the Server at baseURL (http or https),
// using hc (nil: http.DefaultClient).
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalid("base URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc}, nil
}

// call POSTs (or GETs, with in nil) and decodes a JSON answer into out;
// it returns the status, and the queue's error for a failed one.
func (cl *Client) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, cl.base+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("workqueue: %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		text := strings.TrimSpace(string(msg))
		for _, s := range statusOf {
			if resp.StatusCode == s.status {
				// The server's text already names the sentinel.
				return resp.StatusCode, fmt.Errorf("%w (from %s: %s)", s.err, cl.base, strings.TrimPrefix(text, s.err.Error()+": "))
			}
		}
		return resp.StatusCode, fmt.Errorf("workqueue: %s%s: %s: %s", cl.base, path, resp.Status, text)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("workqueue: %s%s: decoding the answer: %w", cl.base, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Enqueue adds items to the remote queue.
func (cl *Client) Enqueue(ctx context.Context, items ...Item) error {
	body := struct {
		Items []wireItem `json:"items"`
	}{make([]wireItem, len(items))}
	for i, it := range items {
		body.Items[i] = toWire(it)
	}
	_, err := cl.call(ctx, http.MethodPost, pathEnqueue, body, nil)
	return err
}

// Claim claims from the remote queue, asking again every 25 s until an
// item comes or ctx ends.
func (cl *Client) Claim(ctx context.Context, lease time.Duration) (Claim, error) {
	if lease <= 0 {
		return Claim{}, invalid("lease %v: want more than 0", lease)
	}
	for {
		wait := maxWait
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if wait <= 0 {
			return Claim{}, context.DeadlineExceeded
		}
		var wc wireClaim
		path := fmt.Sprintf("%s?lease=%d&wait=%d", pathClaim, max(lease.Milliseconds(), 1), max(wait.Milliseconds(), 1))
		status, err := cl.call(ctx, http.MethodPost, path, struct{}{}, &wc)
		if err == nil && status == http.StatusOK {
			return fromWire(wc), nil // even if ctx has just ended: it is held
		}
		if ctx.Err() != nil {
			return Claim{}, ctx.Err()
		}
		if err != nil {
			return Claim{}, err
		}
	}
}

func fromWire(wc wireClaim) Claim {
	return Claim{
		Item:  Item(wc.wireItem),
		Token: wc.Token, Deadline: time.Now().Add(time.Duration(wc.LeaseMs) * time.Millisecond),
		Failures: wc.Failures, Expiries: wc.Expiries,
	}
}

// Ack marks a claimed item done.
func (cl *Client) Ack(ctx context.Context, c Claim) error {
	_, err := cl.call(ctx, http.MethodPost, pathAck, wireRef{ID: c.ID, Token: c.Token}, nil)
	return err
}

// Nack reports a failed attempt; a Permanent reason stays permanent.
func (cl *Client) Nack(ctx context.Context, c Claim, reason error) error {
	ref := wireRef{ID: c.ID, Token: c.Token, Reason: "failed", Permanent: IsPermanent(reason)}
	if reason != nil {
		ref.Reason = reason.Error()
	}
	_, err := cl.call(ctx, http.MethodPost, pathNack, ref, nil)
	return err
}

// Extend renews a claim's lease.
func (cl *Client) Extend(ctx context.Context, c Claim, lease time.Duration) (Claim, error) {
	if lease <= 0 {
		return c, invalid("lease %v: want more than 0", lease)
	}
	var wc wireClaim
	if _, err := cl.call(ctx, http.MethodPost, pathExtend, wireRef{ID: c.ID, Token: c.Token, LeaseMs: max(lease.Milliseconds(), 1)}, &wc); err != nil {
		return c, err
	}
	c.Deadline = time.Now().Add(time.Duration(wc.LeaseMs) * time.Millisecond)
	return c, nil
}

// DeadLetters lists the remote queue's dead letters.
func (cl *Client) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var ws []wireDead
	if _, err := cl.call(ctx, http.MethodGet, pathDead, nil, &ws); err != nil {
		return nil, err
	}
	ds := make([]DeadLetter, len(ws))
	for i, w := range ws {
		ds[i] = DeadLetter{Item: Item(w.wireItem),
			Reason: w.Reason, Failures: w.Failures, Expiries: w.Expiries, At: w.At}
	}
	return ds, nil
}

// Requeue puts the remote queue's dead letters back.
func (cl *Client) Requeue(ctx context.Context, ids ...string) error {
	_, err := cl.call(ctx, http.MethodPost, pathRequeue, struct {
		IDs []string `json:"ids"`
	}{ids}, nil)
	return err
}

// Stats returns the remote queue's stats, if it keeps them.
func (cl *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	_, err := cl.call(ctx, http.MethodGet, pathStats, nil, &s)
	return s, err
}
