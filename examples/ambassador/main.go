// Command ambassador shows distkit's ambassador package on loopback, in
// three acts:
//
//  1. A sharding ambassador: a key-value service of three shards, with a
//     shard table placing each key; clients talk to one address.
//  2. An experiment: 90% of users to the stable version, 10% to the new
//     one, each user kept on one side by a cookie.
//  3. A replicated service of three replicas behind a balancing
//     ambassador with retries, outlier ejection and health checks. One
//     replica is killed mid-run: the ambassador ejects it, retries hide
//     the failures from clients, and when the replica comes back the
//     health checks and the end of its ejection let it back in.
//
// It prints what happened and exits by itself.
//
//	go run ./examples/ambassador
package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/shard"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	if err := sharded(); err != nil {
		return err
	}
	if err := experiment(); err != nil {
		return err
	}
	return replicated()
}

// kv is one shard of the key-value service: GET and PUT /kv/<key>.
type kv struct {
	name string
	mu   sync.Mutex
	m    map[string]string
}

func (s *kv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/kv/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		s.m[key] = string(b)
	case http.MethodGet:
		v, ok := s.m[key]
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v)
	}
}

func sharded() error {
	fmt.Println("== 1. sharding ambassador: three shards, one address")
	names := []string{"kv-0", "kv-1", "kv-2"}
	shards := map[string]*kv{}
	var backends []ambassador.BackendConfig
	for _, n := range names {
		s := &kv{name: n, m: map[string]string{}}
		srv := httptest.NewServer(s)
		defer srv.Close()
		shards[n] = s
		backends = append(backends, ambassador.BackendConfig{Name: n, URL: srv.URL})
	}
	table, err := shard.New(shard.Nodes(names...))
	if err != nil {
		return err
	}
	policy, err := ambassador.Sharded(ambassador.PathSegment(1), table)
	if err != nil {
		return err
	}
	r, err := ambassador.New(backends, ambassador.WithPolicy(policy))
	if err != nil {
		return err
	}
	defer r.Close()
	front := httptest.NewServer(r.Proxy()) // the ambassador, as its own server
	defer front.Close()

	const keys = 300
	for i := range keys {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/kv/user-%d", front.URL, i), strings.NewReader(fmt.Sprint(i*i)))
		if err := do(req, http.StatusOK); err != nil {
			return err
		}
	}
	for i := range keys {
		resp, err := http.Get(fmt.Sprintf("%s/kv/user-%d", front.URL, i))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != fmt.Sprint(i*i) {
			return fmt.Errorf("user-%d read back %q", i, b)
		}
	}
	fmt.Printf("wrote and read back %d keys through %s\n", keys, front.URL)
	for _, n := range names {
		fmt.Printf("  %s holds %3d keys\n", n, len(shards[n].m))
	}
	resp, err := http.Get(front.URL + "/") // no key in the path
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("a request without a key: %d %s\n", resp.StatusCode, strings.TrimSpace(string(b)))
	return nil
}

func experiment() error {
	fmt.Println("\n== 2. experiment: 90% stable, 10% canary, sticky per user")
	var backends []ambassador.BackendConfig
	for _, n := range []string{"stable-a", "stable-b", "canary"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, n)
		}))
		defer srv.Close()
		backends = append(backends, ambassador.BackendConfig{Name: n, URL: srv.URL})
	}
	policy, err := ambassador.Split([]ambassador.Arm{
		{Name: "stable", Backends: []string{"stable-a", "stable-b"}, Weight: 90},
		{Name: "canary", Backends: []string{"canary"}, Weight: 10},
	}, ambassador.Cookie("user"))
	if err != nil {
		return err
	}
	r, err := ambassador.New(backends, ambassador.WithPolicy(policy))
	if err != nil {
		return err
	}
	defer r.Close()
	client := &http.Client{Transport: r.Transport()} // the ambassador, in process

	const users, visits = 1000, 5
	count := map[string]int{}
	flipped := 0
	for u := range users {
		var first string
		for v := range visits {
			req, _ := http.NewRequest(http.MethodGet, "http://shop/", nil)
			req.AddCookie(&http.Cookie{Name: "user", Value: fmt.Sprintf("u%d", u)})
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			side := strings.TrimSuffix(strings.TrimSuffix(string(b), "-a"), "-b")
			if v == 0 {
				first = side
				count[side]++
			} else if side != first {
				flipped++
			}
		}
	}
	fmt.Printf("%d users, %d visits each: %d on stable (%.1f%%), %d on canary (%.1f%%); %d visits changed side\n",
		users, visits, count["stable"], 100*float64(count["stable"])/users, count["canary"], 100*float64(count["canary"])/users, flipped)
	return nil
}

