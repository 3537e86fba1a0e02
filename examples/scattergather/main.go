// Command scattergather shows scatter/gather with distkit's scattergather
// package: a tiny distributed search. Documents are sharded over four
// leaf servers, each shard with a replica, all HTTP on 127.0.0.1. A root
// fans each query out to the four shards and merges the best matches. One
// shard's primary is slow; the program prints each query's result and
// latency without hedging, with hedging to the replica, and with that
// shard down under the strict and the partial policies. It exits by
// itself.
//
//	go run ./examples/scattergather
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/scattergather"
)

// Query asks for the documents that contain Word.
type Query struct{ Word string }

// Hit is a matching document and how often the word occurs in it.
type Hit struct {
	Doc   string
	Count int
}

const shards = 4

var words = strings.Fields("cat dog bird fish mouse horse cow goat sheep duck")

// corpus makes 400 documents of eight words each, numbered, and deals
// them out to the shards.
func corpus() [shards][]string {
	var out [shards][]string
	for i := range 400 {
		var doc []string
		for j := range 8 {
			doc = append(doc, words[(i*7+j*j*3+i/5)%len(words)])
		}
		out[i%shards] = append(out[i%shards], fmt.Sprintf("doc-%03d: %s", i, strings.Join(doc, " ")))
	}
	return out
}

// searchLeaf searches one shard, taking delay (or until its deadline)
// first; delay may change while it serves.
func searchLeaf(docs []string, delay *atomic.Int64) scattergather.Leaf[Query, []Hit] {
	return scattergather.LeafFunc[Query, []Hit](func(ctx context.Context, q Query) ([]Hit, error) {
		t := time.NewTimer(time.Duration(delay.Load()))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var hits []Hit
		for _, d := range docs {
			id, text, _ := strings.Cut(d, ": ")
			if n := strings.Count(text, q.Word); n > 0 {
				hits = append(hits, Hit{id, n})
			}
		}
		return hits, nil
	})
}

// server serves a leaf on 127.0.0.1 and returns its URL and a stop
// function.
func server(leaf scattergather.Leaf[Query, []Hit]) (string, func()) {
	h, err := scattergather.Handler(leaf)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/search", func() { srv.Close() }
}

func main() {
	docs := corpus()
	var slow, fast atomic.Int64
	slow.Store(int64(250 * time.Millisecond))
	fast.Store(int64(2 * time.Millisecond))
	var targets []scattergather.Target[Query, []Hit]
	var stops []func()
	for s := range shards {
		primaryDelay := &fast
		if s == 2 {
			primaryDelay = &slow // shard 2's primary is slow
		}
		pURL, stop1 := server(searchLeaf(docs[s], primaryDelay))
		rURL, stop2 := server(searchLeaf(docs[s], &fast))
		stops = append(stops, stop1, stop2)
		primary, err := scattergather.NewHTTPLeaf[Query, []Hit](pURL)
		if err != nil {
			log.Fatal(err)
		}
		replica, err := scattergather.NewHTTPLeaf[Query, []Hit](rURL)
		if err != nil {
			log.Fatal(err)
		}
		targets = append(targets, scattergather.Target[Query, []Hit]{
			Name: fmt.Sprintf("shard-%d", s), Leaf: primary,
			Replicas: []scattergather.Leaf[Query, []Hit]{replica},
		})
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()

	// The five documents with the most occurrences; ties by name.
	best := scattergather.TopK(5, func(a, b Hit) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Doc, b.Doc)
	})
	budget, err := scattergather.NewBudget(0.05, 10)
	if err != nil {
		log.Fatal(err)
	}
	plain, err := scattergather.New(targets, best)
	if err != nil {
		log.Fatal(err)
	}
	hedged, err := scattergather.New(targets, best,
		scattergather.WithHedge(scattergather.Hedge{After: 20 * time.Millisecond, Budget: budget}))
	if err != nil {
		log.Fatal(err)
	}
	q := Query{"goat"}
	fmt.Printf("searching %d documents on %d shards for %q; shard-2's primary takes %v\n\n", 400, shards, q.Word, time.Duration(slow.Load()))
	run("no hedging, policy all", plain, q, time.Second)
	run("hedged after 20 ms", hedged, q, time.Second)

	// Shard 2 goes down altogether (both copies hang): the strict policy
	// fails at the deadline and says why; a quorum of 3 answers with
	// three quarters of the index, and says which quarter is missing.
	slow.Store(int64(time.Hour))
	targets[2].Replicas = nil
	down, _ := scattergather.New(targets, best)
	partial, _ := scattergather.New(targets, best, scattergather.WithPolicy(scattergather.Quorum(3)))
	fmt.Printf("\nshard-2 stops answering:\n\n")
	run("policy all", down, q, 200*time.Millisecond)
	run("policy quorum(3)", partial, q, 200*time.Millisecond)
}

func run(what string, g *scattergather.Gatherer[Query, []Hit, []Hit], q Query, deadline time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	res, err := g.Gather(ctx, q)
	fmt.Printf("%-24s %4d ms  answered %d of %d, hedges %d (won %d)\n", what+":", res.Elapsed.Milliseconds(), res.OK, len(res.Leaves), res.Hedges, res.HedgesWon)
	if err != nil {
		var ie *scattergather.IncompleteError
		if errors.As(err, &ie) {
			fmt.Printf("  error: %v\n", err)
		}
	}
	for _, l := range res.Leaves {
		if l.Outcome != scattergather.OK {
			fmt.Printf("  %s: %v\n", l.Name, l.Outcome)
		}
	}
	if len(res.Value) > 0 {
		label := "best"
		if err != nil {
			label = "best of what arrived"
		}
		var top []string
		for _, h := range res.Value {
			top = append(top, fmt.Sprintf("%s×%d", h.Doc, h.Count))
		}
		fmt.Printf("  %s: %s\n", label, strings.Join(top, ", "))
	}
}
