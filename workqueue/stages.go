package workqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The batch stages of chapters 11 and 12 are Handlers: run one in a Pool
// over its input queue. Each writes items onward under their own IDs, so
// an item redelivered after a crash is ignored by an output queue that
// still holds its copy; the input item is acked only once every output
// has taken it.

// Copy enqueues each item into every out queue (the book's copier).
func Copy(outs ...Queue) Handler {
	return func(ctx context.Context, c Claim) error {
		for _, out := range outs {
			if err := out.Enqueue(ctx, onward(c.Item)); err != nil {
				return err
			}
		}
		return nil
	}
}

// Merge enqueues each item into out: run a Pool with it on each of the
// queues to merge (the book's merger).
func Merge(out Queue) Handler { return Copy(out) }

// Filter enqueues into out the items keep accepts, and drops the rest.
func Filter(keep func(Item) bool, out Queue) Handler {
	return func(ctx context.Context, c Claim) error {
		if !keep(c.Item) {
			return nil
		}
		return out.Enqueue(ctx, onward(c.Item))
	}
}

// Split enqueues each item into the queue route picks for it, or drops
// it if route returns nil (the book's splitter).
func Split(route func(Item) Queue) Handler {
	return func(ctx context.Context, c Claim) error {
		out := route(c.Item)
		if out == nil {
			return nil
		}
		return out.Enqueue(ctx, onward(c.Item))
	}
}

// Locator maps a key to the name of its shard; shard.Table is one.
type Locator interface {
	Locate(key string) (node string, ok bool)
}

// Shard enqueues each item into the queue of the shard loc gives its key
// (its ID if it has no key) (the book's sharder). An item whose shard has
// no queue in outs fails, and is retried: the shards may be changing.
func Shard(loc Locator, outs map[string]Queue) Handler {
	return func(ctx context.Context, c Claim) error {
		key := c.Key
		if key == "" {
			key = c.ID
		}
		node, ok := loc.Locate(key)
		out := outs[node]
		if !ok || out == nil {
			return fmt.Errorf("workqueue: no queue for shard %q of key %q", node, key)
		}
		return out.Enqueue(ctx, onward(c.Item))
	}
}

// onward is the item a stage passes on: the same ID, key and payload.
func onward(it Item) Item { return Item{ID: it.ID, Key: it.Key, Payload: it.Payload} }

// Join waits for all the members of each group (group names an item's
// group and its size), then enqueues into out the item result makes of
// the group's payloads (in order of member ID), exactly once: out keeps
// the group and fires it in one step, so a crash and redelivery neither
// loses nor repeats the result (the book's join, or barrier). A result
// without an ID gets "join/" and the group's name.
func Join(out Joiner, group func(Item) (name string, size int), result func(name string, payloads [][]byte) (Item, error)) Handler {
	return func(ctx context.Context, c Claim) error {
		name, size := group(c.Item)
		values, complete, err := out.Join(ctx, name, size, c.ID, c.Payload)
		if err != nil || !complete {
			return err
		}
		it, err := result(name, values)
		if err != nil {
			return err
		}
		if it.ID == "" {
			it.ID = "join/" + name
		}
		_, err = out.Fire(ctx, name, it)
		return err
	}
}

// Reducer combines a group's payloads into its result's payload.
type Reducer func(payloads [][]byte) ([]byte, error)

// Reduce is a Join whose result is an item with ID "reduce/" and the
// group's name, key the group's name, and the payload reduce makes.
func Reduce(out Joiner, group func(Item) (name string, size int), reduce Reducer) Handler {
	return Join(out, group, func(name string, payloads [][]byte) (Item, error) {
		p, err := reduce(payloads)
		if err != nil {
			return Item{}, err
		}
		return Item{ID: "reduce/" + name, Key: name, Payload: p}, nil
	})
}

// Count's result is the number of members, in decimal.
func Count() Reducer {
	return func(payloads [][]byte) ([]byte, error) {
		return strconv.AppendInt(nil, int64(len(payloads)), 10), nil
	}
}

// Sum's result is the sum of the members' payloads, each a decimal
// integer (surrounding space allowed), in decimal. A payload that is not
// one fails for good: retrying will not change it.
func Sum() Reducer {
	return func(payloads [][]byte) ([]byte, error) {
		var sum int64
		for _, p := range payloads {
			v, err := strconv.ParseInt(strings.TrimSpace(string(p)), 10, 64)
			if err != nil {
				return nil, Permanent(fmt.Errorf("sum: %w", err))
			}
			sum += v
		}
		return strconv.AppendInt(nil, sum, 10), nil
	}
}

// Histogram's result counts the members by payload, as a JSON object
// from payload to count, keys in order.
func Histogram() Reducer {
	return func(payloads [][]byte) ([]byte, error) {
		counts := map[string]int{}
		for _, p := range payloads {
			counts[string(p)]++
		}
		return json.Marshal(counts) // encoding/json sorts map keys
	}
}
