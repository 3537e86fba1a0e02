// Package faultnet is an in-memory network for tests, through which a test
// breaks the connectivity between named nodes: latency and jitter, refused
// connection attempts, lost datagrams, connection resets, crashes, and
// one-way or two-way partitions that can be healed.
//
// Distributed code is only as good as its behaviour when the network
// misbehaves: a leader that cannot reach its followers, a follower that
// hears the leader but cannot answer, a proxy whose backend vanishes
// mid-request. Real sockets cannot be told to do that on cue, and tools
// that can (iptables, tc, toxiproxy) need privileges, processes and
// seconds per change. faultnet hands out ordinary [net.Listener],
// [net.Conn] and [net.PacketConn] values, so the code under test runs
// unchanged, while the test decides, between two lines, which nodes can
// hear which.
//
// # Use
//
//	n := faultnet.New(1)                       // seed for jitter and drops
//	ln, err := n.Listen("db:5432")             // node "db"
//	conn, err := n.Dial(ctx, "app", "db:5432") // from node "app"
//	n.SetLatency("app", "db", 5*time.Millisecond, time.Millisecond)
//	n.Cut("db", "app")                         // db's replies stall...
//	n.Heal("db", "app")                        // ...and arrive now, in order
//	n.Partition([]string{"a", "b"}, []string{"c"})
//	pc, err := n.ListenPacket("db:53")         // datagrams, as over UDP
//	n.Crash("db")                              // listeners closed, conns reset
//
// Plug it into the code under test where that code dials and listens:
// [Network.Dialer] fits http.Transport.DialContext and similar hooks,
// [Network.Listen] gives the listener to serve on, [Network.ListenPacket]
// the packet conn, [Network.StreamLayer] gives raft's NetworkTransport its
// stream layer, and [Network.MemberlistTransport] is a whole memberlist
// transport, so that a memberlist cluster gossips in memory.
// Nodes are just names: the host part of an address ("db" in "db:5432"),
// or the dialler's name passed to Dial. They need not be declared.
//
// # Semantics of connections: like TCP
//
// The faults behave as they would on TCP, because that is what the code
// under test was written against.
//
//   - A cut stalls; it does not drop. Bytes written in a cut direction on
//     an established connection are held, neither delivered nor lost; the
//     other direction keeps flowing. When the cut heals they arrive at
//     once, in order, as retransmissions would. Meanwhile the reader
//     blocks, so code that needs to notice a partition needs read
//     deadlines or heartbeats, exactly as on a real network. Bytes that had
//     arrived before the cut stay readable.
//   - Connection setup needs both directions. A Dial between two nodes
//     that are cut in either direction blocks, like a lost SYN, until the
//     cut heals or the context ends (then the error's Timeout is true when
//     the context hit its deadline). A one-way cut therefore stops new
//     connections both ways while established ones still carry data one
//     way.
//   - A Dial to an address with no listener is refused at once, as by a
//     reset; so is one that the drop rate refuses (a refusal rather than a
//     lost SYN, so that flaky links fail fast). A successful Dial takes
//     one round trip of the configured latency.
//   - Latency delays each Write's bytes by base plus random jitter, never
//     reordering a stream. Each direction buffers at most [MaxBuffered]
//     unread bytes; beyond that Write blocks, as with a full TCP window.
//   - Reset and Crash tear connections down: pending data is discarded and
//     both ends get [ErrReset] at once. Closing an end gives the peer
//     io.EOF after the data already written (once it is deliverable), and
//     makes the peer's Writes fail with EPIPE.
//   - Deadlines work as on net.TCPConn, including changing one while a Read
//     or Write is blocked; expiry returns [os.ErrDeadlineExceeded].
//
// # Semantics of datagrams: like UDP
//
// [Network.ListenPacket] opens a packet conn; its WriteTo never blocks and
// reports success whether or not the datagram arrives, as on UDP.
//
//   - A cut drops; it does not stall. A datagram sent into a cut direction
//     is lost, and so is one still in flight when the cut begins; after
//     the heal it never arrives. Datagrams that had arrived stay readable.
//   - Each datagram is delayed on its own by the direction's latency, so
//     jitter may reorder datagrams; each is lost with the direction's drop
//     rate.
//   - A datagram to an address with no packet conn is lost silently, and
//     so is one beyond the receiver's [MaxQueuedDatagrams] unread ones.
//   - Datagrams keep their boundaries; ReadFrom truncates one longer than
//     its buffer. Crash closes the node's packet conns.
//
// [Stats] counts datagrams sent, delivered and dropped, so a test can
// check how much a fault lost.
//
// [MemberlistTransport] runs hashicorp/memberlist over these: gossip and
// probes as datagrams, push/pull and fallback probes as connections. Its
// addresses are "IP:port" and its node is the IP, so a test isolates a
// member with n.Isolate("127.0.0.3").
//
// Errors come wrapped in [*net.OpError], so they are [net.Error] values;
// match them with [errors.Is] against this package's sentinels,
// [net.ErrClosed] or [os.ErrDeadlineExceeded].
//
// # When not to use it
//
// faultnet models connections and datagrams, not IP packets: there is no
// packet loss on established connections (TCP would hide it as latency),
// no duplication or corruption of datagrams, no MTU or datagram size
// limit, no bandwidth limit, no broadcast or multicast and no DNS. It does
// not test your TCP stack settings, keepalives or kernel buffers; run
// those against real sockets. For loopback tests where the network is not
// the subject, 127.0.0.1 with port 0 is simpler.
//
// # Lifecycle and concurrency
//
// All methods of [Network], its listeners, packet conns and connections
// are safe for concurrent use. faultnet starts no goroutines: blocked
// calls wait on channels and timers in the caller's goroutine, and a fault
// changed by another goroutine (a heal, a reset, a new deadline) wakes
// them. So there is nothing to shut down beyond closing what you opened;
// [Network.Crash] closes everything of one node, and [Stats].Conns and
// [Stats].PacketConns show what is still open. The one exception is
// [MemberlistTransport], whose two goroutines feed memberlist's channels;
// its Shutdown, which memberlist's Shutdown calls, joins them. Randomness
// (jitter, drops) comes from the seed given to [New]; a test that makes
// the same calls in the same order sees the same choices.
package faultnet
