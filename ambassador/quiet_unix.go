//go:build unix

package ambassador

import (
	"net"
	"syscall"
)

// quiet reports whether c, idle, has neither been closed by its peer nor
// received bytes: a non-blocking peek finds nothing to read. (What
// http.Transport's read loop notices while a connection is idle, for one
// system call a reuse.)
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN
		return true
	})
	return ok
}
