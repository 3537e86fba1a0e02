package faultnet

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer is a raft.StreamLayer on a [Network], so that a
// raft.NetworkTransport can run over it: it listens at one address and
// dials from that address's node, so cuts and latency between nodes apply
// to raft's RPCs. Create one with [Network.StreamLayer]; safe for
// concurrent use.
//
// raft.NetworkTransport.Close closes the StreamLayer but not the
// connections in its pool or those it accepted; call CloseStreams on the
// transport, or [Network.Crash] the node, to end them.
type StreamLayer struct {
	l *listener
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// StreamLayer listens at addr as [Network.Listen] does and returns a
// StreamLayer whose Dial dials from addr's node. After a Crash of that
// node, make a new StreamLayer (and transport) for the restarted node.
func (n *Network) StreamLayer(addr string) (*StreamLayer, error) {
	l, err := n.listen(addr)
	if err != nil {
		return nil, err
	}
	return &StreamLayer{l: l}, nil
}

// Accept waits for and returns the next connection dialled to the
// StreamLayer's address; see [net.Listener].
func (s *StreamLayer) Accept() (net.Conn, error) { return s.l.Accept() }

// Close stops listening; see [net.Listener]. Established connections stay
// open.
func (s *StreamLayer) Close() error { return s.l.Close() }

// Addr returns the address the StreamLayer listens at, which raft uses as
// the transport's local address.
func (s *StreamLayer) Addr() net.Addr { return s.l.addr }

// Dial connects to the raft server at address from the StreamLayer's
// node, as [Network.Dial] does, giving up after timeout (no limit when
// timeout is not positive). A cut makes it block until the timeout, so
// raft sees the timeout a lost SYN would cause.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return s.l.n.Dial(ctx, s.l.node, string(address))
}
