package election

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit/distkit/faultnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a set of Nodes in one process, on a faultnet network (or on
// TCP when tcp is set), with stores that survive restarts.
type cluster struct {
	t      testing.TB
	net    *faultnet.Network
	tcp    bool
	ids    []string
	opts   []Option
	mu     sync.Mutex
	nodes  map[string]*Node
	stores map[string]*stores
	addrs  map[string]string
}

func newCluster(t testing.TB, size int, tcp bool, opts ...Option) *cluster {
	t.Helper()
	c := &cluster{
		t: t, net: faultnet.New(uint64(size)), tcp: tcp, opts: opts,
		nodes: map[string]*Node{}, stores: map[string]*stores{}, addrs: map[string]string{},
	}
	var peers []Peer
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		n := c.start(id)
		peers = append(peers, Peer{ID: id, Addr: n.Addr()})
	}
	t.Cleanup(c.closeAll)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(c.ids[0]).Bootstrap(ctx, peers); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	c.waitAgree()
	return c
}

// start creates (or restarts) node id on its old address and stores.
func (c *cluster) start(id string) *Node {
	c.t.Helper()
	c.mu.Lock()
	st := c.stores[id]
	if st == nil {
		st = newMemStores()
		c.stores[id] = st
	}
	addr := c.addrs[id]
	c.mu.Unlock()
	opts := append([]Option{withStores(st)}, c.opts...)
	if c.tcp {
		bind := addr
		if bind == "" {
			bind = "127.0.0.1:0"
		}
		opts = append(opts, WithTCP(bind))
	} else {
		ln, err := c.net.Listen(id)
		if err != nil {
			c.t.Fatalf("listen %s: %v", id, err)
		}
		opts = append(opts, WithNetwork(ln, c.net.Dialer(id)))
	}
	n, err := New(id, opts...)
	if err != nil {
		c.t.Fatalf("new %s: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.addrs[id] = n.Addr()
	c.mu.Unlock()
	return n
}

// withStores keeps raft's storage outside the Node, like a disk.
func withStores(s *stores) Option {
	return func(o *options) error { o.stores = s; return nil }
}

func (c *cluster) node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *cluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ns []*Node
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			ns = append(ns, n)
		}
	}
	return ns
}

// crash stops node id abruptly: its connections are reset and it closes.
func (c *cluster) crash(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n == nil {
		return
	}
	if !c.tcp {
		c.net.Crash(id)
	}
	_ = n.Close()
}

func (c *cluster) closeAll() {
	for _, n := range c.live() {
		_ = n.Close()
	}
}

// waitAgree waits until every live node knows the same leader, and
// returns it.
func (c *cluster) waitAgree() *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ns := c.live()
		var id string
		ok := true
		for _, n := range ns {
			l, known := n.Leader()
			if !known || (id != "" && l.ID != id) {
				ok = false
				break
			}
			id = l.ID
		}
		if ok && id != "" {
			if l := c.node(id); l != nil && l.IsLeader() {
				return l
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader within 10s")
	return nil
}

func (c *cluster) follower() *Node {
	l := c.waitAgree()
	for _, n := range c.live() {
		if n != l {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
