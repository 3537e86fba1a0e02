package discovery

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
)

// Health is a member's readiness to take work, chosen by the member itself
// and gossiped with its metadata. It is separate from liveness, which the
// gossip protocol judges.
type Health uint8

// Health states.
const (
	// Ready members take traffic: Instances returns them by default.
	Ready Health = iota + 1
	// Draining members finish what they have but take nothing new, as
	// before a planned stop.
	Draining
	// NotReady members are up but cannot serve yet (warming up, or a
	// dependency is down).
	NotReady
)

// String names the health state, as carried in metadata.
func (h Health) String() string {
	switch h {
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	case NotReady:
		return "not-ready"
	}
	return fmt.Sprintf("health(%d)", uint8(h))
}

func (h Health) valid() bool { return h >= Ready && h <= NotReady }

// Service is one service a member offers: a name, the port it listens on
// at the member's address, and free-form tags.
type Service struct {
	Name string   // 1–64 bytes of letters, digits, '.', '_' or '-'
	Port int      // 1–65535
	Tags []string // each 1–64 printable ASCII bytes, no spaces
}

// Limits on names and metadata.
const (
	// MaxNameLen bounds member and service names, and tags.
	MaxNameLen = 64
	// MaxMetaSize is memberlist's limit on a member's metadata, which
	// holds its health and services; discovery rejects changes that would
	// exceed it rather than let memberlist panic or cut them.
	MaxMetaSize = memberlist.MetaMaxSize
	// maxKeys bounds the key fingerprints a member announces.
	maxKeys = 8
)

// meta is what a member gossips about itself.
type meta struct {
	health   Health
	leaving  bool
	instance uint64 // random per process: a restart under the same name changes it
	version  uint64 // bumped on every change within an instance
	keys     []uint32
	primary  int // index into keys; meaningful when keys is non-empty
	services []Service
}

const (
	metaFormat  = 1
	flagLeaving = 1 << 0
)

func validName(what, s string) error {
	if s == "" || len(s) > MaxNameLen {
		return invalid("%s %q: must be 1–%d bytes", what, s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("%s %q: byte %d (%q) is not a letter, digit, '.', '_' or '-'", what, s, i, c)
		}
	}
	return nil
}

func validTag(svc, tag string) error {
	if tag == "" || len(tag) > MaxNameLen {
		return invalid("service %q: tag %q must be 1–%d bytes", svc, tag, MaxNameLen)
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c <= ' ' || c > '~' {
			return invalid("service %q: tag %q: byte %d is not printable ASCII (spaces are not allowed)", svc, tag, i)
		}
	}
	return nil
}

func (s Service) validate() error {
	if err := validName("service name", s.Name); err != nil {
		return err
	}
	if s.Port < 1 || s.Port > 65535 {
		return invalid("service %q: port %d out of range 1–65535", s.Name, s.Port)
	}
	for _, t := range s.Tags {
		if err := validTag(s.Name, t); err != nil {
			return err
		}
	}
	return nil
}

func (s Service) clone() Service {
	s.Tags = slices.Clone(s.Tags)
	return s
}

// HasTag reports whether the service carries tag.
func (s Service) HasTag(tag string) bool { return slices.Contains(s.Tags, tag) }

func (m *meta) clone() meta {
	c := *m
	c.keys = slices.Clone(m.keys)
	c.services = make([]Service, len(m.services))
	for i, s := range m.services {
		c.services[i] = s.clone()
	}
	return c
}

func (m *meta) service(name string) (Service, bool) {
	for _, s := range m.services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// encode lays out: format, flags, health, instance (8 bytes), version
// (uvarint), key count, [primary index, fingerprints], service count, and
// per service its name, port (2 bytes), tag count and tags. Strings are
// uvarint-length-prefixed.
func (m *meta) encode() []byte {
	b := make([]byte, 0, 64)
	var flags byte
	if m.leaving {
		flags |= flagLeaving
	}
	b = append(b, metaFormat, flags, byte(m.health))
	b = binary.BigEndian.AppendUint64(b, m.instance)
	b = binary.AppendUvarint(b, m.version)
	b = append(b, byte(len(m.keys)))
	if len(m.keys) > 0 {
		b = append(b, byte(m.primary))
		for _, k := range m.keys {
			b = binary.BigEndian.AppendUint32(b, k)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.services)))
	for _, s := range m.services {
		b = appendString(b, s.Name)
		b = binary.BigEndian.AppendUint16(b, uint16(s.Port))
		b = binary.AppendUvarint(b, uint64(len(s.Tags)))
		for _, t := range s.Tags {
			b = appendString(b, t)
		}
	}
	return b
}

