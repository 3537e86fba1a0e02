package scattergather

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error about bad arguments or options.
var ErrInvalid = errors.New("scattergather: invalid argument")

// ErrIncomplete is wrapped by every *IncompleteError.
var ErrIncomplete = errors.New("scattergather: incomplete")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// IncompleteError says that a gather ended without what its policy needs.
// It carries what did arrive: the report of every leaf, with each failed
// leaf's error. The partly merged value is in the Result returned beside
// it. errors.Is matches ErrIncomplete, and every leaf error and the
// context's error (context.DeadlineExceeded, context.Canceled) that
// contributed.
type IncompleteError struct {
	Policy Policy
	// OK is how many leaves answered; Need how many the policy needed.
	OK, Need int
	Leaves   []LeafReport
	// Cause is the context's error if the gather's context ended it, or
	// nil.
	Cause error
}

// Error says how many leaves answered and what the policy needed.
func (e *IncompleteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scattergather: incomplete: %d of %d leaves answered, policy %v needs %d", e.OK, len(e.Leaves), e.Policy, e.Need)
	var counts [numOutcomes]int
	for _, l := range e.Leaves {
		counts[l.Outcome]++
	}
	for o := Failed; o < numOutcomes; o++ {
		if counts[o] > 0 {
			fmt.Fprintf(&b, ", %d %v", counts[o], o)
		}
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	for _, l := range e.Leaves {
		if l.Outcome == Failed {
			fmt.Fprintf(&b, "; first failure: %s: %v", l.Name, l.Err)
			break
		}
	}
	return b.String()
}

// Unwrap returns ErrIncomplete, the context's error and the leaves'
// errors.
func (e *IncompleteError) Unwrap() []error {
	errs := []error{ErrIncomplete}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	for _, l := range e.Leaves {
		if l.Err != nil {
			errs = append(errs, l.Err)
		}
	}
	return errs
}
