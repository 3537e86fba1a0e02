package election

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Errors returned by this package wrap one of these (and
// the cause, where there is one), so test them with errors.Is.
var (
	// ErrClosed is returned by every method of a closed Node.
	ErrClosed = errors.New("election: node closed")
	// ErrNoLeader means the cluster had no reachable leader before the
	// context ended; the context's error is wrapped too.
	ErrNoLeader = errors.New("election: no leader")
	// ErrHeld is returned by TryAcquire when another lease holds the
	// resource; the error is a *HeldError naming the holder.
	ErrHeld = errors.New("election: resource held")
	// ErrLeaseLost means the lease is over: it expired, was released, or
	// its holder could no longer be sure of it. Acquire again to continue.
	ErrLeaseLost = errors.New("election: lease lost")
	// ErrNoOwner is returned by Owner when nobody holds the resource.
	ErrNoOwner = errors.New("election: no owner")
	// ErrStaleToken is returned by a Fence for a token older than one it
	// has already accepted.
	ErrStaleToken = errors.New("election: stale fencing token")
	// ErrAlreadyBootstrapped is returned by Bootstrap on a node that
	// already has cluster state.
	ErrAlreadyBootstrapped = errors.New("election: already bootstrapped")
	// ErrInvalid marks bad arguments and options; the message names the
	// field.
	ErrInvalid = errors.New("election: invalid argument")
	// ErrNotLeader is returned by TransferLeadership when the cluster's
	// leadership moved while the transfer was being arranged.
	ErrNotLeader = errors.New("election: not the leader")
)

// HeldError is the error TryAcquire returns when the resource is held. It
// wraps ErrHeld.
type HeldError struct {
	Resource string
	Holder   string        // ID of the node that holds the lease
	Token    uint64        // fencing token of the current lease
	Left     time.Duration // how long the lease has left, as the leader saw it
}

// Error names the resource and who holds it.
func (e *HeldError) Error() string {
	return fmt.Sprintf("election: resource %q held by %q (token %d, %v left)", e.Resource, e.Holder, e.Token, e.Left)
}

// Unwrap returns ErrHeld.
func (e *HeldError) Unwrap() error { return ErrHeld }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
