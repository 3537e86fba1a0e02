package raftbolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func mustEncode(t testing.TB, l *raft.Log) []byte {
	t.Helper()
	b, err := encodeLog(nil, l)
	if err != nil {
		t.Fatalf("encodeLog: %v", err)
	}
	return b
}

// TestEncodingIsStable pins format version 1: records already on disk must
// keep decoding, so a change here needs a new version.
func TestEncodingIsStable(t *testing.T) {
	l := raft.Log{Index: 1, Term: 2, Type: raft.LogNoop, Data: []byte("d"),
		Extensions: []byte("ee"), AppendedAt: time.Unix(0, 3)}
	want := []byte{
		1,                      // version
		0, 0, 0, 0, 0, 0, 0, 1, // Index
		0, 0, 0, 0, 0, 0, 0, 2, // Term
		1,                      // Type
		0, 0, 0, 0, 0, 0, 0, 3, // AppendedAt
		0, 0, 0, 1, 'd', // Data
		0, 0, 0, 2, 'e', 'e', // Extensions
	}
	want = binary.BigEndian.AppendUint32(want, checksum(want))
	if got := mustEncode(t, &l); !bytes.Equal(got, want) {
		t.Errorf("encoding\n got %x\nwant %x", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := mustEncode(t, &raft.Log{Index: 7, Term: 1, Data: []byte("payload"), Extensions: []byte("x")})
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name   string
		record []byte
		reason string
	}{
		{"empty", nil, "empty record"},
		{"version 0", with(func(b []byte) []byte { b[0] = 0; return b }), "unknown format version 0"},
		{"version 2", with(func(b []byte) []byte { b[0] = 2; return b }), "unknown format version 2"},
		{"header only", good[:headerLen], "truncated"},
		{"short checksum", good[:len(good)-1], "truncated: checksum has 3 of 4 bytes"},
		{"trailing byte", append(bytes.Clone(good), 0), "1 unexpected bytes after the checksum"},
		{"huge Data length", with(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[26:], 1<<32-1)
			return b
		}), "Data length 4294967295 exceeds"},
		{"huge Extensions length", with(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[headerLen+7:], 1<<32-1)
			return b
		}), "Extensions length 4294967295 exceeds"},
		{"flipped payload bit", with(func(b []byte) []byte { b[headerLen] ^= 1; return b }), "checksum mismatch"},
		{"other index", mustEncode(t, &raft.Log{Index: 8}), "record holds index 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := raft.Log{Index: 42}
			got := before
			err := decodeLog(7, tt.record, &got)
			var ce *CorruptLogError
			if !errors.As(err, &ce) || ce.Index != 7 || !strings.Contains(ce.Reason, tt.reason) {
				t.Fatalf("decodeLog = %v, want a CorruptLogError at index 7 about %q", err, tt.reason)
			}
			if !sameLog(got, before) {
				t.Errorf("decodeLog changed its output on error: %+v", got)
			}
		})
	}
}

// TestDecodeRejectsEveryDamage truncates a record at every length and flips
// every byte, and expects an error each time.
func TestDecodeRejectsEveryDamage(t *testing.T) {
	good := mustEncode(t, &raft.Log{Index: 7, Term: 3, Type: raft.LogCommand, Data: []byte("payload"),
		Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 1)})
	var l raft.Log
	for n := range len(good) {
		if err := decodeLog(7, good[:n], &l); err == nil {
			t.Errorf("decoding the first %d of %d bytes succeeded", n, len(good))
		}
	}
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0xff
		if err := decodeLog(7, bad, &l); err == nil {
			t.Errorf("decoding with byte %d flipped succeeded", i)
		}
	}
}

func FuzzDecodeLog(f *testing.F) {
	seeds := []raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("cfg"), AppendedAt: time.Unix(1, 2)},
		{Index: 1<<64 - 1, Term: 5, Type: 255, Extensions: []byte{0, 1}},
	}
	for _, l := range seeds {
		var nanos int64
		if !l.AppendedAt.IsZero() {
			nanos = l.AppendedAt.UnixNano()
		}
		f.Add(mustEncode(f, &l), l.Index, l.Term, byte(l.Type), nanos, l.Data, l.Extensions)
	}
	f.Add([]byte{1, 2, 3}, uint64(0), uint64(0), byte(0), int64(0), []byte(nil), []byte(nil))

	f.Fuzz(func(t *testing.T, raw []byte, index, term uint64, typ byte, nanos int64, data, ext []byte) {
		// Arbitrary bytes: decoding must not panic, and whatever decodes
		// must be exactly what encoding the result produces, since the
		// format is canonical. The index is taken from the record itself so
		// that the fuzzer gets past the index check.
		var key uint64
		if len(raw) >= 9 {
			key = binary.BigEndian.Uint64(raw[1:9])
		}
		var got raft.Log
		if err := decodeLog(key, raw, &got); err == nil {
			if again := mustEncode(t, &got); !bytes.Equal(again, raw) {
				t.Fatalf("decoded %+v from %x, which encodes to %x", got, raw, again)
			}
			if err := decodeLog(key+1, raw, &got); err == nil {
				t.Fatalf("record for index %d decoded under key %d", key, key+1)
			}
		}

		// A Log built from the inputs must round-trip.
		var at time.Time
		if nanos != 0 {
			at = time.Unix(0, nanos)
		}
		want := raft.Log{Index: index, Term: term, Type: raft.LogType(typ),
			Data: data, Extensions: ext, AppendedAt: at}
		rec := mustEncode(t, &want)
		if len(rec) != encodedLen(&want) {
			t.Fatalf("encodedLen = %d, record is %d bytes", encodedLen(&want), len(rec))
		}
		var back raft.Log
		if err := decodeLog(index, rec, &back); err != nil {
			t.Fatalf("decoding what encodeLog produced: %v", err)
		}
		if !sameLog(back, want) || back.AppendedAt.UnixNano() != want.AppendedAt.UnixNano() {
			t.Fatalf("round trip of %+v gave %+v", want, back)
		}
	})
}
