package latency

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestLatencyQuantiles(t *testing.T) {
	l := New(new(sync.Mutex))
	var ds []time.Duration
	for i := 1; i <= 1000; i++ {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	for _, d := range ds {
		l.Add(d)
	}
	qs, n := l.Quantiles(0.5, 0.9, 0.99)
	if n != 1000 {
		t.Fatalf("n = %d", n)
	}
	for i, want := range []time.Duration{500 * time.Microsecond, 900 * time.Microsecond, 990 * time.Microsecond} {
		if rel := math.Abs(float64(qs[i]-want)) / float64(want); rel > 0.035 {
			t.Errorf("quantile %d = %v, want %v within 3.5%%", i, qs[i], want)
		}
	}
	// Old windows age out.
	for range 2 * windowSize {
		l.Add(time.Second)
	}
	if qs, _ := l.Quantiles(0.01); qs[0] < 900*time.Millisecond {
		t.Fatalf("p1 = %v after the old samples should have aged out", qs[0])
	}
	// Every bucket's bounds contain what maps to it.
	for _, ns := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 123456789, math.MaxInt64} {
		lo, hi := bounds(bucket(ns))
		if ns < lo || ns > hi {
			t.Errorf("%d maps to bucket %d = [%d, %d]", ns, bucket(ns), lo, hi)
		}
	}
}

func TestMergedIsQuantilesOfAll(t *testing.T) {
	a, b, all := New(new(sync.Mutex)), New(new(sync.Mutex)), New(new(sync.Mutex))
	for i := 1; i <= 600; i++ {
		d := time.Duration(i) * time.Microsecond
		if i%3 == 0 {
			a.Add(d)
		} else {
			b.Add(d)
		}
		all.Add(d)
	}
	got, n := Merged([]*Window{a, b}, 0.1, 0.5, 0.99)
	want, m := all.Quantiles(0.1, 0.5, 0.99)
	if n != m {
		t.Fatalf("merged %d samples, want %d", n, m)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("quantile %d: merged %v, one window %v", i, got[i], want[i])
		}
	}
}
