package ambassador

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func servers(t *testing.T, names ...string) map[string]*httptest.Server {
	m := map[string]*httptest.Server{}
	for _, n := range names {
		m[n] = backend(t, n, nil)
	}
	return m
}

func TestRoundRobin(t *testing.T) {
	s := servers(t, "a", "b", "c")
	r := newRouter(t, s, []string{"a", "b", "c"}, WithPolicy(RoundRobin()))
	var order []string
	for range 9 {
		code, b, _ := get(t, r.Proxy(), "/")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		order = append(order, b)
	}
	if got := strings.Join(order, ""); got != "abcabcabc" {
		t.Fatalf("order %s, want abcabcabc", got)
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	s := servers(t, "a", "b", "c")
	tr := newH1Transport(defaultTransport())
	t.Cleanup(tr.CloseIdleConnections)
	r, err := New([]BackendConfig{
		{Name: "a", URL: s["a"].URL, Weight: 10},
		{Name: "b", URL: s["b"].URL, Weight: 2},
		{Name: "c", URL: s["c"].URL, Weight: 2},
	}, WithPolicy(WeightedRoundRobin()), WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for range 14 {
		_, b, _ := get(t, r.Proxy(), "/")
		order = append(order, b)
	}
	// Weights 10, 2, 2 are 5, 1, 1: spread out, as nginx does.
	if got := strings.Join(order, ""); got != "aabacaaaabacaa" {
		t.Fatalf("order %s, want aabacaa twice", got)
	}
}

// countBackends sends n requests one after another through r's client
// transport, each in a goroutine so that one held at a backend does not
// stop the next, and counts where they went; entered is signalled by a
// backend that holds its request.
func countBackends(t *testing.T, r *Router, n int, entered <-chan struct{}) map[string]int {
	t.Helper()
	counts := map[string]int{}
	client := &http.Client{Transport: r.Transport()}
	for range n {
		got := make(chan string, 1)
		go func() {
			resp, err := client.Get("http://svc/")
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			resp.Body.Close()
			got <- resp.Header.Get("X-Backend")
		}()
		select {
		case b := <-got:
			counts[b]++
		case <-entered:
			counts["held"]++
		case <-time.After(10 * time.Second):
			t.Fatal("a request neither came back nor was held")
		}
	}
	return counts
}

// With two backends, power of two choices compares both: once a request
// is held at one, every other goes to the other.
func TestLeastRequests(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 100)
	s := map[string]*httptest.Server{
		"slow": backend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-release
		}),
		"fast": backend(t, "fast", nil),
	}
	r := newRouter(t, s, []string{"slow", "fast"}, WithPolicy(LeastRequests()))
	counts := countBackends(t, r, 20, entered)
	close(release)
	if counts["held"] > 1 || counts["fast"] < 19 {
		t.Fatalf("requests went %v, want at most one held at slow", counts)
	}
	// Each backend's requests in flight are counted until the body closes.
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats()[0].InFlight != 0 || r.Stats()[1].InFlight != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: requests still in flight", r.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// PeakEWMA tries a backend it has not measured, then sends the rest to
// the faster. (Slow by 100 ms: a loaded machine can stall the fast one for
// tens of ms, and peak-EWMA keeps such a peak for a while.)
func TestPeakEWMA(t *testing.T) {
	s := map[string]*httptest.Server{
		"slow": backend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond)
			w.Write([]byte("slow"))
		}),
		"fast": backend(t, "fast", nil),
	}
	r := newRouter(t, s, []string{"slow", "fast"}) // PeakEWMA is the default
	counts := countBackends(t, r, 50, nil)
	if counts["slow"] > 2 || counts["fast"] < 48 {
		t.Fatalf("requests went %v, want all but one or two to fast", counts)
	}
	st := r.Stats()
	if st[0].Latency < 75*time.Millisecond || st[1].Latency >= st[0].Latency {
		t.Fatalf("stats %+v: want slow's latency about 100 ms, fast's less", st)
	}
}

func TestPeakEWMADecays(t *testing.T) {
	b := &Backend{}
	t0 := time.Now()
	b.observe(t0, 100*time.Millisecond)
	b.observe(t0.Add(time.Millisecond), time.Millisecond) // a peak decays slowly
	if l := b.Latency(); l < 99*time.Millisecond {
		t.Fatalf("latency %v right after a 100 ms peak", l)
	}
	b.observe(t0.Add(time.Minute), time.Millisecond) // six time constants on
	if l := b.Latency(); l > 2*time.Millisecond {
		t.Fatalf("latency %v a minute after the peak", l)
	}
	b.observe(t0.Add(time.Minute+time.Millisecond), 50*time.Millisecond) // a new peak counts at once
	if l := b.Latency(); l != 50*time.Millisecond {
		t.Fatalf("latency %v after a 50 ms peak", l)
	}
}

func TestWeightedScheduleIsSmooth(t *testing.T) {
	s := &view{list: []*Backend{{weight: 5}, {weight: 1}, {weight: 1}}}
	s.makeSchedule()
	var got strings.Builder
	for _, i := range s.wrr {
		got.WriteByte("abc"[i])
	}
	if got.String() != "aabacaa" {
		t.Fatalf("schedule %s, want aabacaa", got.String())
	}
}

// Round robin goes on across SetBackends rather than starting over.
func TestRoundRobinAcrossChanges(t *testing.T) {
	p := RoundRobin()
	var cs []BackendConfig
	for _, n := range []string{"a", "b", "c"} {
		cs = append(cs, BackendConfig{Name: n, URL: "http://" + n})
	}
	s, err := newBackendSet(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for range 6 {
		b, _ := p.Pick(nil, Backends{s, s.view.Load()})
		got.WriteString(b.Name())
		if s, err = newBackendSet(cs, s); err != nil { // a change each time
			t.Fatal(err)
		}
	}
	if got.String() != "abcabc" {
		t.Fatalf("order %s across changes, want abcabc", got.String())
	}
}
