package ambassador

import (
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 and of
// older practice, which a proxy does not pass on.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // not standard, but sent by some clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonicalized "TE"
	"Trailer", // not "Trailers", as in RFC 9110
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes from h the hop-by-hop headers and the ones
// its Connection header names.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// addForwardedFor appends the client's address (from RemoteAddr) to h's
// X-Forwarded-For, after any the client sent, as one comma-separated
// line; with an unknown address it leaves h as it is.
func addForwardedFor(h http.Header, remoteAddr string) {
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil || ip == "" {
		return
	}
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	h["X-Forwarded-For"] = []string{ip}
}
