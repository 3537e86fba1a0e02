package discovery

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// Option configures a Node; pass options to New.
type Option func(*options) error

// Preset chooses the gossip timing a Node starts from.
type Preset int

// Presets. PresetFast is the default; the others are memberlist's own.
const (
	// PresetFast is tuned for a LAN (round trips well under 50 ms): a
	// probe every 200 ms with a 100 ms timeout, suspicion for 3 ×
	// log10(N) probe intervals, gossip every 100 ms. A crashed member is
	// reported failed everywhere in about 1.1–1.5 s at 20 members. See
	// Node's documentation for how false alarms are kept out.
	PresetFast Preset = iota
	// PresetLAN is memberlist.DefaultLANConfig: 1 s probes, about 5–7 s
	// to detect a crash at 20 members.
	PresetLAN
	// PresetWAN is memberlist.DefaultWANConfig, for links with high or
	// variable latency.
	PresetWAN
	// PresetLocal is memberlist.DefaultLocalConfig, for loopback; it
	// converges slowly above about ten members.
	PresetLocal
)

// String names the preset.
func (p Preset) String() string {
	switch p {
	case PresetFast:
		return "fast"
	case PresetLAN:
		return "lan"
	case PresetWAN:
		return "wan"
	case PresetLocal:
		return "local"
	}
	return "unknown"
}

// Resolver looks up seeds given by name. *net.Resolver satisfies it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Defaults.
const (
	// DefaultBind is where a Node listens unless WithBind says otherwise:
	// loopback, with a port the kernel chooses (UDP and TCP share it).
	DefaultBind = "127.0.0.1:0"
	// DefaultCluster is the cluster label when WithCluster is not given.
	DefaultCluster = "distkit"
	// DefaultFailGrace is how long a member that memberlist declared dead,
	// but whose gossip port still accepts connections, has to show that
	// it is alive before it is reported failed.
	DefaultFailGrace = 5 * time.Second
)

// Fixed settings, not options.
const (
	// verifyTimeout bounds the connection attempt that checks a member
	// memberlist declared dead. Only a refusal is proof of failure; an
	// attempt that opens or times out leads to the fail grace.
	verifyTimeout = 500 * time.Millisecond
	// tick paces the maintenance loop: re-announcing lost metadata updates
	// and closing stale suspicion records.
	tick = 250 * time.Millisecond
	// defaultLeaveTimeout bounds Leave when its context has no deadline.
	defaultLeaveTimeout = 5 * time.Second
	// reconnectTicks: one failed member is retried every this many ticks
	// (1 s), for reconnectFor after it failed.
	reconnectTicks = 4
	reconnectFor   = time.Hour
	// leaveSenders bounds the parallel leave notices Leave sends.
	leaveSenders = 16
	// recentSuspicions is how many suspicion records Stats keeps.
	recentSuspicions = 64
)

type options struct {
	logger     *zap.Logger
	bind       string
	advertise  string
	cluster    string
	keys       [][]byte
	services   []Service
	health     Health
	preset     Preset
	failGrace  time.Duration
	mlConfig   func(*memberlist.Config)
	transport  memberlist.NodeAwareTransport
	resolver   Resolver
	verifyDial func(ctx context.Context, addr string) (net.Conn, error) // test hook
}

func defaultOptions() options {
	return options{
		logger:    zap.NewNop(),
		bind:      DefaultBind,
		cluster:   DefaultCluster,
		health:    Ready,
		preset:    PresetFast,
		failGrace: DefaultFailGrace,
		resolver:  net.DefaultResolver,
	}
}

// WithLogger sends the Node's logs, and memberlist's, to l. memberlist's
// [DEBUG], [INFO], [WARN] and [ERR] lines keep their levels.
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

// WithBind sets the "ip:port" the Node listens on, for UDP and TCP alike.
// Port 0 lets the kernel choose. Binding to all interfaces ("0.0.0.0:7946")
// needs WithAdvertise unless the host has one obvious private address.
// Default: DefaultBind ("127.0.0.1:0").
func WithBind(addr string) Option {
	return func(o *options) error {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return invalid("WithBind: %q is not ip:port: %v", addr, err)
		}
		o.bind = ap.String()
		return nil
	}
}

// WithAdvertise sets the "ip:port" other members use to reach this one,
// when it differs from the bind address (NAT, containers, binding to all
// interfaces). Both parts are required: memberlist ignores an advertised
// address without a port.
// Default: the bound address.
func WithAdvertise(addr string) Option {
	return func(o *options) error {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return invalid("WithAdvertise: %q is not ip:port: %v", addr, err)
		}
		if ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return invalid("WithAdvertise: %q: need a concrete address and a non-zero port", addr)
		}
		o.advertise = ap.String()
		return nil
	}
}

// WithCluster sets the cluster label. Members with different labels
// ignore each other's packets and connections, so two clusters never merge
// by accident, even if one is given the other's address as a seed.
// Default: DefaultCluster ("distkit").
func WithCluster(label string) Option {
	return func(o *options) error {
		if err := validName("cluster label", label); err != nil {
			return err
		}
		o.cluster = label
		return nil
	}
}

