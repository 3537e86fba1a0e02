package ambassador

import (
	"net/http"
	"net/textproto"
	"strings"
	"testing"
)

// FuzzHeaders: whatever the headers and the client address, removing
// hop-by-hop headers leaves none of them and none that Connection named,
// keeps every other header, and X-Forwarded-For ends with the client.
func FuzzHeaders(f *testing.F) {
	f.Add("X-Hop, close", "X-Hop", "v", "127.0.0.1:80", "1.2.3.4")
	f.Add(",,, ,keep-alive", "Keep-Alive", "timeout=5", "[::1]:443", "")
	f.Add("Upgrade", "X-Other", "", "bad", "a, b")
	f.Fuzz(func(t *testing.T, connection, name, value, remote, prior string) {
		h := http.Header{}
		h.Set("Connection", connection)
		h.Set("Transfer-Encoding", "chunked")
		if name != "" {
			h.Add(name, value)
		}
		if prior != "" {
			h.Set("X-Forwarded-For", prior)
		}
		named := map[string]bool{}
		for f := range strings.SplitSeq(connection, ",") {
			if f = textproto.TrimString(f); f != "" {
				named[http.CanonicalHeaderKey(f)] = true
			}
		}
		removeHopHeaders(h)
		for _, k := range hopHeaders {
			if _, ok := h[k]; ok {
				t.Fatalf("hop-by-hop %s left in %v", k, h)
			}
		}
		for k := range named {
			if _, ok := h[k]; ok {
				t.Fatalf("%s, named by Connection %q, left in %v", k, connection, h)
			}
		}
		ck := http.CanonicalHeaderKey(name)
		hop := named[ck]
		for _, k := range hopHeaders {
			hop = hop || k == ck
		}
		if name != "" && !hop && ck != "X-Forwarded-For" && h.Get(name) != value {
			t.Fatalf("%s: %q was not hop-by-hop but is now %q", name, value, h.Get(name))
		}
		addForwardedFor(h, remote)
		if xff := h["X-Forwarded-For"]; len(xff) > 1 {
			t.Fatalf("X-Forwarded-For in %d lines: %q", len(xff), xff)
		}
	})
}
