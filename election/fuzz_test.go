package election

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzApply feeds arbitrary log entries to the state machine: it must
// never panic, must skip what it cannot read alike on every replica, and
// must keep its invariants (tokens only grow; every lease's token is at
// most the counter).
func FuzzApply(f *testing.F) {
	for _, c := range []command{
		{Op: opAcquire, Now: 10, Resource: "r", Holder: "a", Lease: "l1", TTL: 100},
		{Op: opRenew, Now: 50, Resource: "r", Lease: "l1", Token: 1, TTL: 100},
		{Op: opRelease, Now: 60, Resource: "r", Lease: "l1", Token: 1},
		{Op: opExpire, Now: 500, Resource: "r", Token: 1},
	} {
		b, _ := json.Marshal(c)
		f.Add(b, b)
	}
	f.Add([]byte(`{"op":9}`), []byte(`not json`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m := newFSM(func(Event) {})
		var last uint64
		for i, data := range [][]byte{a, b, a, b} {
			m.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
			m.read(func(st *state) {
				if st.Token < last {
					t.Fatalf("token counter went back from %d to %d", last, st.Token)
				}
				last = st.Token
				for res, rec := range st.Leases {
					if rec.Token > st.Token || rec.Token == 0 {
						t.Fatalf("lease %q has token %d, counter %d", res, rec.Token, st.Token)
					}
				}
			})
		}
		// Snapshots round-trip whatever state resulted.
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeState(bytes.NewReader(snap.(snapshot)))
		if err != nil {
			t.Fatalf("own snapshot does not restore: %v", err)
		}
		if st.Token != last {
			t.Fatalf("restored token %d, want %d", st.Token, last)
		}
	})
}

// FuzzReadFrame checks the forwarding protocol's decoder against
// arbitrary bytes from the network.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = writeFrame(&buf, &rpcRequest{Kind: rpcApply, Cmd: &command{Op: opAcquire, Resource: "r"}})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req rpcRequest
		if err := readFrame(bytes.NewReader(data), &req); err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeFrame(&out, &req); err != nil {
			t.Fatalf("decoded request does not encode: %v", err)
		}
		var again rpcRequest
		if err := readFrame(&out, &again); err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
	})
}
