package ambassador

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// https backends are reached with the CAs given to WithTLS, and not
// without them; a Proxy served over TLS tells its backends so.
func TestTLS(t *testing.T) {
	proto := make(chan string, 1)
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto <- r.Header.Get("X-Forwarded-Proto")
		io.WriteString(w, "secure")
	}))
	defer s.Close()
	roots := x509.NewCertPool()
	roots.AddCert(s.Certificate())
	r, err := New([]BackendConfig{{URL: s.URL}}, WithTLS(&tls.Config{RootCAs: roots}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	front := httptest.NewTLSServer(r.Proxy())
	defer front.Close()
	c := front.Client()
	resp, err := c.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "secure" || <-proto != "https" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}

	untrusting, err := New([]BackendConfig{{URL: s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	req, _ := http.NewRequest("GET", "http://svc/", nil)
	var unknown x509.UnknownAuthorityError
	if _, err := untrusting.Transport().RoundTrip(req); !errors.As(err, &unknown) {
		t.Fatalf("without the CA: %v, want x509.UnknownAuthorityError", err)
	}
	if code, _, _ := get(t, untrusting.Proxy(), "/"); code != 502 {
		t.Fatalf("without the CA the Proxy answered %d, want 502", code)
	}
	if _, err := New(nil, WithTLS(&tls.Config{}), WithTransport(http.DefaultTransport)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("WithTLS and WithTransport: %v", err)
	}
}
