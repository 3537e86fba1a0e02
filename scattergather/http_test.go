package scattergather

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type query struct{ Word string }

type count struct{ N int }

// wordLeaf counts the documents holding a word.
func wordLeaf(docs ...string) Leaf[query, count] {
	return LeafFunc[query, count](func(ctx context.Context, q query) (count, error) {
		n := 0
		for _, d := range docs {
			if strings.Contains(d, q.Word) {
				n++
			}
		}
		return count{n}, nil
	})
}

func serve(t *testing.T, leaf Leaf[query, count], opts ...HTTPOption) *httptest.Server {
	t.Helper()
	h, err := Handler(leaf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	return srv
}

func httpLeaf(t *testing.T, srv *httptest.Server, opts ...HTTPOption) *HTTPLeaf[query, count] {
	t.Helper()
	l, err := NewHTTPLeaf[query, count](srv.URL, append([]HTTPOption{WithHTTPClient(srv.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sumCounts() Reducer[count, int] {
	return Fold(func() int { return 0 }, func(acc int, c count) (int, bool) { return acc + c.N, false })
}

func TestHTTPLeaves(t *testing.T) {
	var ts []Target[query, count]
	for _, docs := range [][]string{{"the cat", "a dog"}, {"cat and dog"}, {"bird"}} {
		ts = append(ts, Target[query, count]{Leaf: httpLeaf(t, serve(t, wordLeaf(docs...)))})
	}
	g, err := New(ts, sumCounts())
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Gather(ctxTimeout(t, 10*time.Second), query{"cat"})
	if err != nil || res.Value != 2 {
		t.Fatalf("value %d, err %v", res.Value, err)
	}
}

// TestHTTPDeadlineCarried: the leaf server runs under what is left of the
// root's deadline, and a leaf that runs out of it is reported TimedOut.
func TestHTTPDeadlineCarried(t *testing.T) {
	seen := make(chan time.Duration, 1)
	probe := LeafFunc[query, count](func(ctx context.Context, q query) (count, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			seen <- -1
		} else {
			seen <- time.Until(dl)
		}
		<-ctx.Done()
		return count{}, ctx.Err()
	})
	srv := serve(t, probe)
	g, _ := New([]Target[query, count]{{Leaf: httpLeaf(t, srv)}}, sumCounts(), WithPolicy(BestEffort()))
	res, err := g.Gather(ctxTimeout(t, 300*time.Millisecond), query{"x"})
	if err != nil || res.TimedOut != 1 {
		t.Fatalf("err %v, %+v", err, res.Leaves)
	}
	if left := <-seen; left <= 0 || left > 300*time.Millisecond {
		t.Fatalf("leaf saw %v left, want its share of the root's 300 ms", left)
	}
}

func TestHandlerErrors(t *testing.T) {
	failing := LeafFunc[query, count](func(context.Context, query) (count, error) { return count{}, errors.New("index corrupt") })
	hung := LeafFunc[query, count](func(ctx context.Context, _ query) (count, error) { <-ctx.Done(); return count{}, ctx.Err() })
	tests := []struct {
		name    string
		leaf    Leaf[query, count]
		method  string
		body    string
		timeout string
		code    int
		msg     string
	}{
		{"ok", wordLeaf("cat"), "POST", `{"Word":"cat"}`, "", 200, ""},
		{"get", wordLeaf(), "GET", "", "", 405, "POST a request"},
		{"bad json", wordLeaf(), "POST", `{"Word":`, "", 400, "decoding request"},
		{"too big", wordLeaf(), "POST", `{"Word":"` + strings.Repeat("x", 100) + `"}`, "", 413, "over 64 bytes"},
		{"bad timeout", wordLeaf(), "POST", `{}`, "soon", 400, TimeoutHeader},
		{"negative timeout", wordLeaf(), "POST", `{}`, "-5", 400, "above 0"},
		{"huge timeout", wordLeaf(), "POST", `{}`, "1e30", 400, "at most 24h0m0s"},
		{"NaN timeout", wordLeaf(), "POST", `{}`, "NaN", 400, "above 0"},
		{"leaf error", failing, "POST", `{}`, "", 500, "index corrupt"},
		{"leaf out of time", hung, "POST", `{}`, "10", 504, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := Handler(tt.leaf, WithMaxBody(64))
			r := httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body))
			if tt.timeout != "" {
				r.Header.Set(TimeoutHeader, tt.timeout)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("%d %s, want %d saying %q", w.Code, w.Body, tt.code, tt.msg)
			}
		})
	}
}

func TestHTTPLeafErrors(t *testing.T) {
	failing := LeafFunc[query, count](func(context.Context, query) (count, error) { return count{}, errors.New("index corrupt") })
	l := httpLeaf(t, serve(t, failing))
	_, err := l.Do(context.Background(), query{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 || se.Message != "index corrupt" {
		t.Fatalf("err = %v", err)
	}

	// 504 from the leaf matches the deadline, so gatherers say TimedOut.
	timeout := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusGatewayTimeout, "context deadline exceeded")
	}))
	defer timeout.Close()
	if _, err := httpLeaf(t, timeout).Do(context.Background(), query{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("504: err = %v, want it to match context.DeadlineExceeded", err)
	}

	// Not a handler of ours: the body's start is quoted.
	teapot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "short and stout", http.StatusTeapot)
	}))
	defer teapot.Close()
	if _, err := httpLeaf(t, teapot).Do(context.Background(), query{}); !errors.As(err, &se) || se.Code != 418 || !strings.Contains(se.Message, "short and stout") {
		t.Fatalf("418: err = %v", err)
	}

	// An answer over the limit is refused.
	big := serve(t, wordLeaf())
	if _, err := httpLeaf(t, big, WithMaxBody(3)).Do(context.Background(), query{}); err == nil || !strings.Contains(err.Error(), "larger than 3 bytes") {
		t.Fatalf("big answer: err = %v", err)
	}

	// A deadline already passed sends nothing.
	calls := 0
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++ }))
	defer counting.Close()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := httpLeaf(t, counting).Do(ctx, query{}); !errors.Is(err, context.DeadlineExceeded) || calls != 0 {
		t.Fatalf("err %v, %d requests sent", err, calls)
	}
}

