// Package procid tells which P (the runtime's processor, one per
// GOMAXPROCS) the calling goroutine runs on, as a hint for sharding: a
// goroutine seldom moves between Ps, so state kept per P is touched by
// one core at a time and its cache lines stay put.
//
// Go offers no public way to learn this. sync.Pool keeps values per P and
// would serve, but a Get and Put cost about 15 ns on the machines we
// measure; this costs about 3. It reads the id through runtime.procPin,
// which the runtime keeps linkable for this use (go.dev/issue/67401).
package procid

import _ "unsafe" // for go:linkname

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// Get returns the id of the P the caller runs on, from 0 to GOMAXPROCS-1
// at the time of the call. The caller may have moved by the time it uses
// it: it is a hint, never a guarantee.
func Get() int {
	id := procPin()
	procUnpin()
	return id
}
