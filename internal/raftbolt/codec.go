package raftbolt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/hashicorp/raft"
)

// Log record format, version 1.
//
// Each raft.Log is stored as one bbolt value under its index, encoded as an
// 8-byte big-endian key (so that bbolt's byte order is index order). The
// value is, with all integers big-endian:
//
//	offset  size  field
//	0       1     format version, 1
//	1       8     Index (uint64)
//	9       8     Term (uint64)
//	17      1     Type (raft.LogType, any value is kept)
//	18      8     AppendedAt as Unix nanoseconds (int64); 0 means the zero time
//	26      4     n = len(Data) (uint32)
//	30      n     Data
//	30+n    4     m = len(Extensions) (uint32)
//	34+n    m     Extensions
//	34+n+m  4     CRC-32C (Castagnoli) of every byte before it
//
// The encoding is canonical: a record decodes only if it is exactly what
// encodeLog produces for the decoded Log. Empty Data and Extensions decode as
// nil. AppendedAt keeps only its instant: the monotonic reading and the
// location are dropped (it reads back in local time, as [time.Unix] gives it);
// times outside the years 1678 to 2262 do not
// fit in int64 nanoseconds and are not preserved, and the instant
// 1970-01-01T00:00:00Z itself reads back as the zero time. raft only uses
// AppendedAt for metrics, so neither matters in practice.
//
// A new version must keep the version byte first, so that decoders can
// refuse what they do not know instead of misreading it.
const (
	formatVersion = 1

	headerLen  = 30 // version through len(Data)
	lenLen     = 4  // one uint32 length prefix
	crcLen     = 4
	minRecord  = headerLen + lenLen + crcLen
	maxSection = math.MaxUint32 // largest Data or Extensions
)

// checksum returns the CRC-32C of b. The standard library builds the
// Castagnoli table once and returns the same one on every call.
func checksum(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// encodedLen returns the size of l's record.
func encodedLen(l *raft.Log) int {
	return minRecord + len(l.Data) + len(l.Extensions)
}

// encodeLog appends l's record to dst. It fails only if Data or Extensions
// is longer than a uint32 can describe (bbolt could not store it anyway).
func encodeLog(dst []byte, l *raft.Log) ([]byte, error) {
	if uint64(len(l.Data)) > maxSection {
		return nil, fmt.Errorf("raftbolt: log %d: Data is %d bytes, more than the %d a record can hold",
			l.Index, len(l.Data), uint64(maxSection))
	}
	if uint64(len(l.Extensions)) > maxSection {
		return nil, fmt.Errorf("raftbolt: log %d: Extensions is %d bytes, more than the %d a record can hold",
			l.Index, len(l.Extensions), uint64(maxSection))
	}
	var nanos int64
	if !l.AppendedAt.IsZero() {
		nanos = l.AppendedAt.UnixNano()
	}
	start := len(dst)
	dst = append(dst, formatVersion)
	dst = binary.BigEndian.AppendUint64(dst, l.Index)
	dst = binary.BigEndian.AppendUint64(dst, l.Term)
	dst = append(dst, byte(l.Type))
	dst = binary.BigEndian.AppendUint64(dst, uint64(nanos))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	dst = binary.BigEndian.AppendUint32(dst, checksum(dst[start:]))
	return dst, nil
}

// decodeLog decodes the record stored under key index into out, replacing
// all of out's fields. Data and Extensions are copied, so out stays valid
// after the bbolt transaction that produced b ends.
//
// It returns a *CorruptLogError naming index for anything that is not a
// record encodeLog could have produced for that index, and never panics,
// whatever b holds. out is unchanged on error.
func decodeLog(index uint64, b []byte, out *raft.Log) error {
	corrupt := func(format string, args ...any) error {
		return &CorruptLogError{Index: index, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) == 0 {
		return corrupt("empty record")
	}
	if b[0] != formatVersion {
		return corrupt("unknown format version %d (this build reads version %d)", b[0], formatVersion)
	}
	if len(b) < minRecord {
		return corrupt("truncated: %d bytes, the smallest record is %d", len(b), minRecord)
	}
	// Lengths are compared as uint64 so that a huge prefix cannot overflow
	// int on 32-bit platforms.
	rest := b[headerLen:]
	n := uint64(binary.BigEndian.Uint32(b[headerLen-lenLen : headerLen]))
	if n > uint64(len(rest)) {
		return corrupt("truncated: Data length %d exceeds the %d bytes left", n, len(rest))
	}
	data, rest := rest[:n], rest[n:]
	if len(rest) < lenLen {
		return corrupt("truncated: no Extensions length after %d bytes of Data", n)
	}
	m := uint64(binary.BigEndian.Uint32(rest[:lenLen]))
	rest = rest[lenLen:]
	if m > uint64(len(rest)) {
		return corrupt("truncated: Extensions length %d exceeds the %d bytes left", m, len(rest))
	}
	ext, rest := rest[:m], rest[m:]
	switch {
	case len(rest) < crcLen:
		return corrupt("truncated: checksum has %d of %d bytes", len(rest), crcLen)
	case len(rest) > crcLen:
		return corrupt("%d unexpected bytes after the checksum", len(rest)-crcLen)
	}
	body := b[:len(b)-crcLen]
	if want, got := binary.BigEndian.Uint32(rest), checksum(body); want != got {
		return corrupt("checksum mismatch: stored %#08x, computed %#08x", want, got)
	}
	stored := binary.BigEndian.Uint64(b[1:9])
	if stored != index {
		return corrupt("record holds index %d", stored)
	}

	var appended time.Time
	if nanos := int64(binary.BigEndian.Uint64(b[18:26])); nanos != 0 {
		appended = time.Unix(0, nanos)
	}
	// One allocation holds both byte fields; the three-index slices keep an
	// append to Data from overwriting Extensions.
	var dataCopy, extCopy []byte
	if n+m > 0 {
		buf := make([]byte, n+m)
		copy(buf, data)
		copy(buf[n:], ext)
		if n > 0 {
			dataCopy = buf[:n:n]
		}
		if m > 0 {
			extCopy = buf[n:]
		}
	}
	*out = raft.Log{
		Index:      stored,
		Term:       binary.BigEndian.Uint64(b[9:17]),
		Type:       raft.LogType(b[17]),
		Data:       dataCopy,
		Extensions: extCopy,
		AppendedAt: appended,
	}
	return nil
}

// indexKey returns the bbolt key of a log index.
func indexKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, index)
}

// keyIndex returns the index a log key encodes, or an error for a key that
// this package cannot have written.
func keyIndex(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: log key %x is %d bytes, want 8", ErrCorrupt, k, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}
