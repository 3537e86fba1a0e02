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
