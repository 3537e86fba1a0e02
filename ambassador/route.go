package ambassador

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// ErrNoKey is a request that carries no routing key for a policy that
// routes by key: the Proxy answers it with 400.
var ErrNoKey = errors.New("ambassador: the request has no routing key")

// KeyFunc takes a request's routing key; ok is false if it has none.
type KeyFunc func(r *http.Request) (key string, ok bool)

// Header takes the key from the request header name.
func Header(name string) KeyFunc {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, bool) {
		v := r.Header[name]
		if len(v) == 0 || v[0] == "" {
			return "", false
		}
		return v[0], true
	}
}

// Query takes the key from the query parameter name.
func Query(name string) KeyFunc {
	return func(r *http.Request) (string, bool) {
		v := r.URL.Query().Get(name)
		return v, v != ""
	}
}

// PathSegment takes the key from the i'th segment of the path, counting
// from 0: for /users/42/photos, 1 is "42".
func PathSegment(i int) KeyFunc {
	return func(r *http.Request) (string, bool) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		for range i {
			_, rest, found := strings.Cut(p, "/")
			if !found {
				return "", false
			}
			p = rest
		}
		seg, _, _ := strings.Cut(p, "/")
		return seg, seg != ""
	}
}

// Cookie takes the key from the cookie name.
func Cookie(name string) KeyFunc {
	return func(r *http.Request) (string, bool) {
		c, err := r.Cookie(name)
		if err != nil || c.Value == "" {
			return "", false
		}
		return c.Value, true
	}
}

// Locator names the backend for a key. A shard.Table or shard.Snapshot
// is one, with backend names as its node IDs.
type Locator interface {
	Locate(key string) (node string, ok bool)
}

// Sharded sends each request to the backend loc names for its key (the
// book's sharding ambassador). A request without a key fails with
// ErrNoKey (400 from the Proxy); a key loc cannot place, or places on a
// backend the Router does not have, fails with a 502 that says so.
func Sharded(key KeyFunc, loc Locator) (Policy, error) {
	if key == nil || isNil(loc) {
		return nil, invalid("Sharded: nil key function or locator")
	}
	return PolicyFunc(func(r *http.Request, bs Backends) (*Backend, error) {
		k, ok := key(r)
		if !ok {
			return nil, ErrNoKey
		}
		node, ok := loc.Locate(k)
		if !ok {
			return nil, fmt.Errorf("ambassador: the locator places no key (key %q): it has no nodes", k)
		}
		b := bs.Named(node)
		if b == nil {
			return nil, fmt.Errorf("ambassador: the locator put key %q on %q, which is not a backend", k, node)
		}
		return b, nil
	}), nil
}

// Arm is one side of a Split: a share of the traffic and the backends,
// by name, that take it in turn.
type Arm struct {
	Name     string
	Backends []string
	Weight   int // its share, 0 to MaxWeight, against the other arms'
}

// Split sends each request to an arm by weight (an experiment: 90 to the
// stable service, 10 to the new one), and within the arm to its backends
// in turn. With a sticky key function, a request with a key goes to the
// arm its key's hash picks, so that a user stays on one side; the others,
// and all without one, go at random.
func Split(arms []Arm, sticky KeyFunc) (Policy, error) {
	total := 0
	seen := map[string]bool{}
	for i, a := range arms {
		switch {
		case a.Weight < 0 || a.Weight > MaxWeight:
			return nil, invalid("Split: arm %d (%q): weight %d, want 0 to %d", i, a.Name, a.Weight, MaxWeight)
		case len(a.Backends) == 0:
			return nil, invalid("Split: arm %d (%q) has no backends", i, a.Name)
		case seen[a.Name]:
			return nil, invalid("Split: arm name %q is taken", a.Name)
		}
		seen[a.Name] = true
		total += a.Weight
	}
	if total == 0 {
		return nil, invalid("Split: the arms' weights sum to 0")
	}
	arms = append([]Arm(nil), arms...)
	turns := make([]atomic.Uint64, len(arms))
	return PolicyFunc(func(r *http.Request, bs Backends) (*Backend, error) {
		var n uint64
		if k, ok := keyOf(sticky, r); ok {
			n = xxhash.Sum64String(k) % uint64(total)
		} else {
			n = rand.Uint64N(uint64(total))
		}
		i := 0
		for ; n >= uint64(arms[i].Weight); i++ {
			n -= uint64(arms[i].Weight)
		}
		a := arms[i]
		// In turn among the arm's backends that the Router has now, in
		// balancing if any are.
		t := turns[i].Add(1) - 1
		var sick *Backend
		for j := range a.Backends {
			if b := bs.Named(a.Backends[(t+uint64(j))%uint64(len(a.Backends))]); b != nil {
				if !bs.Excluded(b) {
					return b, nil
				}
				sick = cmp.Or(sick, b)
			}
		}
		if sick != nil {
			return sick, nil
		}
		return nil, fmt.Errorf("ambassador: arm %q has none of its backends %q", a.Name, a.Backends)
	}), nil
}

func keyOf(f KeyFunc, r *http.Request) (string, bool) {
	if f == nil {
		return "", false
	}
	return f(r)
}