// TestHTTPDeadlineExtremes: a deadline days away is sent as the most a
// Handler accepts, and a sliver of a microsecond as one.
func TestHTTPDeadlineExtremes(t *testing.T) {
	seen := make(chan time.Duration, 1)
	probe := LeafFunc[query, count](func(ctx context.Context, _ query) (count, error) {
		dl, _ := ctx.Deadline()
		seen <- time.Until(dl)
		return count{1}, nil
	})
	l := httpLeaf(t, serve(t, probe))
	ctx, cancel := context.WithTimeout(context.Background(), 48*time.Hour)
	defer cancel()
	if _, err := l.Do(ctx, query{}); err != nil {
		t.Fatalf("48 h deadline: %v", err)
	}
	if left := <-seen; left > maxTimeout || left < maxTimeout-time.Minute {
		t.Fatalf("leaf saw %v left, want about %v", left, maxTimeout)
	}

	// Less than a microsecond left: either the leaf refuses to send, or
	// the handler gets a valid, tiny timeout; never a 400.
	tiny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := parseTimeout(r.Header.Get(TimeoutHeader)); err != nil {
			t.Errorf("header %q: %v", r.Header.Get(TimeoutHeader), err)
		}
	}))
	defer tiny.Close()
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Nanosecond)
		_, _ = httpLeaf(t, tiny).Do(ctx, query{})
		cancel()
	}
	// That loop seldom reaches the header: the deadline has mostly passed
	// first. The formatting itself, at the edges:
	for left, want := range map[time.Duration]time.Duration{
		time.Nanosecond: time.Microsecond, 300 * time.Nanosecond: time.Microsecond,
		1500 * time.Microsecond: 1500 * time.Microsecond, 48 * time.Hour: maxTimeout,
	} {
		got, err := parseTimeout(formatTimeout(left))
		if err != nil || got != want {
			t.Errorf("%v left: header %q reads back as %v, %v; want %v", left, formatTimeout(left), got, err, want)
		}
	}
}

func TestHTTPInvalid(t *testing.T) {
	for _, u := range []string{"", "ftp://x/", "http://", "://x", "localhost:80"} {
		if _, err := NewHTTPLeaf[query, count](u); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewHTTPLeaf(%q) = %v, want ErrInvalid", u, err)
		}
	}
	for _, o := range []HTTPOption{nil, WithHTTPClient(nil), WithCodec(nil), WithMaxBody(0), WithMaxBody(math.MaxInt64)} {
		if _, err := NewHTTPLeaf[query, count]("http://127.0.0.1:1/", o); !errors.Is(err, ErrInvalid) {
			t.Errorf("option: err = %v, want ErrInvalid", err)
		}
	}
	if _, err := Handler[query, count](nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Handler(nil) = %v", err)
	}
}

// FuzzHandler sends arbitrary bodies and timeout headers to a Handler: it
// must answer, never panic, with a status the docs list.
func FuzzHandler(f *testing.F) {
	f.Add([]byte(`{"Word":"cat"}`), "100")
	f.Add([]byte(`{"Word":`), "")
	f.Add([]byte(`[]`), "0.001")
	f.Add([]byte(`null`), "1e400")
	f.Add([]byte(`{}`), "1e-300")
	h, _ := Handler(wordLeaf("cat", "dog"), WithMaxBody(1024))
	f.Fuzz(func(t *testing.T, body []byte, timeout string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(string(body)))
		if timeout != "" {
			r.Header.Set(TimeoutHeader, timeout)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 400, 413, 504:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if d, err := parseTimeout(timeout); err == nil && (d <= 0 || d > maxTimeout) {
			t.Fatalf("parseTimeout(%q) = %v", timeout, d)
		}
	})
}
