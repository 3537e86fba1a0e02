package workqueue

import (
	"errors"
	"fmt"
)

// Sentinel errors; match them with [errors.Is]. Errors about bad input
// wrap ErrInvalid with what was wrong.
var (
	// ErrInvalid reports bad input: an empty or oversized payload, an ID
	// or key that is too long, a lease of zero or less, a bad option.
	ErrInvalid = errors.New("workqueue: invalid argument")
	// ErrNotHeld reports an Ack, Nack or Extend of a claim the queue no
	// longer holds for its caller: the lease expired and the item went
	// back to the queue (perhaps to another worker), the claim was
	// already acked or nacked, or the queue never granted it.
	ErrNotHeld = errors.New("workqueue: claim not held")
	// ErrNotFound reports a dead-letter operation on an ID that is not a
	// dead letter.
	ErrNotFound = errors.New("workqueue: no such dead letter")
	// ErrClosed reports a call on a closed queue.
	ErrClosed = errors.New("workqueue: queue closed")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func notHeld(c Claim) error {
	return fmt.Errorf("%w: item %q, token %d (lease expired, already acked or nacked, or never granted)", ErrNotHeld, c.ID, c.Token)
}

// Permanent marks a handler error that retrying cannot fix: a Nack with
// it (or an error wrapping it) sends the item to the dead letters at
// once, whatever attempts remain.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