// WithKeys turns on encryption of all gossip (AES-GCM). The first key is
// the primary, used to encrypt; all are tried to decrypt, which is what
// lets keys be rotated while the cluster runs (see Node.InstallKey). Keys
// are 16, 24 or 32 bytes (AES-128, -192, -256). Every member needs the
// primary key of every other member installed.
// Default: no encryption.
func WithKeys(primary []byte, others ...[]byte) Option {
	return func(o *options) error {
		keys := append([][]byte{primary}, others...)
		for i, k := range keys {
			if err := checkKey(k); err != nil {
				return invalid("WithKeys: key %d: %v", i, err)
			}
		}
		o.keys = make([][]byte, len(keys))
		for i, k := range keys {
			o.keys[i] = append([]byte(nil), k...)
		}
		return nil
	}
}

// WithServices registers services from the start, as Register would.
// Default: none.
func WithServices(services ...Service) Option {
	return func(o *options) error {
		for _, s := range services {
			if err := s.validate(); err != nil {
				return err
			}
		}
		o.services = append(o.services, services...)
		return nil
	}
}

// WithHealth sets the health the Node starts with; start NotReady when
// the process needs to warm up, then call SetHealth(Ready).
// Default: Ready.
func WithHealth(h Health) Option {
	return func(o *options) error {
		if !h.valid() {
			return invalid("WithHealth: unknown health %d", h)
		}
		o.health = h
		return nil
	}
}

// WithPreset chooses the gossip timing.
// Default: PresetFast.
func WithPreset(p Preset) Option {
	return func(o *options) error {
		if p < PresetFast || p > PresetLocal {
			return invalid("WithPreset: unknown preset %d", p)
		}
		o.preset = p
		return nil
	}
}

// WithFailGrace sets how long a member that memberlist declared dead, but
// whose gossip port still accepts connections, may take to show it is
// alive before it is reported failed. It stops a member that is only slow
// (a starved CPU, a long pause) from being reported failed, at the cost of
// reporting a hung process this much later than a crashed one.
// Default: DefaultFailGrace (5 s).
func WithFailGrace(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return invalid("WithFailGrace: negative duration %v", d)
		}
		o.failGrace = d
		return nil
	}
}

// WithMemberlistConfig is an escape hatch: f may change the
// memberlist.Config after the preset is applied. discovery owns and
// overwrites Name, Transport, BindAddr, BindPort, AdvertiseAddr,
// AdvertisePort, Label, Keyring, SecretKey, Delegate, Events, Conflict,
// Alive, Logger and LogOutput.
// Default: none.
func WithMemberlistConfig(f func(*memberlist.Config)) Option {
	return func(o *options) error {
		if f == nil {
			return invalid("WithMemberlistConfig: nil func")
		}
		o.mlConfig = f
		return nil
	}
}

// WithTransport runs gossip over t instead of UDP and TCP sockets, for
// example over faultnet in tests. WithBind and WithAdvertise are then
// ignored: the transport decides the address.
// Default: memberlist's network transport on the bind address.
func WithTransport(t memberlist.NodeAwareTransport) Option {
	return func(o *options) error {
		if t == nil {
			return invalid("WithTransport: nil transport")
		}
		o.transport = t
		return nil
	}
}

// WithResolver sets the resolver used for seeds given by host name or as
// DNS SRV records.
// Default: net.DefaultResolver.
func WithResolver(r Resolver) Option {
	return func(o *options) error {
		if r == nil {
			return invalid("WithResolver: nil resolver")
		}
		o.resolver = r
		return nil
	}
}

func checkKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return invalid("key is %d bytes; need 16, 24 or 32", len(k))
}

// memberlistConfig builds memberlist's configuration from the preset and
// the escape hatch; the caller fills in the fields discovery owns.
func (o *options) memberlistConfig() *memberlist.Config {
	var c *memberlist.Config
	switch o.preset {
	case PresetLAN:
		c = memberlist.DefaultLANConfig()
	case PresetWAN:
		c = memberlist.DefaultWANConfig()
	case PresetLocal:
		c = memberlist.DefaultLocalConfig()
	default:
		c = memberlist.DefaultLANConfig()
		// Measured at 20 members on loopback: crash reported everywhere in
		// 1.07–1.5 s (LAN: 5–7 s). Suspicion is 3 × log10(N) × 200 ms,
		// shortened to that minimum by one independent confirmation.
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 3
		c.GossipInterval = 100 * time.Millisecond
		c.PushPullInterval = 15 * time.Second
		c.GossipToTheDeadTime = 15 * time.Second
		c.TCPTimeout = 2 * time.Second
	}
	// A member that restarts on a new address keeps its name: let the
	// name move to the new address as soon as the old one is dead
	// (memberlist#157; 0 would forbid it forever).
	c.DeadNodeReclaimTime = time.Millisecond
	if o.mlConfig != nil {
		o.mlConfig(c)
	}
	return c
}
