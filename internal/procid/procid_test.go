package procid

import (
	"runtime"
	"sync"
	"testing"
)

func TestGetInRange(t *testing.T) {
	n := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for range 4 * n {
		wg.Go(func() {
			for range 1000 {
				if id := Get(); id < 0 || id >= n {
					t.Errorf("Get() = %d, want 0..%d", id, n-1)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkGet(b *testing.B) {
	s := 0
	for b.Loop() {
		s += Get()
	}
	_ = s
}