// checkSize returns ErrMetaTooLarge when m does not fit.
func (m *meta) checkSize() error {
	n := len(m.encode())
	if len(m.keys) > 0 {
		n += 4 * (maxKeys - len(m.keys)) // room for every key, so key changes always fit
	}
	if n > MaxMetaSize {
		names := make([]string, len(m.services))
		for i, s := range m.services {
			names[i] = s.Name
		}
		return fmt.Errorf("%w: %d bytes for %d services (%s), over memberlist's %d-byte limit; use fewer or shorter services and tags",
			ErrMetaTooLarge, n, len(m.services), strings.Join(names, ", "), MaxMetaSize)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeMeta parses and validates metadata from the wire; it never panics
// and accepts exactly what encode produces from valid input.
func decodeMeta(b []byte) (meta, error) {
	d := decoder{b: b}
	var m meta
	if f := d.byte(); d.err == nil && f != metaFormat {
		return m, fmt.Errorf("%w: format %d, want %d", ErrBadMeta, f, metaFormat)
	}
	flags := d.byte()
	m.leaving = flags&flagLeaving != 0
	m.health = Health(d.byte())
	m.instance = d.uint64()
	m.version = d.uvarint()
	if nk := int(d.byte()); nk > 0 {
		if nk > maxKeys {
			return m, fmt.Errorf("%w: %d key fingerprints, at most %d", ErrBadMeta, nk, maxKeys)
		}
		m.primary = int(d.byte())
		m.keys = make([]uint32, nk)
		for i := range m.keys {
			m.keys[i] = d.uint32()
		}
		if m.primary >= nk {
			return m, fmt.Errorf("%w: primary key index %d of %d", ErrBadMeta, m.primary, nk)
		}
	}
	ns := d.uvarint()
	if d.err == nil && ns > uint64(len(d.b)) { // each service takes at least 4 bytes
		return m, fmt.Errorf("%w: %d services in %d bytes", ErrBadMeta, ns, len(d.b))
	}
	for i := uint64(0); i < ns && d.err == nil; i++ {
		var s Service
		s.Name = d.string()
		s.Port = int(d.uint16())
		nt := d.uvarint()
		if d.err == nil && nt > uint64(len(d.b)) {
			return m, fmt.Errorf("%w: service %q: %d tags in %d bytes", ErrBadMeta, s.Name, nt, len(d.b))
		}
		for j := uint64(0); j < nt && d.err == nil; j++ {
			s.Tags = append(s.Tags, d.string())
		}
		if d.err == nil {
			if err := s.validate(); err != nil {
				return m, fmt.Errorf("%w: %v", ErrBadMeta, err)
			}
			if _, dup := m.service(s.Name); dup {
				return m, fmt.Errorf("%w: service %q listed twice", ErrBadMeta, s.Name)
			}
		}
		m.services = append(m.services, s)
	}
	if d.err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadMeta, d.err)
	}
	if len(d.b) != 0 {
		return m, fmt.Errorf("%w: %d trailing bytes", ErrBadMeta, len(d.b))
	}
	if !m.health.valid() {
		return m, fmt.Errorf("%w: health %d", ErrBadMeta, m.health)
	}
	if flags&^flagLeaving != 0 {
		return m, fmt.Errorf("%w: unknown flags %#x", ErrBadMeta, flags)
	}
	return m, nil
}

// decoder reads from b, remembering the first error so callers can check
// once.
type decoder struct {
	b   []byte
	err error
}

// take returns the next n bytes, or nil (and records the error) if there
// are fewer.
func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) uint16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) uint64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("truncated: string of %d bytes, have %d", n, len(d.b))
	}
	return string(d.take(int(n))) // n fits: it is at most len(d.b)
}
