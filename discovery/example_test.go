package discovery_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/distkit/distkit/discovery"
)

// Two members on loopback: one offers a service, the other finds it.
func Example() {
	api, err := discovery.New("api-1", discovery.WithServices(
		discovery.Service{Name: "http", Port: 8080, Tags: []string{"v2"}}))
	if err != nil {
		log.Fatal(err)
	}
	defer api.Close()
	client, err := discovery.New("client-1")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Join(ctx, api.Addr().String()); err != nil {
		log.Fatal(err)
	}
	for _, in := range client.Instances("http") {
		fmt.Println(in.Member, in.Addr.Port(), in.Tags, in.Health)
	}
	// Output:
	// api-1 8080 [v2] ready
}

// Watch a member drain and leave.
func ExampleNode_Watch() {
	a, _ := discovery.New("a")
	defer a.Close()
	b, _ := discovery.New("b")
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Join(ctx, a.Addr().String()); err != nil {
		log.Fatal(err)
	}
	events := a.Watch(ctx)
	left := make(chan error, 1)
	go func() {
		_ = b.SetHealth(discovery.Draining)
		time.Sleep(300 * time.Millisecond)
		left <- b.Leave(ctx) // returns once the leave has been gossiped
	}()
	defer func() { <-left }()
	for e := range events {
		if e.Member.Name != "b" {
			continue
		}
		fmt.Println(e.Kind, e.Member.Health, e.Member.Leaving)
		if e.Kind == discovery.EventLeave {
			break
		}
	}
	// Output:
	// join ready false
	// update draining false
	// update draining true
	// leave draining true
}
