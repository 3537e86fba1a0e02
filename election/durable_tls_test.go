package election

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestDurableRestart stops a whole cluster kept on disk and starts it
// again on the same addresses: the lease and the token counter survive.
func TestDurableRestart(t *testing.T) {
	ids := []string{"d1", "d2", "d3"}
	dirs := map[string]string{}
	addrs := map[string]string{}
	start := func() map[string]*Node {
		ns := map[string]*Node{}
		for _, id := range ids {
			if dirs[id] == "" {
				dirs[id] = t.TempDir()
				addrs[id] = "127.0.0.1:0"
			}
			n, err := New(id, WithDir(dirs[id]), WithTCP(addrs[id]))
			if err != nil {
				t.Fatalf("start %s: %v", id, err)
			}
			addrs[id] = n.Addr()
			ns[id] = n
		}
		return ns
	}
	ctx := ctxT(t, 20*time.Second)
	ns := start()
	var peers []Peer
	for _, id := range ids {
		peers = append(peers, Peer{ID: id, Addr: addrs[id]})
	}
	if err := ns["d1"].Bootstrap(ctx, peers); err != nil {
		t.Fatal(err)
	}
	l, err := ns["d2"].TryAcquire(ctx, "disk", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ns = start()
	defer func() {
		for _, n := range ns {
			_ = n.Close()
		}
	}()
	if err := ns["d1"].Bootstrap(ctx, peers); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("bootstrap after restart: %v", err)
	}
	o, err := ns["d3"].Owner(ctx, "disk")
	if err != nil || o.Holder != "d2" || o.Token != l.Token() {
		t.Fatalf("owner after restart = %+v, %v; want d2 with token %d", o, err, l.Token())
	}
	l2, err := ns["d1"].TryAcquire(ctx, "other", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token after restart %d, before %d", l2.Token(), l.Token())
	}
}

// TestMutualTLS runs a cluster over mutual TLS and shows that a node
// without a client certificate cannot join.
func TestMutualTLS(t *testing.T) {
	server, client, bare := testTLS(t)
	c := newCluster(t, 3, true, WithTLS(server, client))
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.follower().TryAcquire(ctx, "secure", time.Second); err != nil {
		t.Fatalf("acquire over TLS: %v", err)
	}
	stranger, err := New("stranger", WithTLS(server, bare))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	jctx := ctxT(t, 500*time.Millisecond)
	if err := stranger.Join(jctx, c.waitAgree().Addr()); err == nil {
		t.Fatal("node without a client certificate joined")
	}
}

// testTLS makes a CA and a certificate for 127.0.0.1 signed by it; bare
// trusts the CA but presents no certificate.
func testTLS(t *testing.T) (server, client, bare *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	bare = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client, bare
}
