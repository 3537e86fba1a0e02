package election

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Forwarding RPCs. A follower cannot write to raft, so it sends the
// request to the leader over the Node's own listener (see mux) and the
// leader answers. Frames are a 4-byte big-endian length and a JSON body.

const maxFrame = 1 << 20

const (
	rpcApply    = "apply"
	rpcOwner    = "owner"
	rpcJoin     = "join"
	rpcRemove   = "remove"
	rpcTransfer = "transfer"
)

type rpcRequest struct {
	Kind     string   `json:"kind"`
	Cmd      *command `json:"cmd,omitempty"`
	Resource string   `json:"res,omitempty"`
	ID       string   `json:"id,omitempty"`
	Addr     string   `json:"addr,omitempty"`
	From     string   `json:"from,omitempty"`    // transfer: the leader the caller saw
	Timeout  int64    `json:"timeout,omitempty"` // ns left on the caller's deadline
}

// Response codes that the caller turns back into errors.
const (
	rpcOK = iota
	rpcNotLeader
	rpcClosed
	rpcInvalid
	rpcNoOwner
	rpcFailed
)

type rpcResponse struct {
	Code   int     `json:"code"`
	Err    string  `json:"err,omitempty"`
	Result *result `json:"result,omitempty"`
	Owner  *Owner  `json:"owner,omitempty"`
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("election: frame of %d bytes exceeds %d", len(b), maxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("election: frame of %d bytes exceeds %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("election: decode frame: %w", err)
	}
	return nil
}

// serveForward answers requests on one connection until it closes.
func (n *Node) serveForward(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		var req rpcRequest
		if err := readFrame(br, &req); err != nil {
			return
		}
		resp := n.serve(&req)
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		if err := writeFrame(c, resp); err != nil {
			return
		}
	}
}

// serve answers a forwarded request under the caller's remaining deadline.
func (n *Node) serve(req *rpcRequest) rpcResponse {
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	if req.Timeout > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, time.Duration(req.Timeout))
		defer c2()
	}
	// A node that has just lost leadership, or a follower asked to pass a
	// Join on, routes the request onward like a local caller would.
	resp, err := n.routed(ctx, req)
	if err != nil {
		resp.Code, resp.Err = errCode(err), err.Error()
	}
	return resp
}

// handle runs a request on this node, which should be the leader.
func (n *Node) handle(ctx context.Context, req *rpcRequest) rpcResponse {
	var err error
	var resp rpcResponse
	switch req.Kind {
	case rpcApply:
		if req.Cmd == nil {
			err = invalid("apply without a command")
			break
		}
		var r result
		r, err = n.applyLocal(ctx, *req.Cmd)
		resp.Result = &r
	case rpcOwner:
		var o Owner
		o, err = n.ownerLocal(ctx, req.Resource)
		resp.Owner = &o
	case rpcJoin:
		err = n.joinLocal(ctx, req.ID, req.Addr)
	case rpcRemove:
		err = n.removeLocal(ctx, req.ID)
	case rpcTransfer:
		err = n.transferLocal(ctx, req.ID, req.From)
	default:
		err = invalid("unknown request %q", req.Kind)
	}
	if err != nil {
		resp.Code, resp.Err = errCode(err), err.Error()
	}
	return resp
}

// errNotLeaderHere is the local form of "ask someone else": the caller
// looks the leader up again and retries.
var errNotLeaderHere = errors.New("election: this node is not the leader")

func errCode(err error) int {
	switch {
	case errors.Is(err, errNotLeaderHere):
		return rpcNotLeader
	case errors.Is(err, ErrClosed):
		return rpcClosed
	case errors.Is(err, ErrInvalid):
		return rpcInvalid
	case errors.Is(err, ErrNoOwner):
		return rpcNoOwner
	}
	return rpcFailed
}

func codeErr(code int, msg string) error {
	switch code {
	case rpcOK:
		return nil
	case rpcNotLeader:
		return errNotLeaderHere
	case rpcClosed:
		// The remote node is closing: to us that is like a lost leader.
		return errNotLeaderHere
	case rpcInvalid:
		return fmt.Errorf("%w (from leader): %s", ErrInvalid, msg)
	case rpcNoOwner:
		return ErrNoOwner
	}
	return &remoteError{msg}
}

// forwarder keeps a few idle connections per peer, so that a forwarded
// request usually costs one round trip and no dial.
type forwarder struct {
	m    *mux
	max  int
	mu   sync.Mutex
	idle map[string][]net.Conn
	shut bool
}

func (f *forwarder) call(ctx context.Context, addr string, req *rpcRequest) (rpcResponse, error) {
	var resp rpcResponse
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = int64(time.Until(dl))
		if req.Timeout <= 0 {
			// Not ctx.Err(): it may still be nil when the deadline has
			// just passed, and a nil error with an empty response reads
			// as success.
			return resp, context.DeadlineExceeded
		}
	}
	c, err := f.get(ctx, addr)
	if err != nil {
		return resp, err
	}
	// Unblock the exchange when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	err = writeFrame(c, req)
	if err == nil {
		err = readFrame(c, &resp)
	}
	if !stop() {
		_ = c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return resp, ctxErr
		}
		return resp, err
	}
	if err != nil {
		_ = c.Close()
		return resp, err
	}
	f.put(addr, c)
	return resp, nil
}

func (f *forwarder) get(ctx context.Context, addr string) (net.Conn, error) {
	f.mu.Lock()
	if f.shut {
		f.mu.Unlock()
		return nil, ErrClosed
	}
	if cs := f.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		f.idle[addr] = cs[:len(cs)-1]
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	return f.m.dialTag(ctx, addr, tagForward)
}

func (f *forwarder) put(addr string, c net.Conn) {
	_ = c.SetDeadline(time.Time{})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shut || len(f.idle[addr]) >= f.max {
		_ = c.Close()
		return
	}
	f.idle[addr] = append(f.idle[addr], c)
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shut = true
	for _, cs := range f.idle {
		for _, c := range cs {
			_ = c.Close()
		}
	}
	f.idle = nil
}
