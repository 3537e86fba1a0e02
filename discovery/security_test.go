package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestKeyRotation rotates the gossip key of a running cluster while one
// member keeps changing its metadata: nobody is reported failed, the
// changes keep arriving, and afterwards a node with only the old key
// cannot join.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	c := newCluster(t, 5, nil, WithKeys(oldKey))
	recs := map[string]*recorder{}
	for _, n := range c.live() {
		recs[n.Name()] = record(t, n)
	}
	// Traffic: n01 flips its health throughout.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	flips := 0
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			h := Ready
			if flips%2 == 0 {
				h = Draining
			}
			if err := c.node("n01").SetHealth(h); err != nil {
				t.Error(err)
				return
			}
			flips++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	obs := c.node("n00")
	step := func(what string, f func(*Node) error, done func(KeyStatus) bool) {
		t.Helper()
		for _, n := range c.live() {
			if err := f(n); err != nil {
				t.Fatalf("%s on %s: %v", what, n.Name(), err)
			}
		}
		waitFor(t, settle, what+" to spread", func() bool { return done(obs.KeyStatus(newKey)) })
	}
	step("InstallKey", func(n *Node) error { return n.InstallKey(newKey) }, func(s KeyStatus) bool { return s.Installed == 5 && s.Primary == 0 })
	if s := obs.KeyStatus(oldKey); s.Primary != 5 {
		t.Fatalf("old key status %+v", s)
	}
	step("UseKey", func(n *Node) error { return n.UseKey(newKey) }, func(s KeyStatus) bool { return s.Primary == 5 })
	if err := obs.RemoveKey(newKey); !errors.Is(err, ErrInvalid) {
		t.Fatalf("removing the primary key: %v", err)
	}
	step("RemoveKey", func(n *Node) error { return n.RemoveKey(oldKey) }, func(KeyStatus) bool {
		s := obs.KeyStatus(oldKey)
		return s.Installed == 0 && len(s.Missing) == 5
	})
	cancel()
	wg.Wait()
	// The last flip reaches everyone.
	want, _ := c.node("n01").Member("n01")
	waitFor(t, settle, "the last health change to spread", func() bool {
		for _, n := range c.live() {
			if m, _ := n.Member("n01"); m.Version != want.Version {
				return false
			}
		}
		return true
	})
	for name, r := range recs {
		if r.count(EventFail) != 0 || r.count(EventLeave) != 0 {
			t.Fatalf("%s saw members go during the rotation", name)
		}
	}
	t.Logf("%d health changes during the rotation", flips)

	stale, err := New("stale", WithKeys(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	_, err = stale.Join(ctxT(t, 5*time.Second), obs.Addr().String())
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("join with the removed key: %v, want ErrJoin", err)
	}
	t.Logf("old key: %v", err)
	plain, err := New("plain")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Join(ctxT(t, 5*time.Second), obs.Addr().String()); !errors.Is(err, ErrJoin) {
		t.Fatalf("join without encryption: %v, want ErrJoin", err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range c.live() {
		if len(n.Members()) != 5 {
			t.Fatalf("%s has %d members after rejected joins", n.Name(), len(n.Members()))
		}
	}
}

// TestClusterLabel: a node of another cluster, even given a member's
// address, neither joins nor pulls anyone into its cluster.
func TestClusterLabel(t *testing.T) {
	c := newCluster(t, 3, nil, WithCluster("blue"))
	other, err := New("green-1", WithCluster("green"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.Join(ctxT(t, 5*time.Second), c.node("n00").Addr().String())
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("cross-cluster join: %v, want ErrJoin", err)
	}
	t.Logf("other label: %v", err)
	_, err = c.node("n01").Join(ctxT(t, 5*time.Second), other.Addr().String())
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("join into the other cluster: %v, want ErrJoin", err)
	}
	time.Sleep(300 * time.Millisecond)
	if len(other.Members()) != 1 || len(c.node("n00").Members()) != 3 {
		t.Fatalf("clusters merged: %d and %d members", len(other.Members()), len(c.node("n00").Members()))
	}
}

type rawDelegate struct{ meta []byte }

func (d rawDelegate) NodeMeta(int) []byte                 { return d.meta }
func (d rawDelegate) NotifyMsg([]byte)                    {}
func (d rawDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d rawDelegate) LocalState(bool) []byte              { return nil }
func (d rawDelegate) MergeRemoteState(buf []byte, _ bool) {}

// TestMalformedMetaRejected: a plain memberlist node with garbage metadata
// and the right label is kept out of the view, and counted.
func TestMalformedMetaRejected(t *testing.T) {
	c := newCluster(t, 3, nil)
	for i, meta := range [][]byte{{0xff, 1, 2}, {metaFormat, 0, 9}, nil} {
		conf := memberlist.DefaultLocalConfig()
		conf.Name = fmt.Sprintf("intruder-%d", i)
		conf.BindAddr, conf.BindPort = "127.0.0.1", 0
		conf.Label = DefaultCluster
		conf.Delegate = rawDelegate{meta: meta}
		conf.Logger = log.New(io.Discard, "", 0)
		ml, err := memberlist.Create(conf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = ml.Join([]string{c.node("n00").Addr().String()})
		time.Sleep(300 * time.Millisecond)
		for _, n := range c.live() {
			if _, ok := n.Member(conf.Name); ok {
				t.Fatalf("%s admitted %s with metadata %x", n.Name(), conf.Name, meta)
			}
		}
		_ = ml.Shutdown()
	}
	if s := c.node("n00").Stats(); s.Rejected == 0 || s.Members != 3 {
		t.Fatalf("stats after intruders: %+v", s)
	}
}

type fakeResolver struct {
	hosts map[string][]net.IPAddr
	srv   map[string][]*net.SRV
}

func (r fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if a, ok := r.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if s, ok := r.srv[name]; ok {
		return name, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestJoinSeeds(t *testing.T) {
	seed, err := New("seed")
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	port := seed.Addr().Port()
	r := fakeResolver{
		hosts: map[string][]net.IPAddr{"gossip.test": {{IP: net.IPv4(127, 0, 0, 1)}}},
		srv:   map[string][]*net.SRV{"_gossip._udp.cluster.test": {{Target: "gossip.test.", Port: port}}},
	}
	// Only itself: nothing to do.
	if got, err := seed.Join(ctxT(t, time.Second), seed.Addr().String()); got != 0 || err != nil {
		t.Fatalf("joining only itself: %d, %v", got, err)
	}
	for i, s := range []string{"dnssrv+_gossip._udp.cluster.test", fmt.Sprintf("gossip.test:%d", port)} {
		n, err := New(fmt.Sprintf("m%d", i), WithResolver(r))
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		got, err := n.Join(ctxT(t, 5*time.Second), s, "nowhere.test:1")
		if err != nil || got != 1 {
			t.Fatalf("Join(%s): %d, %v", s, got, err)
		}
	}
	waitFor(t, settle, "3 members", func() bool { return len(seed.Members()) == 3 })
	n, _ := New("lost", WithResolver(r))
	defer n.Close()
	_, err = n.Join(ctxT(t, 5*time.Second), "nowhere.test:1", "dnssrv+_none._tcp.test")
	var dnsErr *net.DNSError
	if !errors.Is(err, ErrJoin) || !errors.As(err, &dnsErr) {
		t.Fatalf("unresolvable seeds: %v", err)
	}
}

// TestWatchCoalesces: a reader that does not read while a member changes
// 40 times still gets that member's newest state, in few events.
func TestWatchCoalesces(t *testing.T) {
	c := newCluster(t, 2, nil)
	a, b := c.node("n00"), c.node("n01")
	ch := a.Watch(t.Context())
	for i := range 40 {
		if err := b.Register(Service{Name: "s", Port: 1000 + i}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	final, _ := b.Member("n01")
	waitFor(t, settle, "the last change to arrive", func() bool {
		m, _ := a.Member("n01")
		return m.Version == final.Version
	})
	var got []Event
	for e := range ch {
		got = append(got, e)
		if e.Member.Name == "n01" && e.Member.Version == final.Version {
			break
		}
	}
	if got[0].Kind != EventJoin || got[1].Kind != EventJoin {
		t.Fatalf("watch did not start with the current members: %v %v", got[0].Kind, got[1].Kind)
	}
	var last Event
	count := 0
	for _, e := range got {
		if e.Member.Name == "n01" {
			last = e
			count++
		}
	}
	if s, _ := last.Member.Service("s"); s.Port != 1039 {
		t.Fatalf("last event has port %d, want 1039", s.Port)
	}
	if count > 3 || last.Coalesced == 0 {
		t.Fatalf("%d events for n01, last folded %d; want the backlog folded", count, last.Coalesced)
	}
	if last.Kind != EventJoin {
		t.Fatalf("a pending join folded into %v; want it to stay a join", last.Kind)
	}
}
