package ambassador

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Copies reach the shadow with its Host marked and the body whole, the
// replies are thrown away, and a slow shadow neither holds up requests
// nor gets more than MaxInFlight copies at once.
func TestShadow(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	var hold atomic.Bool
	release := make(chan struct{})
	sh := backend(t, "shadow", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.Host+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		if hold.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(500) // thrown away
	})
	s := map[string]*httptest.Server{"a": backend(t, "a", nil)}
	r := newRouter(t, s, []string{"a"}, WithShadow(Shadow{URL: sh.URL + "/v2", MaxInFlight: 2}))
	defer r.Close()
	c := &http.Client{Transport: r.Transport()}
	req, _ := http.NewRequest("PUT", "http://svc.local:8080/k", strings.NewReader("val"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != "a" {
		t.Fatalf("the real answer: %d %q", resp.StatusCode, got)
	}
	waitFor(t, "the copy", func() bool { return r.ShadowStats().Errors == 1 })
	mu.Lock()
	if len(seen) != 1 || seen[0] != "PUT svc.local-shadow:8080 /v2/k val" {
		t.Fatalf("shadow saw %q", seen)
	}
	mu.Unlock()

	// A body the Proxy cannot read twice is not copied.
	front := httptest.NewServer(r.Proxy())
	defer front.Close()
	resp, err = http.Post(front.URL+"/p", "text/plain", strings.NewReader("once"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st := r.ShadowStats(); st.Sent != 1 {
		t.Fatalf("a Proxy body was copied: %+v", st)
	}

	hold.Store(true)
	start := time.Now()
	for range 5 {
		if code, from, _ := get(t, r.Proxy(), "/"); code != 200 || from != "a" {
			t.Fatalf("%d from %q with a slow shadow", code, from)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a slow shadow held requests up: %v", took)
	}
	if st := r.ShadowStats(); st.Sent != 3 || st.Dropped != 3 {
		t.Fatalf("with 2 copies held: %+v", st)
	}
	close(release)
}

// A Fraction of requests is copied, within statistical bounds.
func TestShadowFraction(t *testing.T) {
	var n atomic.Int32
	sh := backend(t, "shadow", func(w http.ResponseWriter, r *http.Request) { n.Add(1) })
	s := map[string]*httptest.Server{"a": backend(t, "a", nil)}
	r := newRouter(t, s, []string{"a"}, WithShadow(Shadow{URL: sh.URL, Fraction: 0.2, MaxInFlight: 1000}))
	const total = 1000
	for range total {
		get(t, r.Proxy(), "/")
	}
	// Close would cancel copies still out: wait for them.
	waitFor(t, "the copies", func() bool { return uint64(n.Load()) == r.ShadowStats().Sent })
	r.Close()
	sd := math.Sqrt(total * 0.2 * 0.8)
	if got := float64(n.Load()); math.Abs(got-200) > 5*sd {
		t.Fatalf("%v of %d copied, want 200 ± %.0f", got, total, 5*sd)
	}
	if st := r.ShadowStats(); st.Sent != uint64(n.Load()) || st.Dropped != 0 {
		t.Fatalf("stats %+v, shadow saw %d", st, n.Load())
	}
	for _, c := range []Shadow{{}, {URL: "ftp://x"}, {URL: sh.URL, Fraction: 1.5}, {URL: sh.URL, MaxInFlight: -1}, {URL: sh.URL, Timeout: -1}} {
		if _, err := New(nil, WithShadow(c)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", c, err)
		}
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{"svc": "svc-shadow", "svc:80": "svc-shadow:80", "[::1]:80": "[::1]-shadow:80", "[::1]": "[::1]-shadow"} {
		if got := shadowHost(&http.Request{Host: in}); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}
