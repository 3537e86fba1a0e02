//go:build !linux

package scattergather

import (
	"errors"
	"time"
)

// wakeEarly is 0 where there is no precise waker: the hedge timer fires
// when due, as precisely as Go's timers go.
var wakeEarly time.Duration

func newPreciseWaker(time.Duration) (waker, error) {
	return nil, errors.New("no precise waker on this platform")
}
