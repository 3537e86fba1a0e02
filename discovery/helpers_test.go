package discovery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit/distkit/faultnet"
)

// settle bounds waits for gossip to spread. On an idle machine it takes
// well under a second; on a loaded one a member can miss a broadcast, and
// the next push/pull (every 15 s with PresetFast) repairs that. Waits end
// as soon as their condition holds.
const settle = 30 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a set of Nodes in one process: on loopback UDP/TCP, or on a
// faultnet network when net is set (members at 127.0.0.N:7946, N from 1).
type cluster struct {
	t    testing.TB
	net  *faultnet.Network
	opts []Option

	mu    sync.Mutex
	nodes map[string]*Node
	names []string
}

func newCluster(t testing.TB, size int, fn *faultnet.Network, opts ...Option) *cluster {
	t.Helper()
	c := &cluster{t: t, net: fn, opts: opts, nodes: map[string]*Node{}}
	t.Cleanup(c.closeAll)
	for i := range size {
		c.start(fmt.Sprintf("n%02d", i))
	}
	c.joinAll()
	c.waitConverged(settle)
	return c
}

// faultAddr is the faultnet address of the member named nXX.
func faultAddr(name string) string {
	var i int
	fmt.Sscanf(name, "n%d", &i)
	return fmt.Sprintf("127.0.0.%d:7946", i+1)
}

// faultNode is the faultnet node (for cuts) of the member named nXX.
func faultNode(name string) string {
	var i int
	fmt.Sscanf(name, "n%d", &i)
	return fmt.Sprintf("127.0.0.%d", i+1)
}

func (c *cluster) start(name string, opts ...Option) *Node {
	c.t.Helper()
	all := append(append([]Option(nil), c.opts...), opts...)
	if c.net != nil {
		tr, err := c.net.MemberlistTransport(faultAddr(name))
		if err != nil {
			c.t.Fatalf("transport for %s: %v", name, err)
		}
		all = append(all, WithTransport(tr))
	}
	n, err := New(name, all...)
	if err != nil {
		c.t.Fatalf("New(%s): %v", name, err)
	}
	c.mu.Lock()
	if _, ok := c.nodes[name]; !ok {
		c.names = append(c.names, name)
	}
	c.nodes[name] = n
	c.mu.Unlock()
	return n
}

func (c *cluster) node(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// live returns the running nodes, except the named ones.
func (c *cluster) live(except ...string) []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
outer:
	for _, name := range c.names {
		n := c.nodes[name]
		if n == nil {
			continue
		}
		for _, e := range except {
			if e == name {
				continue outer
			}
		}
		out = append(out, n)
	}
	return out
}

func (c *cluster) joinAll() {
	c.t.Helper()
	nodes := c.live()
	seed := nodes[0].Addr().String()
	for _, n := range nodes[1:] {
		c.join(n, seed)
	}
}

func (c *cluster) join(n *Node, seeds ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Join(ctx, seeds...); err != nil {
		c.t.Fatalf("%s: Join: %v", n.Name(), err)
	}
}

// crash closes a node without leaving, as a crash would.
func (c *cluster) crash(name string) {
	c.mu.Lock()
	n := c.nodes[name]
	c.nodes[name] = nil
	c.mu.Unlock()
	n.Close()
}

func (c *cluster) closeAll() {
	var wg sync.WaitGroup
	for _, n := range c.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Close()
		}()
	}
	wg.Wait()
}

func (c *cluster) waitConverged(d time.Duration) {
	c.t.Helper()
	nodes := c.live()
	waitUntil(c.t, d, fmt.Sprintf("%d nodes to see each other", len(nodes)), func() string {
		var behind []string
		for _, n := range nodes {
			seen := map[string]bool{}
			for _, m := range n.Members() {
				seen[m.Name] = true
			}
			if missing := missingFrom(seen, nodes); len(missing) > 0 || len(seen) != len(nodes) {
				behind = append(behind, fmt.Sprintf("%s lists %d, misses %v", n.Name(), len(seen), missing))
			}
		}
		return strings.Join(behind, "; ")
	})
}

// missingFrom returns the names of nodes not in seen.
func missingFrom(seen map[string]bool, nodes []*Node) []string {
	var missing []string
	for _, o := range nodes {
		if !seen[o.Name()] {
			missing = append(missing, o.Name())
		}
	}
	return missing
}

// waitUntil polls check until it returns "", and fails the test with the
// last thing it returned if that takes longer than d.
func waitUntil(t testing.TB, d time.Duration, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		why := check()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", d, what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder collects a node's events in the background.
type recorder struct {
	mu     sync.Mutex
	events []Event
	done   chan struct{}
}

func record(t testing.TB, n *Node) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{done: make(chan struct{})}
	ch := n.Watch(ctx)
	go func() {
		defer close(r.done)
		for e := range ch {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// of returns the kinds of events recorded about member, in order.
func (r *recorder) of(member string) []EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []EventKind
	for _, e := range r.events {
		if e.Member.Name == member {
			out = append(out, e.Kind)
		}
	}
	return out
}

func (r *recorder) first(member string, kind EventKind) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Member.Name == member && e.Kind == kind {
			return e, true
		}
	}
	return Event{}, false
}

func (r *recorder) count(kind EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, e := range r.events {
		if e.Kind == kind {
			c++
		}
	}
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// firstPending returns the first EventSuspect about member raised because
// memberlist declared it dead (those carry no Suspicion record).
func (r *recorder) firstPending(member string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Member.Name == member && e.Kind == EventSuspect && e.Suspicion == nil {
			return e, true
		}
	}
	return Event{}, false
}

func (r *recorder) pending(member string) bool {
	_, ok := r.firstPending(member)
	return ok
}
