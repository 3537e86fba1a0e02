package discovery

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these (and
// the cause, where there is one), so test them with errors.Is.
var (
	// ErrClosed is returned by every method of a closed Node.
	ErrClosed = errors.New("discovery: node closed")
	// ErrLeft is returned by methods that change what the node announces
	// once it has left the cluster.
	ErrLeft = errors.New("discovery: node has left")
	// ErrInvalid marks bad arguments and options; the message names the
	// field and the rule it broke.
	ErrInvalid = errors.New("discovery: invalid argument")
	// ErrMetaTooLarge means the node's metadata (its services, tags and
	// key fingerprints) would not fit memberlist's 512-byte limit. Nothing
	// was changed.
	ErrMetaTooLarge = errors.New("discovery: metadata too large")
	// ErrBadMeta means a member's metadata could not be decoded; such
	// members are kept out of the cluster view.
	ErrBadMeta = errors.New("discovery: malformed metadata")
	// ErrJoin means no seed could be joined. The message lists each seed's
	// error; a seed that closes the connection at once usually runs with a
	// different encryption key or cluster label.
	ErrJoin = errors.New("discovery: join failed")
	// ErrNoEncryption is returned by keyring methods of a node created
	// without WithKeys: memberlist cannot turn encryption on at run time.
	ErrNoEncryption = errors.New("discovery: encryption not enabled")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
