package workqueue

import (
	"bytes"
	"net/http"
	"net/http/httptest"
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
		{kind: recEpoch, at: 3},
		{kind: recMember, id: "g", key: "m", failures: 2, payload: []byte("v")},
		{kind: recFired, id: "g"},
		{kind: recBatch, batch: []record{{kind: recFired, id: "h"}, {kind: recEnqueue, id: "r", payload: []byte("x")}}},
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

// FuzzServer sends arbitrary bodies to each path of the HTTP protocol:
// the server never panics, answers with a status the client knows, and
// leaves the queue whole.
func FuzzServer(f *testing.F) {
	f.Add(uint8(0), []byte(`{"items": [{"id": "a", "payload": "eA=="}]}`))
	f.Add(uint8(1), []byte(`{}`))
	f.Add(uint8(2), []byte(`{"id": "a", "token": 1}`))
	f.Add(uint8(3), []byte(`{"id": "a", "token": 1, "reason": "x", "permanent": true}`))
	f.Add(uint8(4), []byte(`{"id": "a", "token": 1, "lease_ms": -5}`))
	f.Add(uint8(5), []byte(`{"ids": ["a", "a"]}`))
	f.Add(uint8(0), []byte(`{"items": [{"payload": "", "not_before": "2026-13-01T00:00:00Z"}]}`))
	paths := []string{pathEnqueue, pathClaim + "?lease=1000&wait=1", pathAck, pathNack, pathExtend, pathRequeue, pathDead, pathStats, "/nope"}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		q, err := NewMemory()
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		q.Enqueue(t.Context(), item("a"))
		srv, _ := NewServer(q, 1<<16)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, paths[int(which)%len(paths)], bytes.NewReader(body)))
		switch rec.Code {
		case http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusConflict, http.StatusNotFound, http.StatusRequestTimeout:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if s := q.Stats(); s.Depth()+s.InFlight+s.Dead < 1 {
			t.Fatalf("the queue lost its item: %+v", s)
		}
	})
}
