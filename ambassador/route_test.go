package ambassador

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestKeyFuncs(t *testing.T) {
	r := httptest.NewRequest("GET", "/users/42/photos?tenant=acme", nil)
	r.Header.Set("X-User", "u7")
	r.AddCookie(&http.Cookie{Name: "exp", Value: "b"})
	for _, tc := range []struct {
		f    KeyFunc
		want string
		ok   bool
	}{
		{Header("x-user"), "u7", true},
		{Header("X-None"), "", false},
		{Query("tenant"), "acme", true},
		{Query("none"), "", false},
		{PathSegment(0), "users", true},
		{PathSegment(1), "42", true},
		{PathSegment(2), "photos", true},
		{PathSegment(3), "", false},
		{Cookie("exp"), "b", true},
		{Cookie("none"), "", false},
	} {
		if got, ok := tc.f(r); got != tc.want || ok != tc.ok {
			t.Errorf("got %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
		}
	}
}

// mapLocator places keys by a map; a shard.Table does the same by hash.
type mapLocator map[string]string

func (m mapLocator) Locate(key string) (string, bool) {
	if len(m) == 0 {
		return "", false
	}
	n, ok := m[key]
	if !ok {
		return "s1", true
	}
	return n, true
}

func TestSharded(t *testing.T) {
	s := servers(t, "s1", "s2")
	loc := mapLocator{"42": "s2", "7": "s1", "9": "gone"}
	p, err := Sharded(PathSegment(1), loc)
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, s, []string{"s1", "s2"}, WithPolicy(p))
	for range 5 { // the same key, the same backend
		if code, b, _ := get(t, r.Proxy(), "/users/42"); code != 200 || b != "s2" {
			t.Fatalf("key 42 went to %q (%d), want s2", b, code)
		}
	}
	if _, b, _ := get(t, r.Proxy(), "/users/7"); b != "s1" {
		t.Fatalf("key 7 went to %q, want s1", b)
	}
	if code, _, body := get(t, r.Proxy(), "/users"); code != 400 || !strings.Contains(body, "no routing key") {
		t.Fatalf("no key: %d %q", code, body)
	}
	// The reason does not show the key, which may be a session.
	if code, _, body := get(t, r.Proxy(), "/users/9"); code != 502 || body != "Bad Gateway: no backend for the request\n" {
		t.Fatalf("a locator naming an unknown backend: %d %q", code, body)
	}
	// The errors themselves say why, for the log and the Transport.
	if _, err := p.Pick(httptest.NewRequest("GET", "/users/9", nil), backendsFor(t, "s1", "s2")); err == nil || !strings.Contains(err.Error(), `"gone", which is not a backend`) {
		t.Fatalf("a locator naming an unknown backend: %v", err)
	}
	empty, _ := Sharded(PathSegment(1), mapLocator{})
	if _, err := empty.Pick(httptest.NewRequest("GET", "/users/1", nil), backendsFor(t, "s1")); err == nil || !strings.Contains(err.Error(), "no nodes") {
		t.Fatalf("an empty locator: %v", err)
	}
	r2 := newRouter(t, s, []string{"s1"}, WithPolicy(empty))
	if code, _, body := get(t, r2.Proxy(), "/users/1"); code != 502 || !strings.Contains(body, "no backend for the request") {
		t.Fatalf("an empty locator: %d %q", code, body)
	}
	if _, err := Sharded(nil, loc); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Sharded(nil, loc): %v", err)
	}
}

func backendsFor(t *testing.T, names ...string) Backends {
	t.Helper()
	var cs []BackendConfig
	for _, n := range names {
		cs = append(cs, BackendConfig{Name: n, URL: "http://" + n})
	}
	s, err := newBackendSet(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Backends{s, s.view.Load()}
}

// A 90/10 split lands within statistical bounds; with a sticky key, each
// key stays on one side, and many keys split about as asked.
func TestSplit(t *testing.T) {
	p, err := Split([]Arm{
		{Name: "stable", Backends: []string{"a1", "a2"}, Weight: 90},
		{Name: "experiment", Backends: []string{"b"}, Weight: 10},
	}, Cookie("user"))
	if err != nil {
		t.Fatal(err)
	}
	bs := backendsFor(t, "a1", "a2", "b")
	const n = 4000
	counts := map[string]int{}
	for range n {
		b, err := p.Pick(httptest.NewRequest("GET", "/", nil), bs)
		if err != nil {
			t.Fatal(err)
		}
		counts[b.Name()]++
	}
	// Binomial(4000, 0.1): mean 400, sd 19; allow five sd.
	if counts["b"] < 305 || counts["b"] > 495 || counts["a1"]+counts["a2"] != n-counts["b"] {
		t.Fatalf("counts %v, want about 10%% to b", counts)
	}
	if d := counts["a1"] - counts["a2"]; d < -1 || d > 1 {
		t.Fatalf("counts %v: the stable arm's backends not in turn", counts)
	}
	sticky := map[string]int{}
	for u := range 2000 {
		side := ""
		for range 3 {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(&http.Cookie{Name: "user", Value: fmt.Sprint("u", u)})
			b, _ := p.Pick(r, bs)
			arm := "stable"
			if b.Name() == "b" {
				arm = "experiment"
			}
			if side != "" && arm != side {
				t.Fatalf("user u%d moved from %s to %s", u, side, arm)
			}
			side = arm
		}
		sticky[side]++
	}
	// Binomial(2000, 0.1): mean 200, sd 13.4.
	if sticky["experiment"] < 133 || sticky["experiment"] > 267 {
		t.Fatalf("sticky users %v, want about 10%% in the experiment", sticky)
	}
	// An arm whose backends are all gone fails with a reason.
	if _, err := p.Pick(httptest.NewRequest("GET", "/", nil), backendsFor(t, "x")); err == nil || !strings.Contains(err.Error(), "has none of its backends") {
		t.Fatalf("an arm with no backends: %v", err)
	}
	for _, arms := range [][]Arm{
		{{Name: "a", Backends: []string{"a"}, Weight: 0}},
		{{Name: "a", Backends: []string{"a"}, Weight: -1}},
		{{Name: "a", Backends: []string{"a"}, Weight: MaxWeight + 1}},
		{{Name: "a", Weight: 1}},
		{{Name: "a", Backends: []string{"a"}, Weight: 1}, {Name: "a", Backends: []string{"b"}, Weight: 1}},
	} {
		if _, err := Split(arms, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Split(%+v): %v, want ErrInvalid", arms, err)
		}
	}
}
