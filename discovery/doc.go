// Package discovery is gossip membership and service discovery on
// hashicorp/memberlist: every member knows every other, the services each
// offers and whether each is ready, and learns within about a second when
// one joins, changes, leaves or fails, with no central registry to run.
//
// This is the "know and act" seed of the book's clusters: sharding,
// election and load balancing all need to know who is there. Feed Watch
// events into a shard table or a balancer; they meet through the small
// interfaces those packages declare.
//
// # Use
//
//	n, err := discovery.New("web-7", discovery.WithBind("10.0.0.7:7946"),
//		discovery.WithServices(discovery.Service{Name: "http", Port: 8080}))
//	_, err = n.Join(ctx, "10.0.0.1:7946", "dnssrv+_gossip._udp.prod.example")
//	for _, in := range n.Instances("http") { ... }  // ready instances
//	for e := range n.Watch(ctx) { ... }             // join, update, leave, fail
//	n.SetHealth(discovery.Draining)                 // before a planned stop
//	n.Leave(ctx); n.Close()
//
// # Identity
//
// A member is its name. A member that restarts, even on a new address,
// under the same name is the same member: the others report it failed
// (its old address refuses connections) and then joined, with a new
// Instance. Metadata changes carry a Version, and memberlist's incarnation
// numbers order them, so stale state never overwrites newer state.
//
// # Failure detection without false alarms
//
// The default timing (PresetFast) probes every 200 ms, so memberlist
// declares a crashed member dead in about a second at 20 members, against
// 5–7 s with its LAN defaults. Shorter timeouts alone would also declare
// members dead that are only slow (a starved CPU, a long pause), so
// discovery checks each death before reporting it:
//
//   - if the member's gossip port refuses the connection, its process is
//     gone: it is reported failed at once;
//   - otherwise (the port accepts, or the attempt times out, which a
//     starved CPU on our side can cause as well as a dead host or a
//     partition) it stays a Suspect member while discovery syncs state
//     with it so that it learns to refute, and is reported failed only if
//     it has not come back within the fail grace (WithFailGrace, 5 s).
//     Hung processes, dead hosts and partitions are therefore reported
//     about 5 s later than crashed processes. A member whose port accepted
//     stays in Instances meanwhile, so that service views do not flap on a
//     loaded machine; one whose port did not answer is left out.
//
// memberlist takes a dead member back on any message with a higher
// incarnation, and stale gossip can carry one after a crash; a member
// whose port refused is taken back only once the port stops refusing
// (Stats().Revivals counts those revivals).
//
// Stats().Vetoed counts the deaths that the check overruled. Members
// reported failed are retried once a second for an hour, so the two sides
// of a healed partition find each other again by themselves.
//
// # Metadata
//
// Health and services travel in memberlist's node metadata, which holds
// 512 bytes; Register and New refuse, with ErrMetaTooLarge and nothing
// changed, what would not fit. Roughly 10–20 services with a few short
// tags fit. Members with metadata that does not decode are kept out of
// the view and counted in Stats().Rejected.
//
// # Security
//
// WithKeys encrypts all gossip; InstallKey, UseKey and RemoveKey rotate
// keys while the cluster runs, and KeyStatus shows how far a key has
// spread (members gossip key fingerprints, never keys). WithCluster sets
// a label so that two clusters never merge, even if one is given the
// other's address. A node with the wrong key or label gets ErrJoin.
//
// # Suspicion audit
//
// When a member's probes of another fail, it records who suspected whom
// and gossips the record; the suspected member's refutation is gossiped
// too. Every node therefore sees the cluster's suspicions, not only its
// own, as EventSuspect and EventRefuted events and in Stats().Suspicions,
// with how each ended. memberlist exposes suspicions only in its logs, so
// discovery reads the few log lines that report them (pinned to
// memberlist v0.7.0; the tests break if they change).
//
// # Lifecycle and concurrency
//
// All methods are safe for concurrent use. A Node runs memberlist's
// goroutines plus one maintenance loop, one per Watch, and short-lived
// ones while a death is checked; Close stops and waits for all of them.
// Close without Leave looks like a crash to the others.
package discovery