// replica is one replica of the replicated service, on a fixed loopback
// address so that it can be killed and started again.
type replica struct {
	name string
	addr string
	srv  *http.Server
	done chan struct{}
}

func (p *replica) start() error {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.addr = l.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Replica", p.name)
		io.WriteString(w, "ok")
	})}
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		p.srv.Serve(l)
	}()
	return nil
}

func (p *replica) kill() {
	p.srv.Close() // closes the listener and every connection, at once
	<-p.done
}

func replicated() error {
	fmt.Println("\n== 3. replicated service: three replicas, one killed and brought back")
	replicas := []*replica{{name: "api-0", addr: "127.0.0.1:0"}, {name: "api-1", addr: "127.0.0.1:0"}, {name: "api-2", addr: "127.0.0.1:0"}}
	var backends []ambassador.BackendConfig
	for _, p := range replicas {
		if err := p.start(); err != nil {
			return err
		}
		backends = append(backends, ambassador.BackendConfig{Name: p.name, URL: "http://" + p.addr})
	}
	defer func() {
		for _, p := range replicas {
			p.kill()
		}
	}()
	r, err := ambassador.New(backends,
		ambassador.WithPolicy(ambassador.RoundRobin()),
		ambassador.WithRetry(ambassador.Retry{Attempts: 3, Backoff: time.Millisecond}),
		ambassador.WithOutlierDetection(ambassador.OutlierDetection{ConsecutiveFailures: 3, BaseEjection: time.Second, MaxEjectedPercent: 34}),
		ambassador.WithHealthCheck(ambassador.HealthCheck{Path: "/", Interval: 100 * time.Millisecond, Unhealthy: 2, Healthy: 2}))
	if err != nil {
		return err
	}
	defer r.Close()
	client := &http.Client{Transport: r.Transport()}

	var failed atomic.Int32
	phase := func(name string, n int) error {
		got := map[string]int{}
		for range n {
			resp, err := client.Get("http://api/")
			if err != nil {
				failed.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
				continue
			}
			got[resp.Header.Get("X-Replica")]++
			time.Sleep(time.Millisecond)
		}
		fmt.Printf("%-26s %s\n", name+":", spread(got))
		return nil
	}
	report := func() {
		for _, s := range r.Stats() {
			fmt.Printf("  %s: %4d tries, %2d failed, %2d retries went here, ejected %d times (now %-5v), healthy %v\n",
				s.Name, s.Requests, s.Errors, s.Retries, s.Ejections, s.Ejected, s.Healthy)
		}
	}

	if err := phase("all three up", 300); err != nil {
		return err
	}
	replicas[2].kill()
	fmt.Println("-- api-2 killed")
	if err := phase("api-2 down", 300); err != nil {
		return err
	}
	report()
	if err := replicas[2].start(); err != nil { // on the same address
		return err
	}
	fmt.Println("-- api-2 back")
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := r.Stats()[2]
		if st.Healthy && !st.Ejected {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("api-2 did not come back within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := phase("api-2 back in balancing", 300); err != nil {
		return err
	}
	report()
	fmt.Printf("requests the clients saw fail: %d of 900\n", failed.Load())
	return nil
}

// spread formats counts by name, in order.
func spread(got map[string]int) string {
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %3d  ", n, got[n])
	}
	return b.String()
}

// do sends req and checks its status.
func do(req *http.Request, want int) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d, want %d", req.Method, req.URL, resp.StatusCode, want)
	}
	return nil
}
