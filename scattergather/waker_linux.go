package scattergather

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// wakeEarly is how long before its due time the hedge timer fires: the
// poller's rounding, after which a timerfd wakes the waiting goroutine
// within tens of microseconds. A variable so that tests can widen it.
var wakeEarly = time.Millisecond

// timerfdWaker is a timerfd read through the runtime's poller, so the
// waiting goroutine holds no thread, and the poller wakes on the timer's
// expiry instead of its own millisecond timeout.
type timerfdWaker struct{ f *os.File }

func newPreciseWaker(d time.Duration) (waker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))}
	if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return timerfdWaker{os.NewFile(uintptr(fd), "timerfd")}, nil
}

// wait reads the expiry count; a stop closes the file, which ends the
// read with an error. Should the poller not have taken the file, the
// read fails at once (EAGAIN), and the caller finds time left.
func (w timerfdWaker) wait() {
	var n [8]byte
	w.f.Read(n[:])
	w.f.Close()
}

func (w timerfdWaker) stop() { w.f.Close() }
