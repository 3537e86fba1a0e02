package workqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/clock"
)

// runStage runs h over every item in in, as a Pool would, one at a time.
func runStage(t *testing.T, in *fixture, h Handler) {
	t.Helper()
	for {
		c, ok := in.tryClaim(time.Minute)
		if !ok {
			return
		}
		if err := h(context.Background(), c); err != nil {
			in.nack(c, err)
			continue
		}
		in.ack(c)
	}
}

// ids drains q and returns the IDs and payloads it held, in order.
func drain(t *testing.T, q *fixture) (ids []string, payloads []string) {
	t.Helper()
	for {
		c, ok := q.tryClaim(time.Minute)
		if !ok {
			return
		}
		ids, payloads = append(ids, c.ID), append(payloads, string(c.Payload))
		q.ack(c)
	}
}

type fixedLocator map[string]string

func (l fixedLocator) Locate(key string) (string, bool) {
	n, ok := l[key]
	return n, ok
}

func TestStages(t *testing.T) {
	in, a, b := newFixture(t), newFixture(t), newFixture(t)
	load := func() {
		in.enqueue(Item{ID: "1", Key: "x", Payload: []byte("one")}, Item{ID: "2", Payload: []byte("two")}, Item{ID: "3", Key: "y", Payload: []byte("three")})
	}
	expect := func(name string, q *fixture, want ...string) {
		t.Helper()
		if got, _ := drain(t, q); !slices.Equal(got, want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
	}
	load()
	runStage(t, in, Copy(a.Memory, b.Memory))
	expect("copy a", a, "1", "2", "3")
	expect("copy b", b, "1", "2", "3")
	load()
	runStage(t, in, Filter(func(it Item) bool { return it.Key != "" }, a.Memory))
	expect("filter", a, "1", "3")
	load()
	runStage(t, in, Split(func(it Item) Queue {
		switch string(it.Payload) {
		case "one":
			return a.Memory
		case "two":
			return b.Memory
		}
		return nil
	}))
	expect("split a", a, "1")
	expect("split b", b, "2")
	load()
	runStage(t, in, Shard(fixedLocator{"x": "A", "y": "B", "2": "A"}, map[string]Queue{"A": a.Memory, "B": b.Memory}))
	expect("shard A", a, "1", "2")
	expect("shard B", b, "3")
	// Merge two inputs into one.
	load()
	in2 := newFixture(t)
	in2.enqueue(item("4"))
	runStage(t, in, Merge(a.Memory))
	runStage(t, in2, Merge(a.Memory))
	expect("merge", a, "1", "2", "3", "4")
	// A shard without a queue fails the item, which stays for a retry.
	in.enqueue(Item{ID: "5", Key: "z", Payload: []byte("x")})
	c := in.claim(time.Minute)
	if err := Shard(fixedLocator{}, nil)(context.Background(), c); err == nil || !strings.Contains(err.Error(), "no queue for shard") {
		t.Fatalf("shard with no queue: %v", err)
	}
}

func TestReducers(t *testing.T) {
	vals := [][]byte{[]byte("3"), []byte(" 4\n"), []byte("-2")}
	if p, err := Sum()(vals); err != nil || string(p) != "5" {
		t.Fatalf("sum: %s, %v", p, err)
	}
	if p, _ := Count()(vals); string(p) != "3" {
		t.Fatalf("count: %s", p)
	}
	if p, _ := Histogram()([][]byte{[]byte("b"), []byte("a"), []byte("b")}); string(p) != `{"a":1,"b":2}` {
		t.Fatalf("histogram: %s", p)
	}
	if _, err := Sum()([][]byte{[]byte("x")}); !IsPermanent(err) {
		t.Fatalf("sum of a word: %v", err)
	}
}

// TestJoinFiresOnceAcrossRestarts works groups through a Reduce stage into
// a durable output queue, replaying members (as redelivery after a crash
// does) before and after restarts and after the result was consumed, and
// checks that each group's result appears exactly once.
func TestJoinFiresOnceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	out := openDisk(t, dir, clk)
	group := func(it Item) (string, int) { g, _, _ := strings.Cut(it.ID, "/"); return g, 3 }
	member := func(g string, i int) Claim {
		return Claim{Item: Item{ID: fmt.Sprintf("%s/%d", g, i), Payload: []byte(fmt.Sprint(i + 1))}}
	}
	h := Reduce(out, group, Sum())
	ctx := context.Background()
	run := func(c Claim) {
		t.Helper()
		if err := h(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// g1: two members, then a restart, then the third twice.
	run(member("g1", 0))
	run(member("g1", 1))
	run(member("g1", 1)) // redelivered
	out.Close()
	out = openDisk(t, dir, clk)
	h = Reduce(out, group, Sum())
	run(member("g1", 2))
	run(member("g1", 2)) // redelivered after the group fired
	// g2: all three, the result consumed, then a member redelivered after a restart.
	for i := range 3 {
		run(member("g2", i))
	}
	f := diskFixture(t, out, clk)
	ids, payloads := drain(t, f)
	if !slices.Equal(ids, []string{"reduce/g1", "reduce/g2"}) || !slices.Equal(payloads, []string{"6", "6"}) {
		t.Fatalf("results %v %v", ids, payloads)
	}
	out.Close()
	out = openDisk(t, dir, clk)
	defer out.Close()
	h = Reduce(out, group, Sum())
	run(member("g2", 0))
	run(member("g1", 2))
	if s := out.Stats(); s.Ready != 0 || s.Enqueued != 0 {
		t.Fatalf("a group fired again after its result was consumed: %+v", s)
	}
	// Bad groups.
	for _, tc := range []struct {
		name, member string
		size         int
	}{{"", "m", 1}, {"g", "", 1}, {"g", "m", 0}} {
		if _, _, err := out.Join(ctx, tc.name, tc.size, tc.member, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Join(%q, %d, %q): %v", tc.name, tc.size, tc.member, err)
		}
	}
	// A member of a fired group is ignored, whatever it says.
	if values, complete, err := out.Join(ctx, "g1", 4, "x", nil); err != nil || complete || values != nil {
		t.Errorf("Join into a fired group: %v, %v, %v", values, complete, err)
	}
	if _, _, err := out.Join(ctx, "g3", 1, "a", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := out.Join(ctx, "g3", 2, "b", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("a member with another size: %v", err)
	}
	if _, err := out.Fire(ctx, "g4", item("r")); !errors.Is(err, ErrInvalid) {
		t.Errorf("firing an incomplete group: %v", err)
	}
}
