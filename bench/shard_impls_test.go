package bench

import (
	"fmt"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
	"github.com/dgryski/go-jump"
	"github.com/dgryski/go-maglev"
	"github.com/dgryski/go-rendezvous"
	"github.com/golang/groupcache/consistenthash"
	stathat "github.com/stathat/consistent"

	"github.com/distkit/distkit/shard"
)

// placer is what every sharding implementation is measured through.
type placer interface {
	Locate(key string) string
	// Add and Remove change membership by one node, in place where the
	// implementation can and by rebuilding where it cannot.
	Add(node string)
	Remove(node string)
}

// shardImpl builds a placer over nodes.
type shardImpl struct {
	name string
	new  func(nodes []string) placer
}

func shardImpls() []shardImpl {
	ours := func(name string, alg shard.Algorithm) shardImpl {
		return shardImpl{name, func(nodes []string) placer { return newDistkit(alg, nodes) }}
	}
	return []shardImpl{
		ours("distkit", shard.Default()),
		ours("distkit-ring", shard.Ring(shard.DefaultVnodes)),
		ours("distkit-rendezvous", shard.Rendezvous()),
		ours("distkit-maglev", shard.Maglev(shard.DefaultMaglevSize)),
		ours("distkit-jump", shard.Jump()),
		ours("distkit-bounded", shard.Bounded(shard.DefaultLoad, shard.DefaultPartitions)),
		{"buraksezer", newBuraksezer},
		{"groupcache", newGroupcache},
		{"stathat", newStathat},
		{"dgryski-maglev", newMaglev},
		{"dgryski-jump", newJump},
		{"dgryski-rendezvous", newRendezvous},
	}
}

// distkit uses a shard.Table, as an application would.
type distkit struct{ t *shard.Table }

func newDistkit(alg shard.Algorithm, nodes []string) placer {
	t, err := shard.New(shard.Nodes(nodes...), shard.WithAlgorithm(alg))
	if err != nil {
		panic(err)
	}
	return distkit{t}
}

func (d distkit) Locate(key string) string {
	node, _ := d.t.Locate(key)
	return node
}

func (d distkit) Add(node string) {
	if err := d.t.Add(shard.Node{ID: node, Weight: 1}); err != nil {
		panic(err)
	}
}

func (d distkit) Remove(node string) {
	if err := d.t.Remove(node); err != nil {
		panic(err)
	}
}

// buraksezer/consistent with xxhash, its default replication factor and
// bounded load, and a prime partition count of at least 16 per member (its
// default 271 leaves members of large clusters without partitions).
type buraksezer struct{ c *consistent.Consistent }

type member string

func (m member) String() string { return string(m) }

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

func newBuraksezer(nodes []string) placer {
	members := make([]consistent.Member, len(nodes))
	for i, n := range nodes {
		members[i] = member(n)
	}
	return buraksezer{consistent.New(members, consistent.Config{
		PartitionCount:    primeAtLeast(max(271, 16*len(nodes))),
		ReplicationFactor: 20,
		Load:              1.25,
		Hasher:            xxhasher{},
	})}
}

func (b buraksezer) Locate(key string) string { return b.c.LocateKey([]byte(key)).String() }
func (b buraksezer) Add(node string)          { b.c.Add(member(node)) }
func (b buraksezer) Remove(node string)       { b.c.Remove(node) }

// groupcache's consistenthash with its defaults as groupcache's HTTPPool
// uses them: 50 replicas, CRC-32. It cannot remove a node, so membership
// changes rebuild the map, as HTTPPool.Set does.
type groupcache struct {
	m     *consistenthash.Map
	nodes []string
}

func newGroupcache(nodes []string) placer {
	g := &groupcache{nodes: append([]string(nil), nodes...)}
	g.rebuild()
	return g
}

func (g *groupcache) rebuild() {
	g.m = consistenthash.New(50, nil)
	g.m.Add(g.nodes...)
}

func (g *groupcache) Locate(key string) string { return g.m.Get(key) }
func (g *groupcache) Add(node string)          { g.nodes = append(g.nodes, node); g.rebuild() }
func (g *groupcache) Remove(node string)       { g.nodes = without(g.nodes, node); g.rebuild() }

// stathat/consistent with its defaults (20 replicas, CRC-32).
type stathatImpl struct{ c *stathat.Consistent }

func newStathat(nodes []string) placer {
	c := stathat.New()
	c.Set(nodes)
	return stathatImpl{c}
}

func (s stathatImpl) Locate(key string) string {
	node, err := s.c.Get(key)
	if err != nil {
		panic(err)
	}
	return node
}
func (s stathatImpl) Add(node string)    { s.c.Add(node) }
func (s stathatImpl) Remove(node string) { s.c.Remove(node) }

// dgryski/go-maglev with its small table (65537) and xxhash keys. Adding a
// node needs a new table.
type maglevImpl struct {
	t     *maglev.Table
	nodes []string
}

func newMaglev(nodes []string) placer {
	m := &maglevImpl{nodes: append([]string(nil), nodes...)}
	m.t = maglev.New(m.nodes, maglev.SmallM)
	return m
}

func (m *maglevImpl) Locate(key string) string { return m.nodes[m.t.Lookup(xxhash.Sum64String(key))] }
func (m *maglevImpl) Add(node string) {
	m.nodes = append(m.nodes, node)
	m.t = maglev.New(m.nodes, maglev.SmallM)
}
func (m *maglevImpl) Remove(node string) {
	m.nodes = without(m.nodes, node)
	m.t = maglev.New(m.nodes, maglev.SmallM)
}

// dgryski/go-jump with xxhash keys over the node list in order.
type jumpImpl struct{ nodes []string }

func newJump(nodes []string) placer { return &jumpImpl{append([]string(nil), nodes...)} }

func (j *jumpImpl) Locate(key string) string {
	return j.nodes[jump.Hash(xxhash.Sum64String(key), len(j.nodes))]
}
func (j *jumpImpl) Add(node string)    { j.nodes = append(j.nodes, node) }
func (j *jumpImpl) Remove(node string) { j.nodes = without(j.nodes, node) }

// dgryski/go-rendezvous with xxhash. Its Remove indexes one past the end
// of its slices (r.nstr[l] for l = len) and panics at this version, so
// removals rebuild with New.
type rendezvousImpl struct {
	r     *rendezvous.Rendezvous
	nodes []string
}

func newRendezvous(nodes []string) placer {
	nodes = append([]string(nil), nodes...)
	return &rendezvousImpl{rendezvous.New(nodes, xxhash.Sum64String), nodes}
}

func (r *rendezvousImpl) Locate(key string) string { return r.r.Lookup(key) }
func (r *rendezvousImpl) Add(node string) {
	r.r.Add(node)
	r.nodes = append(r.nodes, node)
}
func (r *rendezvousImpl) Remove(node string) {
	r.nodes = without(r.nodes, node)
	r.r = rendezvous.New(r.nodes, xxhash.Sum64String)
}

func without(nodes []string, node string) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n != node {
			out = append(out, n)
		}
	}
	return out
}

func primeAtLeast(n int) int {
	for ; ; n++ {
		prime := n > 1
		for d := 2; d*d <= n && prime; d++ {
			prime = n%d != 0
		}
		if prime {
			return n
		}
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%d.example.internal:7946", i) }

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = nodeName(i)
	}
	return out
}
