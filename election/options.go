package election

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// Option configures a Node; pass options to New.
type Option func(*options) error

// Dialer opens a connection to a peer's address. net.Dialer.DialContext,
// tls.Dialer.DialContext and faultnet's dialers all have this shape.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

type options struct {
	logger    *zap.Logger
	bind      string
	advertise string
	serverTLS *tls.Config
	clientTLS *tls.Config
	listener  net.Listener
	dial      Dialer
	dir       string

	heartbeat  time.Duration
	raftConfig func(*raft.Config)
	stores     *stores // test hook: stores that outlive a Node
}

// Defaults. The heartbeat timeout decides failover time: followers notice
// a dead leader after one to two heartbeat timeouts, so 100 ms gives a new
// leader in about 150–300 ms on a LAN (raft's own default is 1 s, giving
// 1.5–2.5 s).
const (
	DefaultHeartbeatTimeout = 100 * time.Millisecond
	DefaultBind             = "127.0.0.1:0"
	// MinTTL and MaxTTL bound a lease's time to live. Below MinTTL a lease
	// would expire before a renewal could commit on a busy LAN.
	MinTTL = 50 * time.Millisecond
	MaxTTL = 24 * time.Hour
	// MaxResourceLen bounds resource names, which travel in every command.
	MaxResourceLen = 512
)

// Fixed settings, not options: nothing has needed to change them.
const (
	// ioTimeout bounds one raft RPC or forwarded reply on the wire.
	ioTimeout = time.Second
	// leaderMargin is the share of the heartbeat timeout after a quorum
	// acknowledgement during which Run's leader context stays valid.
	leaderMargin = 0.8
	// forwardPool is how many idle forwarding connections are kept per peer.
	forwardPool = 4
)

func defaultOptions() options {
	return options{
		logger:    zap.NewNop(),
		bind:      DefaultBind,
		heartbeat: DefaultHeartbeatTimeout,
	}
}

// WithLogger sends the Node's logs, and raft's, to l.
// Default: zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalid("WithLogger: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithTCP makes the Node listen on bind, a host:port (port 0 picks a free
// port). Default: "127.0.0.1:0".
func WithTCP(bind string) Option {
	return func(o *options) error {
		if _, _, err := net.SplitHostPort(bind); err != nil {
			return invalid("WithTCP: bind address %q: %v", bind, err)
		}
		o.bind = bind
		return nil
	}
}

// WithAdvertise sets the address other nodes use to reach this one, when
// it differs from the listener's (NAT, 0.0.0.0 binds).
// Default: the listener's address.
func WithAdvertise(addr string) Option {
	return func(o *options) error {
		if addr == "" {
			return invalid("WithAdvertise: empty address")
		}
		o.advertise = addr
		return nil
	}
}

// WithTLS encrypts the TCP transport. server is used for the listener and
// client for dialling peers; for mutual TLS set server.ClientAuth to
// tls.RequireAndVerifyClientCert and give client a certificate.
// Default: no TLS.
func WithTLS(server, client *tls.Config) Option {
	return func(o *options) error {
		if server == nil || client == nil {
			return invalid("WithTLS: both server and client configs are required")
		}
		o.serverTLS, o.clientTLS = server, client
		return nil
	}
}

// WithNetwork replaces TCP with any stream network: the Node accepts on ln
// (and closes it on Close) and reaches peers through dial. An in-memory
// cluster in one process uses a faultnet.Network's Listen and Dialer.
// Default: TCP (WithTCP).
func WithNetwork(ln net.Listener, dial Dialer) Option {
	return func(o *options) error {
		if ln == nil || dial == nil {
			return invalid("WithNetwork: listener and dialer are required")
		}
		o.listener, o.dial = ln, dial
		return nil
	}
}

// WithDir keeps the raft log, its stable state and snapshots in dir, so a
// Node that restarts keeps its place in the cluster. Every write is synced
// to disk before it counts.
// Default: in memory (a restarted Node is a new, empty member).
func WithDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return invalid("WithDir: empty directory")
		}
		o.dir = dir
		return nil
	}
}

// WithHeartbeatTimeout sets raft's heartbeat and election timeouts and its
// leader lease to d. Lower is faster failover and more elections on
// a stalled machine; raise it on slow or distant networks.
// Default: DefaultHeartbeatTimeout (100 ms).
func WithHeartbeatTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 10*time.Millisecond || d > time.Minute {
			return invalid("WithHeartbeatTimeout: %v is outside [10ms, 1m]", d)
		}
		o.heartbeat = d
		return nil
	}
}

// WithRaftConfig lets fn adjust the raft configuration after distkit has
// set it up; the result is validated by raft. LocalID, Logger and the
// notification channels belong to the Node and are restored after fn.
// This is the one escape hatch to raft; everything else is distkit's.
// Default: none.
func WithRaftConfig(fn func(*raft.Config)) Option {
	return func(o *options) error {
		if fn == nil {
			return invalid("WithRaftConfig: nil function")
		}
		o.raftConfig = fn
		return nil
	}
}
