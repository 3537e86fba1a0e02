package workqueue

import (
	"bytes"
	"testing"
)

// FuzzReadLog feeds arbitrary bytes as a log: reading never panics, and
// the whole records it accepts encode back to exactly the bytes it
// counted as whole.
func FuzzReadLog(f *testing.F) {
	var seed []byte
	for _, r := range []record{
		{kind: recEnqueue, id: "a", key: "k", notBefore: 12345, payload: []byte("pay")},
		{kind: recAck, id: "a"},
		{kind: recRetry, id: "b", failures: 2, expiries: 1, notBefore: -7},
		{kind: recDead, id: "c", failures: 3, at: 99, reason: "boom"},
		{kind: recRequeue, id: "c"},
	} {
		seed = appendRecord(seed, &r)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	f.Add([]byte{})
	f.Add([]byte{255, 255, 255, 255, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var again []byte
		good := readRecords(bytes.NewReader(data), func(r record) { again = appendRecord(again, &r) })
		if good > int64(len(data)) || !bytes.Equal(again, data[:good]) {
			t.Fatalf("accepted %d of %d bytes, which re-encode to %d different bytes", good, len(data), len(again))
		}
	})
}
