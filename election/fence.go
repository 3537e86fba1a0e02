package election

import (
	"fmt"
	"sync"
)

// Fence guards a store against writes from holders that lost their lease
// (the Kleppmann fencing-token pattern). The store calls Check, or wraps
// the write in Do, with the token the writer presents: a token lower than
// one already seen for that resource is rejected with ErrStaleToken. Equal
// tokens pass, since one lease writes many times. The zero Fence is ready
// to use and safe for concurrent use.
type Fence struct {
	mu   sync.Mutex
	last map[string]uint64
}

// Check accepts token for resource if it is at least the highest token
// seen so far, and records it.
func (f *Fence) Check(resource string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkLocked(resource, token)
}

func (f *Fence) checkLocked(resource string, token uint64) error {
	if token == 0 {
		return invalid("fence %q: zero token (tokens start at 1)", resource)
	}
	if f.last == nil {
		f.last = map[string]uint64{}
	}
	if last := f.last[resource]; token < last {
		return fmt.Errorf("%w: %q presented %d, already saw %d", ErrStaleToken, resource, token, last)
	}
	f.last[resource] = token
	return nil
}

// Do checks token and, if it passes, runs write while holding the fence,
// so that no newer holder's write can be accepted in between. It returns
// write's error. Writes to all resources of one Fence are serialised.
func (f *Fence) Do(resource string, token uint64, write func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(resource, token); err != nil {
		return err
	}
	return write()
}

// Last returns the highest token accepted for resource (0 if none).
func (f *Fence) Last(resource string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[resource]
}
