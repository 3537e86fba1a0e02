package faultnet

import (
	"errors"
	"net"
	"syscall"
)

// Sentinel errors. Operations return them wrapped in a [*net.OpError] that
// names the operation and the addresses, as the net package does; match
// them with [errors.Is].
var (
	// ErrClosed is [net.ErrClosed], so that code written against real
	// sockets recognises a closed listener or connection: Accept on a
	// closed listener, and Read, Write, Close or a deadline change on a
	// connection closed by its own side, return it.
	ErrClosed = net.ErrClosed

	// ErrRefused reports a Dial that found no listener at the address, or
	// that the drop rate set by [Network.SetDropRate] refused. It also
	// matches [syscall.ECONNREFUSED], so code that checks for a refused
	// TCP connection behaves the same here.
	ErrRefused error = &sentinel{"faultnet: connection refused", syscall.ECONNREFUSED}

	// ErrReset reports a connection that [Network.Reset] or
	// [Network.Crash] tore down, or that was waiting to be accepted when
	// its listener closed. It is not a timeout. It also matches
	// [syscall.ECONNRESET].
	ErrReset error = &sentinel{"faultnet: connection reset by peer", syscall.ECONNRESET}

	// ErrAddrInUse reports a Listen on an address that already has a
	// listener. Close the listener, or [Network.Crash] its node, first.
	ErrAddrInUse = errors.New("faultnet: address already in use")

	// ErrInvalidAddr reports an empty address, or one whose host part is
	// empty (such as ":80"), so that it names no node; or an empty name for
	// the dialling node.
	ErrInvalidAddr = errors.New("faultnet: invalid address")

	// ErrInvalidRate reports a drop probability that is not a number in
	// [0, 1].
	ErrInvalidRate = errors.New("faultnet: drop rate not in [0, 1]")
)

// sentinel is an error value that also matches one errno, so that
// errors.Is(err, syscall.ECONNRESET) holds for a reset here as it does for
// a reset TCP connection.
type sentinel struct {
	msg   string
	errno syscall.Errno
}

func (e *sentinel) Error() string { return e.msg }

func (e *sentinel) Is(target error) bool {
	errno, ok := target.(syscall.Errno)
	return ok && errno == e.errno
}
