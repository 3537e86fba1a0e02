package ambassador

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/distkit/distkit/faultnet"
)

// faultCluster serves three replicas on a faultnet network, each
// answering with its name, and returns a Router that reaches them from
// node "amb" with opts.
func faultCluster(t *testing.T, n *faultnet.Network, opts ...Option) *Router {
	t.Helper()
	var cs []BackendConfig
	for _, name := range []string{"api-0", "api-1", "api-2"} {
		l, err := n.Listen(name + ":80")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		})}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(l) }()
		t.Cleanup(func() { srv.Close(); <-done })
		cs = append(cs, BackendConfig{Name: name, URL: "http://" + name + ":80"})
	}
	tr := defaultTransport()
	tr.DialContext = n.Dialer("amb")
	h := newH1Transport(tr)
	t.Cleanup(h.CloseIdleConnections)
	r, err := New(cs, append([]Option{WithTransport(h)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Through a partition, a crash and a heal, with retries, per-try
// timeouts and outlier detection: every request is answered, the sick
// replica is ejected while sick, and it comes back.
func TestFaults(t *testing.T) {
	n := faultnet.New(1)
	r := faultCluster(t, n, WithPolicy(RoundRobin()),
		WithRetry(Retry{Attempts: 3, PerTry: 100 * time.Millisecond, Backoff: time.Millisecond}),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 2, BaseEjection: time.Second, MaxEjectedPercent: 34}))
	c := &http.Client{Transport: r.Transport()}
	phase := func(name string, reqs int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for i := range reqs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://api/", nil)
			resp, err := c.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("%s, request %d: %v", name, i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode != 200 {
				t.Fatalf("%s, request %d: %d", name, i, resp.StatusCode)
			}
			got[string(b)]++
		}
		return got
	}
	if got := phase("all up", 30); got["api-2"] != 10 {
		t.Fatalf("all up: %v", got)
	}

	// api-2 is cut off: its tries stall until the per-try timeout, go
	// elsewhere, and after two it is ejected.
	n.Isolate("api-2")
	if got := phase("api-2 cut off", 30); got["api-2"] != 0 {
		t.Fatalf("api-2 cut off: %v", got)
	}
	if st := r.Stats()[2]; !st.Ejected || st.Errors != 2 {
		t.Fatalf("api-2 cut off: %+v", st)
	}

	// api-1 crashes, resetting its connections, while api-2 is still out:
	// the cap keeps api-1 in, and retries hide its failures.
	n.Crash("api-1")
	if got := phase("api-1 crashed", 30); got["api-0"] != 30 {
		t.Fatalf("api-1 crashed: %v", got)
	}

	// api-2 heals and comes back when its ejection ends.
	n.HealAll()
	waitFor(t, "api-2's ejection to end", func() bool { return !r.Stats()[2].Ejected })
	if got := phase("api-2 healed", 30); got["api-2"] == 0 {
		t.Fatalf("api-2 healed: %v", got)
	}
}
