package loadtest

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestLoadStopsAndMeasures(t *testing.T) {
	before := runtime.NumGoroutine()
	late := Lateness()
	stopSpin, stopAlloc := Spin(2), Allocate(1)
	time.Sleep(50 * time.Millisecond)
	stopAlloc()
	stopSpin()
	sleeps := late()
	if len(sleeps) == 0 {
		t.Fatal("no sleep measured in 50 ms")
	}
	for i := 1; i < len(sleeps); i++ {
		if sleeps[i] < sleeps[i-1] {
			t.Fatal("lateness not sorted")
		}
	}
	if Percentile(sleeps, 1) != sleeps[len(sleeps)-1] || Percentile(nil, 0.5) != 0 {
		t.Fatal("Percentile")
	}
	if !AwaitExit("internal/loadtest.run", 5*time.Second) {
		t.Fatal("load goroutines still running after stop")
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines, %d before", n, before)
	}
}

func TestAwaitExitTimesOut(t *testing.T) {
	stop, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(stop) })
	go parked(started, stop)
	<-started
	// The name of the parked goroutine's function, which no other stack
	// holds (the test's own stack names the test, not it).
	if AwaitExit("loadtest.parked", 100*time.Millisecond) {
		t.Fatal("reported a running goroutine as ended")
	}
	once.Do(func() { close(stop) })
	if !AwaitExit("loadtest.parked", 5*time.Second) {
		t.Fatal("an ended goroutine was still reported running")
	}
}

//go:noinline
func parked(started, stop chan struct{}) {
	close(started)
	<-stop
}
