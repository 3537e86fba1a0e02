package ambassador

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid is wrapped by every error about bad arguments or options.
	ErrInvalid = errors.New("ambassador: invalid argument")
	// ErrNoBackends is returned (or answered with 503) when a request
	// comes and the Router has no backends to send it to.
	ErrNoBackends = errors.New("ambassador: no backends")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// BackendError is a request's failure at a backend: it could not be sent,
// or no answer came. errors.Is sees through it to Err (context.Canceled,
// context.DeadlineExceeded, a *net.OpError, ...).
type BackendError struct {
	Backend string // its name
	Err     error
}

func (e *BackendError) Error() string {
	return "ambassador: backend " + e.Backend + ": " + e.Err.Error()
}

func (e *BackendError) Unwrap() error { return e.Err }
