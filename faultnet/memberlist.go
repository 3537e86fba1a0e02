package faultnet

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberlistTransport is a [memberlist.NodeAwareTransport] on a [Network], so
// that a memberlist cluster runs in memory and a test can cut, partition,
// isolate and crash its members: gossip and probes travel as datagrams
// (see [Network.ListenPacket]), push/pull and fallback probes as
// connections (see [Network.Dial]). Create one with
// [Network.MemberlistTransport] and set it as [memberlist.Config].Transport;
// its methods are safe for concurrent use.
//
// Unlike the rest of the package, a MemberlistTransport runs two
// goroutines, because memberlist reads packets and connections from
// channels: one moves datagrams to PacketCh, the other accepted
// connections to StreamCh. Shutdown, which [memberlist.Memberlist.Shutdown]
// calls, stops and joins both.
//
// Connections handed to memberlist, dialled or accepted, belong to it and
// it closes them; [Network.Crash] of the transport's node resets them and
// closes its listeners, after which the transport neither receives nor
// sends: the member looks crashed to the others until it is shut down
// and replaced by a new memberlist on a new transport.
type MemberlistTransport struct {
	n    *Network
	addr string // "IP:port", in the form memberlist dials
	ip   net.IP
	port int
	ln   *listener
	pc   *packetConn

	packetCh chan *memberlist.Packet // unbuffered: datagrams wait in pc's bounded queue
	streamCh chan net.Conn
	done     chan struct{} // closed by Shutdown
	stop     sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*MemberlistTransport)(nil)

// MemberlistTransport listens for connections ([Network.Listen]) and
// datagrams ([Network.ListenPacket]) at addr and returns a transport that
// advertises addr to memberlist and sends from its node.
//
// addr must be "IP:port" with a literal IP and a port in 1–65535, written
// as [net.JoinHostPort] writes it ("127.0.0.7:7946", "[::1]:7946"),
// because memberlist advertises an IP and port and the other members
// address this one by joining them again. The node is the IP as written
// ("127.0.0.7"), so tests cut and isolate members by their IPs. Anything
// else returns ErrInvalidAddr, with what was wrong; an address already
// listened on returns ErrAddrInUse.
func (n *Network) MemberlistTransport(addr string) (*MemberlistTransport, error) {
	ip, port, err := parseIPPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: Addr(addr), Err: err}
	}
	ln, err := n.listen(addr)
	if err != nil {
		return nil, err
	}
	pc, err := n.listenPacket(addr)
	if err != nil {
		ln.Close()
		return nil, err
	}
	t := &MemberlistTransport{
		n: n, addr: addr, ip: ip, port: port, ln: ln, pc: pc,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

// parseIPPort checks that addr is a literal, specified IP and a non-zero
// port in the form memberlist writes addresses in.
func parseIPPort(addr string) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %q is not IP:port", ErrInvalidAddr, addr)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil, 0, fmt.Errorf("%w: host %q in %q is not a literal, specified IP, which memberlist needs to advertise", ErrInvalidAddr, host, addr)
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, 0, fmt.Errorf("%w: port %q in %q is not in 1–65535", ErrInvalidAddr, portStr, addr)
	}
	if canon := net.JoinHostPort(ip.String(), strconv.Itoa(int(port))); canon != addr {
		return nil, 0, fmt.Errorf("%w: %q is not written as memberlist will dial it; use %q", ErrInvalidAddr, addr, canon)
	}
	return ip, int(port), nil
}

// readPackets moves datagrams from pc to PacketCh until pc closes or
// Shutdown.
func (t *MemberlistTransport) readPackets() {
	defer t.wg.Done()
	for {
		d, err := t.pc.read() // fails only once pc is closed
		if err != nil {
			return
		}
		if len(d.data) == 0 {
			continue // no message type byte; NetTransport drops these too
		}
		p := &memberlist.Packet{Buf: d.data, From: d.from, Timestamp: time.Now()}
		select {
		case t.packetCh <- p:
		case <-t.done:
			return
		}
	}
}

// acceptStreams moves accepted connections to StreamCh until the listener
// closes or Shutdown.
func (t *MemberlistTransport) acceptStreams() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept() // fails only once ln is closed
		if err != nil {
			return
		}
		select {
		case t.streamCh <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

// FinalAdvertiseAddr returns the transport's IP and port. memberlist
// passes its AdvertiseAddr and AdvertisePort: an empty ip means "not
// configured", and the port is then ignored (memberlist passes its
// default 7946 even when unset), as NetTransport does. A non-empty ip and
// port must equal the transport's, since the transport cannot be reached
// at any other address; otherwise FinalAdvertiseAddr returns an error
// naming both.
func (t *MemberlistTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		if want := net.ParseIP(ip); want == nil || !want.Equal(t.ip) || port != t.port {
			return nil, 0, fmt.Errorf("%w: memberlist advertise address %s differs from the transport's %s; leave AdvertiseAddr empty or set it to the transport's",
				ErrInvalidAddr, net.JoinHostPort(ip, strconv.Itoa(port)), t.addr)
		}
	}
	return append(net.IP(nil), t.ip...), t.port, nil
}

// WriteTo sends b as one datagram to addr ("IP:port") and returns when it
// was sent. As on UDP, a datagram that is lost (to a cut, the drop rate,
// an address nobody listens at, a full receiver) is no error; see
// [Network.ListenPacket]. It returns an error once the transport is shut
// down or its node crashed.
func (t *MemberlistTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if _, err := t.pc.WriteTo(b, Addr(addr)); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// WriteToAddress is WriteTo to addr.Addr; the node name in addr is not
// needed to route and is ignored.
func (t *MemberlistTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, addr.Addr)
}

// PacketCh returns the channel of datagrams received. Each Packet's From
// is the sender's transport address (Network "faultnet") and its
// Timestamp the time it was read. The transport's goroutine blocks until
// memberlist takes a packet; meanwhile further datagrams wait in the
// receiver's queue and are dropped beyond [MaxQueuedDatagrams], as a UDP
// socket's buffer would drop them.
func (t *MemberlistTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout connects to the transport at addr from this transport's
// node, as [Network.Dial] does, giving up after timeout (no limit when
// timeout is not positive): a cut makes it block until the timeout. It
// returns [net.ErrClosed] once the transport is shut down or its node
// crashed.
func (t *MemberlistTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.closed() {
		return nil, &net.OpError{Op: "dial", Net: network, Source: Addr(t.addr), Addr: Addr(addr), Err: net.ErrClosed}
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return t.n.Dial(ctx, t.ln.node, addr)
}

// DialAddressTimeout is DialTimeout to addr.Addr; the node name in addr
// is ignored.
func (t *MemberlistTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(addr.Addr, timeout)
}

// closed reports whether the stream listener is closed, by Shutdown or
// by a Crash of the node.
func (t *MemberlistTransport) closed() bool {
	t.ln.mu.Lock()
	defer t.ln.mu.Unlock()
	return t.ln.closed
}

// StreamCh returns the channel of accepted connections, which memberlist
// then owns.
func (t *MemberlistTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the transport's listeners, which frees its address and
// drops unread datagrams, and waits for its two goroutines to end; they
// do not wait for anyone to read PacketCh or StreamCh. Connections already
// handed out stay open. Shutdown is idempotent and safe to call
// concurrently; it always returns nil.
func (t *MemberlistTransport) Shutdown() error {
	t.stop.Do(func() {
		close(t.done)
		// After a Crash of the node these are closed already: fine.
		_ = t.ln.Close()
		_ = t.pc.Close()
	})
	t.wg.Wait()
	return nil
}
