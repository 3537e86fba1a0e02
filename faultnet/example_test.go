package faultnet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/distkit/distkit/faultnet"
	"github.com/hashicorp/memberlist"
)

// A one-way cut stalls a direction without losing its bytes: the server
// hears nothing until the cut heals, while its replies still reach the
// client. Healing delivers the held bytes at once, in order.
func Example() {
	n := faultnet.New(1)
	ln, err := n.Listen("server:80")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	client, err := n.Dial(context.Background(), "client", "server:80")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()

	n.Cut("client", "server")
	client.Write([]byte("hello"))
	server.Write([]byte("still here"))

	buf := make([]byte, 64)
	k, _ := client.Read(buf)
	fmt.Printf("client reads %q\n", buf[:k])
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = server.Read(buf)
	fmt.Println("server read times out:", errors.Is(err, os.ErrDeadlineExceeded))
	fmt.Println("bytes held:", n.Stats().Held)

	n.Heal("client", "server")
	server.SetReadDeadline(time.Time{})
	k, _ = server.Read(buf)
	fmt.Printf("after heal, server reads %q\n", buf[:k])
	// Output:
	// client reads "still here"
	// server read times out: true
	// bytes held: 5
	// after heal, server reads "hello"
}

// An HTTP client and server talk over the network through
// [faultnet.Network.Dialer] and [faultnet.Network.Listen]; isolating the
// server makes requests time out, as a partition would.
func ExampleNetwork_Dialer() {
	n := faultnet.New(1)
	ln, err := n.Listen("api:80")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from api")
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	transport := &http.Transport{DialContext: n.Dialer("web")}
	client := &http.Client{Transport: transport}
	get := func(timeout time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://api:80/", nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println("timeout:", errors.Is(err, context.DeadlineExceeded))
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.Status, string(body))
	}

	get(10 * time.Second)
	transport.CloseIdleConnections() // so that the next request dials
	n.Isolate("api")
	get(50 * time.Millisecond)
	n.HealAll()
	get(10 * time.Second)

	transport.CloseIdleConnections()
	srv.Close()
	<-served
	// Output:
	// 200 OK hello from api
	// timeout: true
	// 200 OK hello from api
}

// Datagrams are lost, not held, while a direction is cut: the one sent
// during the cut never arrives, even after the heal.
func ExampleNetwork_ListenPacket() {
	n := faultnet.New(1)
	a, err := n.ListenPacket("a:53")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := n.ListenPacket("b:53")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	to := faultnet.Addr("b:53")
	a.WriteTo([]byte("one"), to)
	n.Cut("a", "b")
	a.WriteTo([]byte("two"), to) // lost
	n.Heal("a", "b")
	a.WriteTo([]byte("three"), to)

	buf := make([]byte, 64)
	for range 2 {
		k, from, _ := b.ReadFrom(buf)
		fmt.Printf("%s from %s\n", buf[:k], from)
	}
	s := n.Stats()
	fmt.Println("sent", s.DatagramsSent, "delivered", s.DatagramsDelivered, "dropped", s.DatagramsDropped)
	// Output:
	// one from a:53
	// three from a:53
	// sent 3 delivered 2 dropped 1
}

// Two memberlist members gossip over the network; the faultnet node of
// each is its IP, which is what a test cuts or isolates.
func ExampleNetwork_MemberlistTransport() {
	n := faultnet.New(1)
	var members []*memberlist.Memberlist
	for i, addr := range []string{"127.0.0.1:7946", "127.0.0.2:7946"} {
		tr, err := n.MemberlistTransport(addr)
		if err != nil {
			log.Fatal(err)
		}
		conf := memberlist.DefaultLocalConfig()
		conf.Name = fmt.Sprint("m", i)
		conf.Transport = tr
		conf.LogOutput = io.Discard
		m, err := memberlist.Create(conf)
		if err != nil {
			log.Fatal(err)
		}
		defer m.Shutdown() // shuts the transport down too
		members = append(members, m)
	}
	if _, err := members[1].Join([]string{"127.0.0.1:7946"}); err != nil {
		log.Fatal(err)
	}
	for _, node := range members[1].Members() {
		fmt.Println(node.Name, node.Address())
	}
	// Unordered output:
	// m0 127.0.0.1:7946
	// m1 127.0.0.2:7946
}
