// Command discovery starts six members on loopback offering two services,
// prints the service view, crashes one member, prints when each survivor
// noticed, lets another leave gracefully, and exits.
package main

import (
	"context"
	"fmt"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/distkit/distkit/discovery"
)

func main() {
	log.SetFlags(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Six members: three offer "search", three offer "cache".
	var nodes []*discovery.Node
	for i := range 6 {
		svc := discovery.Service{Name: "search", Port: 9100 + i, Tags: []string{"v1"}}
		if i%2 == 1 {
			svc = discovery.Service{Name: "cache", Port: 6300 + i}
		}
		n, err := discovery.New(fmt.Sprintf("node-%d", i), discovery.WithServices(svc))
		if err != nil {
			log.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	start := time.Now()
	for _, n := range nodes[1:] {
		if _, err := n.Join(ctx, nodes[0].Addr().String()); err != nil {
			log.Fatal(err)
		}
	}
	for !allSee(nodes, len(nodes)) {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("6 members see each other after %v\n\n", time.Since(start).Round(time.Millisecond))
	view := nodes[0]
	for _, svc := range []string{"search", "cache"} {
		fmt.Printf("%s instances seen by %s:\n", svc, view.Name())
		for _, in := range view.Instances(svc) {
			fmt.Printf("  %-7s %-16s tags=%v %v\n", in.Member, in.Addr, in.Tags, in.Health)
		}
	}

	// Watch every survivor, then crash node-5 (Close without Leave).
	victim := nodes[5]
	survivors := nodes[:5]
	var mu sync.Mutex
	noticed := map[string]time.Time{}
	var wg sync.WaitGroup
	for _, n := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range n.Watch(ctx) {
				if e.Member.Name == victim.Name() && e.Kind == discovery.EventFail {
					mu.Lock()
					noticed[n.Name()] = e.Time
					mu.Unlock()
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	fmt.Printf("\ncrashing %s (no goodbye)...\n", victim.Name())
	crashed := time.Now()
	victim.Close()
	wg.Wait()
	var names []string
	for name := range noticed {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return noticed[names[i]].Before(noticed[names[j]]) })
	for _, name := range names {
		fmt.Printf("  %s reported it failed after %v\n", name, noticed[name].Sub(crashed).Round(time.Millisecond))
	}

	// A graceful exit: drain, then leave; others see a leave, not a failure.
	leaver := nodes[4]
	fmt.Printf("\n%s drains and leaves...\n", leaver.Name())
	_ = leaver.SetHealth(discovery.Draining)
	for len(view.Instances("search")) != 2 {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("  search instances now: %d (draining members are left out)\n", len(view.Instances("search")))
	if err := leaver.Leave(ctx); err != nil {
		log.Fatal(err)
	}
	leaver.Close()
	for len(view.Members()) != 4 {
		time.Sleep(5 * time.Millisecond)
	}
	s := view.Stats()
	fmt.Printf("  %s now lists %d members; it has seen %d leave and %d fail\n", view.Name(), s.Members, s.Leaves, s.Fails)
}

func allSee(nodes []*discovery.Node, n int) bool {
	for _, x := range nodes {
		if len(x.Members()) != n {
			return false
		}
	}
	return true
}
