package netpool

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"
)

// clientCA is a throwaway CA and a client certificate it signed, for mTLS tests.
type clientCA struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newClientCA(t *testing.T) clientCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sluice endpoint client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return clientCA{pool: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// newTLSSink starts an HTTP/2-capable TLS server on 127.0.0.1 that answers with the protocol and the
// source IP it saw. clientCAs non-nil makes it require a client certificate signed by them, over TLS
// versions up to maxVersion (0 for crypto/tls's default).
func newTLSSink(t *testing.T, clientCAs *x509.CertPool, maxVersion uint16) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap := netip.MustParseAddrPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", r.Proto, ap.Addr())
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	if clientCAs != nil {
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs, MaxVersion: maxVersion}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestTLS(t *testing.T) {
	ca := newClientCA(t)
	open := newTLSSink(t, nil, 0)
	mtls := newTLSSink(t, ca.pool, 0)
	// In TLS 1.2 the server checks the client certificate inside the handshake; in TLS 1.3 the
	// client's handshake completes first and the rejection arrives as an alert afterwards.
	mtls12 := newTLSSink(t, ca.pool, tls.VersionTLS12)
	roots := x509.NewCertPool()
	roots.AddCert(open.Certificate()) // both servers use httptest's built-in certificate

	bundle := &tls.Config{RootCAs: roots}
	withCert := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{ca.cert}}
	p := newPool(t, Config{EgressIPs: []netip.Addr{ip2, ip3}})

	tests := []struct {
		name     string
		url      string
		tls      *tls.Config
		wantBody string  // protocol and source IP seen by the server
		wantErrs []error // all must match
		anyErrs  []error // at least one must match
	}{
		{"HTTP/2 with the endpoint's CA bundle", open.URL, bundle, "HTTP/2.0 127.0.0.3", nil, nil},
		{"system roots reject the test CA", open.URL, nil, "", []error{ErrTLS, ErrConnect}, nil},
		{"mTLS with a client certificate", mtls.URL, withCert, "HTTP/2.0 127.0.0.3", nil, nil},
		{"mTLS TLS 1.2 with a client certificate", mtls12.URL, withCert, "HTTP/2.0 127.0.0.3", nil, nil},
		{"mTLS TLS 1.2 without a client certificate", mtls12.URL, bundle, "", []error{ErrTLS, ErrConnect}, nil},
		// The alert can reach net/http's HTTP/2 connection before our stream starts, and then its
		// error ("client conn could not be established") no longer carries the TLS cause.
		{"mTLS TLS 1.3 without a client certificate", mtls.URL, bundle, "", nil, []error{ErrTLS, ErrTransport}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second attempt goes through the cached transport
				res := do(t, p, &Request{URL: tt.url, TLS: tt.tls, Key: "ep_tls"})
				t.Logf("Err: %v", res.Err)
				for _, want := range tt.wantErrs {
					if !errors.Is(res.Err, want) {
						t.Fatalf("Err = %v, want errors.Is %v", res.Err, want)
					}
				}
				if len(tt.anyErrs) > 0 && !slices.ContainsFunc(tt.anyErrs, func(e error) bool { return errors.Is(res.Err, e) }) {
					t.Fatalf("Err = %v, want errors.Is one of %v", res.Err, tt.anyErrs)
				}
				if tt.wantErrs == nil && tt.anyErrs == nil && (res.Err != nil || string(res.Body) != tt.wantBody) {
					t.Fatalf("status %d body %q err %v, want body %q", res.StatusCode, res.Body, res.Err, tt.wantBody)
				}
			}
		})
	}

	// One cached transport per (egress IP, config pointer): ep_tls leaves from 127.0.0.3, which has
	// seen two configs; 127.0.0.2 has seen none.
	eg3, eg2 := p.pools[""][pick("ep_tls", 2)], p.pools[""][1-pick("ep_tls", 2)]
	if got := eg3.tlsTransports(); got != 2 {
		t.Errorf("egress %s caches %d TLS transports, want 2 (bundle and withCert)", eg3.ip, got)
	}
	if got := eg2.tlsTransports(); got != 0 {
		t.Errorf("egress %s caches %d TLS transports, want 0", eg2.ip, got)
	}
	if len(bundle.NextProtos) != 0 {
		t.Errorf("the caller's tls.Config was modified: NextProtos %v", bundle.NextProtos)
	}
}

// TestTLSTransportForgotten checks that a transport cached for a TLS config goes away once the config
// is garbage collected, so rotating endpoint certificates does not leak transports.
func TestTLSTransportForgotten(t *testing.T) {
	open := newTLSSink(t, nil, 0)
	p := newPool(t, Config{EgressIPs: []netip.Addr{ip2}})
	eg := p.pools[""][0]

	roots := x509.NewCertPool()
	roots.AddCert(open.Certificate())
	cfg := &tls.Config{RootCAs: roots}
	res := p.Do(context.Background(), &Request{URL: open.URL, TLS: cfg})
	if res.Err != nil {
		t.Fatalf("Do: %v", res.Err)
	}
	if got := eg.tlsTransports(); got != 1 {
		t.Fatalf("%d TLS transports cached, want 1", got)
	}
	// Until here the config must stay reachable: a GC before the check above would already have
	// dropped its transport (which is what the rest of the test expects, just too early).
	runtime.KeepAlive(cfg)
	cfg, res = nil, nil
	// Cleanups run on their own goroutine after a GC cycle; give it bounded chances, no sleeping.
	for i := 0; eg.tlsTransports() != 0; i++ {
		if i == 1000 {
			t.Fatal("the transport of a collected tls.Config is still cached")
		}
		runtime.GC()
		runtime.Gosched()
	}
}

// TestHTTP2BodyCap checks the cap over HTTP/2: a long body resets only its stream, so the connection
// is kept whatever the body length.
func TestHTTP2BodyCap(t *testing.T) {
	const keep, drain = 1 << 10, 4 << 10
	for _, tt := range []struct {
		size          int
		chunked       bool
		wantTruncated bool
	}{
		{keep, false, false},
		{keep, true, false},
		{keep + 1, true, true},
		{keep + 2*drain, false, true},
		{keep + 2*drain, true, true},
		{10 << 20, true, true},
	} {
		t.Run(fmt.Sprintf("size=%d/chunked=%v", tt.size, tt.chunked), func(t *testing.T) {
			payload := make([]byte, tt.size)
			cc := &connCounter{closed: make(chan string, 16)}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
				}
				w.Write(payload[:len(payload)/2])
				w.(http.Flusher).Flush()
				w.Write(payload[len(payload)/2:])
			}))
			srv.EnableHTTP2 = true
			srv.Config.ConnState = cc.hook
			srv.StartTLS()
			t.Cleanup(srv.Close)
			roots := x509.NewCertPool()
			roots.AddCert(srv.Certificate())
			tc := &tls.Config{RootCAs: roots}
			p := newPool(t, Config{KeepBodyBytes: keep, DrainBodyBytes: drain})
			for range 3 {
				res := do(t, p, &Request{URL: srv.URL, TLS: tc})
				if res.Err != nil || res.StatusCode != 200 {
					t.Fatalf("status %d err %v", res.StatusCode, res.Err)
				}
				if len(res.Body) != keep || res.BodyTruncated != tt.wantTruncated {
					t.Fatalf("Body %d bytes truncated=%v, want %d truncated=%v", len(res.Body), res.BodyTruncated, keep, tt.wantTruncated)
				}
			}
			if got := cc.count(); got != 1 {
				t.Fatalf("3 attempts used %d connections, want 1", got)
			}
		})
	}
}
