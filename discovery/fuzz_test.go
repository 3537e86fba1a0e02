package discovery

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []meta{
		{health: Ready, instance: 1, version: 1},
		{health: Draining, leaving: true, instance: 42, version: 300, keys: []uint32{7, 9}, services: []Service{{Name: "web", Port: 80, Tags: []string{"a", "b=c"}}}},
	} {
		f.Add(m.encode())
	}
	f.Add([]byte{})
	f.Add([]byte{metaFormat, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if got := m.encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %x gave %x", b, got)
		}
		for _, s := range m.services {
			if err := s.validate(); err != nil {
				t.Fatalf("decoded an invalid service: %v", err)
			}
		}
	})
}

func FuzzDecodeAudit(f *testing.F) {
	f.Add(auditMsg{kind: auditSuspect, at: time.Unix(0, 5), instance: 3, member: "a", by: "b"}.encode())
	f.Add(auditMsg{kind: auditRefute, at: time.Unix(0, 5), instance: 3, member: "a", by: "b"}.encode())
	f.Add([]byte{msgAudit})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeAudit(b)
		if err != nil {
			return
		}
		if got := m.encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %x gave %x", b, got)
		}
	})
}
