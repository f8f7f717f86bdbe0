package dispatcher

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/netpool"
	"github.com/sluice-gw/sluice/verify"
)

// verdicts collects what a verifying sink concluded about each request, keyed by delivery id and attempt.
type verdicts struct {
	mu  sync.Mutex // guards got
	got map[string]string
}

func (v *verdicts) set(key, verdict string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.got == nil {
		v.got = map[string]string{}
	}
	v.got[key] = verdict
}

func (v *verdicts) get(key string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.got[key]
}

func whsec(seed string) string {
	return PrefixStandardSecret + base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%-32s", seed)))
}

// TestStandardWebhooksEndToEnd: real deliveries, verified by the official standardwebhooks library in the
// sink, through a secret rotation: while both secrets are live either one verifies; after the old one
// expires only the new one is sent; a retry keeps webhook-id and carries a newer webhook-timestamp.
func TestStandardWebhooksEndToEnd(t *testing.T) {
	oldSecret, newSecret := whsec("old"), whsec("new")
	whOld, err := standardwebhooks.NewWebhook(oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	whNew, err := standardwebhooks.NewWebhook(newSecret)
	if err != nil {
		t.Fatal(err)
	}
	var vs verdicts
	failFirst := map[string]bool{"d3": true}
	var mu sync.Mutex
	s := newSink(t, nil)
	s.setHandler(func(w http.ResponseWriter, r *http.Request) {
		rx := s.received() // the sink recorded the body before calling the handler; deliveries here are sequential
		last := rx[len(rx)-1]
		id := r.Header.Get("webhook-id")
		// Verify (not VerifyIgnoringTimestamp): the library checks the timestamp against its own wall clock.
		errOld := whOld.Verify(last.body, r.Header)
		errNew := whNew.Verify(last.body, r.Header)
		vs.set(id+"/"+r.Header.Get(HeaderAttempt), fmt.Sprintf("old=%v new=%v n=%d", errOld == nil, errNew == nil,
			len(strings.Fields(r.Header.Get("webhook-signature")))))
		mu.Lock()
		fail := failFirst[id]
		failFirst[id] = false
		mu.Unlock()
		if fail {
			w.WriteHeader(500)
		}
	})
	// The library verifies against time.Now, so the fake clock starts at the real time.
	start := time.Now().Truncate(time.Second)
	clk := clock.NewFake(start)
	h := newHarness(t, Config{Clock: clk}, `{"type":"invoice.paid","data":{"amount":1250}}`)
	ep := Endpoint{ID: "ep", URL: s.URL, SignatureScheme: SchemeStandard, Secrets: []SecretKey{
		{Value: oldSecret, ExpiresAt: start.Add(10 * time.Second)},
		{Value: newSecret},
	}}
	h.jobs.setEndpoint(ep)

	// During the rotation: two signatures, each verifying with its own secret.
	h.d.Submit(Ref{ProjectID: "p", EndpointID: "ep", DeliveryID: "d1"})
	if r := h.res.wait(t, 1)[0]; r.Status != StatusSuccess {
		t.Fatalf("d1: %s %s", r.Status, r.Attempt.Error)
	}
	if got := vs.get("d1/1"); got != "old=true new=true n=2" {
		t.Fatalf("d1 during the rotation: %s", got)
	}

	// After the old secret's expiry: one signature, the new secret's.
	clk.Advance(11 * time.Second)
	h.d.Submit(Ref{ProjectID: "p", EndpointID: "ep", DeliveryID: "d2"})
	h.res.wait(t, 2)
	if got := vs.get("d2/1"); got != "old=false new=true n=1" {
		t.Fatalf("d2 after expiry: %s", got)
	}

	// A retry is re-signed: same webhook-id, newer webhook-timestamp, still verifying.
	h.d.Submit(Ref{ProjectID: "p", EndpointID: "ep", DeliveryID: "d3"})
	if r := h.res.wait(t, 3)[2]; r.Status != StatusRetry {
		t.Fatalf("d3 attempt 1: %s", r.Status)
	}
	clk.Advance(5 * time.Second)
	h.jobs.setAttempt("d3", 2)
	h.d.Submit(Ref{ProjectID: "p", EndpointID: "ep", DeliveryID: "d3"})
	rs := h.res.wait(t, 4)
	if rs[3].Status != StatusSuccess || vs.get("d3/2") != "old=false new=true n=1" {
		t.Fatalf("d3 attempt 2: %s, sink %s", rs[3].Status, vs.get("d3/2"))
	}
	a1, a2 := rs[2].Attempt.RequestHeaders, rs[3].Attempt.RequestHeaders
	if a1.Get(HeaderWebhookID) != "d3" || a2.Get(HeaderWebhookID) != "d3" {
		t.Errorf("webhook-id %q then %q, want the delivery id d3 both times", a1.Get(HeaderWebhookID), a2.Get(HeaderWebhookID))
	}
	t1, _ := strconv.ParseInt(a1.Get(HeaderWebhookTimestamp), 10, 64)
	t2, _ := strconv.ParseInt(a2.Get(HeaderWebhookTimestamp), 10, 64)
	if t2-t1 != 5 {
		t.Errorf("webhook-timestamp %d then %d, want the retry 5s later", t1, t2)
	}
	if a1.Get(HeaderWebhookSignature) == a2.Get(HeaderWebhookSignature) {
		t.Errorf("the retry was not re-signed")
	}
}

// TestAdvancedEndToEnd: the sink checks every version with every live secret, on its own; after the old
// secret expires only the new one signs; a retried delivery carries a newer t.
func TestAdvancedEndToEnd(t *testing.T) {
	versions := []SignatureVersion{{Hash: HashSHA256, Encoding: EncodingHex}, {Hash: HashSHA512, Encoding: EncodingBase64}}
	vv := []verify.Version{{Hash: "SHA256", Encoding: "hex"}, {Hash: "SHA512", Encoding: "base64"}}
	h := newHarness(t, Config{}, `{"type":"invoice.paid"}`)
	var vs verdicts
	var fail sync.Map
	s := newSink(t, nil)
	s.setHandler(func(w http.ResponseWriter, r *http.Request) {
		rx := s.received()
		body := rx[len(rx)-1].body
		ah, err := verify.ParseAdvanced(r.Header.Get("X-Acme-Signature"))
		if err != nil {
			vs.set(r.Header.Get(HeaderDeliveryID), err.Error())
			w.WriteHeader(400)
			return
		}
		// For each (version, secret): the header cut down to that version must verify with that secret.
		var out []string
		for n := 1; n <= len(vv); n++ {
			only := "t=" + strconv.FormatInt(ah.Timestamp, 10)
			for _, sig := range ah.Signatures {
				if sig.Version == n {
					only += fmt.Sprintf(",v%d=%s", n, sig.Value)
				}
			}
			for _, secret := range []string{"old", "new"} {
				v := &verify.Advanced{Header: "X-Acme-Signature", Versions: vv, Secrets: []string{secret}, Now: h.clk.Now}
				err := v.Verify(http.Header{"X-Acme-Signature": {only}}, body)
				out = append(out, fmt.Sprintf("v%d/%s=%v", n, secret, err == nil))
			}
		}
		out = append(out, fmt.Sprintf("t=%d", ah.Timestamp))
		vs.set(r.Header.Get(HeaderDeliveryID)+"/"+r.Header.Get(HeaderAttempt), strings.Join(out, " "))
		if _, ok := fail.LoadAndDelete(r.Header.Get(HeaderDeliveryID)); ok {
			w.WriteHeader(503)
		}
	})
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL, SignatureScheme: SchemeAdvanced,
		Signature: SignatureConfig{Header: "X-Acme-Signature", Versions: versions},
		Secrets:   []SecretKey{{Value: "old", ExpiresAt: t0.Add(time.Hour)}, {Value: "new"}}})

	h.d.Submit(Ref{EndpointID: "ep", DeliveryID: "d1"})
	if r := h.res.wait(t, 1)[0]; r.Status != StatusSuccess {
		t.Fatalf("d1: %s %s", r.Status, r.Attempt.Error)
	}
	want := fmt.Sprintf("v1/old=true v1/new=true v2/old=true v2/new=true t=%d", t0.Unix())
	if got := vs.get("d1/1"); got != want {
		t.Fatalf("during the rotation:\n got %s\nwant %s", got, want)
	}

	h.clk.Advance(2 * time.Hour)
	fail.Store("d2", true)
	h.d.Submit(Ref{EndpointID: "ep", DeliveryID: "d2"})
	if r := h.res.wait(t, 2)[1]; r.Status != StatusRetry {
		t.Fatalf("d2 attempt 1: %s", r.Status)
	}
	want = fmt.Sprintf("v1/old=false v1/new=true v2/old=false v2/new=true t=%d", t0.Add(2*time.Hour).Unix())
	if got := vs.get("d2/1"); got != want {
		t.Fatalf("after expiry:\n got %s\nwant %s", got, want)
	}
	sent := h.res.snapshot()[1].Attempt.RequestHeaders.Get("X-Acme-Signature")
	if ah, err := verify.ParseAdvanced(sent); err != nil || len(ah.Signatures) != 2 {
		t.Errorf("after expiry the header is %q (%v): want one signature per version", sent, err)
	}

	h.clk.Advance(30 * time.Second)
	h.jobs.setAttempt("d2", 2)
	h.d.Submit(Ref{EndpointID: "ep", DeliveryID: "d2"})
	if r := h.res.wait(t, 3)[2]; r.Status != StatusSuccess {
		t.Fatalf("d2 attempt 2: %s", r.Status)
	}
	want = fmt.Sprintf("v1/old=false v1/new=true v2/old=false v2/new=true t=%d", t0.Add(2*time.Hour+30*time.Second).Unix())
	if got := vs.get("d2/2"); got != want {
		t.Fatalf("the retry:\n got %s\nwant %s", got, want)
	}
}

// TestEndpointAuth: API-key and basic auth reach the receiver, replace a same-named custom header, cannot
// name a reserved header, and are redacted in the attempt record; custom headers cannot spoof the
// Standard Webhooks headers.
func TestEndpointAuth(t *testing.T) {
	s := newSink(t, status(200))
	h := newHarness(t, Config{}, `{}`)
	secret := whsec("k")
	h.jobs.setEndpoint(Endpoint{ID: "key", URL: s.URL, SignatureScheme: SchemeStandard, Secrets: []SecretKey{{Value: secret}},
		Auth: &Auth{Type: AuthAPIKey, HeaderName: "x-api-key", HeaderValue: "k-123"},
		Headers: http.Header{
			"X-Api-Key":         {"from-custom-headers"},
			"Webhook-Id":        {"spoofed"},
			"webhook-signature": {"v1,spoofed"},
			"X-Other":           {"kept"},
		}})
	h.jobs.setEndpoint(Endpoint{ID: "basic", URL: s.URL, Auth: &Auth{Type: AuthBasic, Username: "sluice", Password: "p:w d"}})
	h.jobs.setEndpoint(Endpoint{ID: "reserved", URL: s.URL, Auth: &Auth{Type: AuthAPIKey, HeaderName: "X-Sluice-Delivery-Id", HeaderValue: "x"}})

	h.d.Submit(Ref{EndpointID: "key", DeliveryID: "dk"})
	r := h.res.wait(t, 1)[0]
	rx := s.received()[0]
	if r.Status != StatusSuccess || rx.header.Get("X-Api-Key") != "k-123" || rx.header.Get("X-Other") != "kept" {
		t.Fatalf("api key: status %s, receiver saw X-Api-Key %q X-Other %q", r.Status, rx.header["X-Api-Key"], rx.header.Get("X-Other"))
	}
	if rx.header.Get("Webhook-Id") != "dk" || len(rx.header["Webhook-Signature"]) != 1 {
		t.Fatalf("custom headers spoofed the Standard Webhooks headers: %v", rx.header)
	}
	if err := (&verify.Standard{Keys: []string{secret}, Now: h.clk.Now}).Verify(rx.header, rx.body); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if got := r.Attempt.RequestHeaders.Get("X-Api-Key"); got != Redacted {
		t.Errorf("attempt record shows X-Api-Key %q, want %q", got, Redacted)
	}
	if r.Attempt.RequestHeaders.Get(HeaderWebhookSignature) == "" {
		t.Errorf("attempt record lost the signature: %v", r.Attempt.RequestHeaders)
	}

	h.d.Submit(Ref{EndpointID: "basic", DeliveryID: "db"})
	r = h.res.wait(t, 2)[1]
	req := &http.Request{Header: s.received()[1].header}
	if u, p, ok := req.BasicAuth(); r.Status != StatusSuccess || !ok || u != "sluice" || p != "p:w d" {
		t.Fatalf("basic auth: status %s, receiver saw %q %q %v", r.Status, u, p, ok)
	}
	if got := r.Attempt.RequestHeaders.Get("Authorization"); got != Redacted {
		t.Errorf("attempt record shows Authorization %q", got)
	}

	h.d.Submit(Ref{EndpointID: "reserved", DeliveryID: "dr"})
	r = h.res.wait(t, 3)[2]
	if !errors.Is(r.Err, ErrBadAuth) || r.Attempt.StatusCode != 0 || s.count.Load() != 2 {
		t.Fatalf("auth naming a reserved header: err %v, sink count %d; want ErrBadAuth and nothing sent", r.Err, s.count.Load())
	}

	// The project's signature header would overwrite the credential: refused too.
	h.jobs.setEndpoint(Endpoint{ID: "collide", URL: s.URL, Secret: "s", Signature: SignatureConfig{Header: "X-Acme-Sig"},
		Auth: &Auth{Type: AuthAPIKey, HeaderName: "x-acme-sig", HeaderValue: "k"}})
	h.d.Submit(Ref{EndpointID: "collide", DeliveryID: "dc"})
	r = h.res.wait(t, 4)[3]
	if !errors.Is(r.Err, ErrBadAuth) || s.count.Load() != 2 {
		t.Fatalf("auth header = signature header: err %v, sink count %d", r.Err, s.count.Load())
	}
}

// testPKI is a throwaway CA and a client certificate it signed, in PEM.
type testPKI struct {
	pool            *x509.CertPool
	certPEM, keyPEM string
}

func newTestPKI(t *testing.T) testPKI {
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
	ca, _ := x509.ParseCertificate(caDER)
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
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		pool:    pool,
		certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		keyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}
}

// TestMTLSEndToEnd: a receiver requiring a client certificate accepts deliveries that present the
// endpoint's certificate and rejects those without; the same material maps to one cached *tls.Config
// across job loads, so the connection is reused.
func TestMTLSEndToEnd(t *testing.T) {
	pki := newTestPKI(t)
	var mu sync.Mutex
	newConns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(500)
			return
		}
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			newConns++
			mu.Unlock()
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	h := newHarness(t, Config{}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "with", URL: srv.URL, TLS: &ClientTLS{CertPEM: pki.certPEM, KeyPEM: pki.keyPEM, CAPEM: caPEM}})
	h.jobs.setEndpoint(Endpoint{ID: "without", URL: srv.URL, TLS: &ClientTLS{CAPEM: caPEM}})
	h.jobs.setEndpoint(Endpoint{ID: "broken", URL: srv.URL, TLS: &ClientTLS{CertPEM: pki.certPEM, KeyPEM: "nope", CAPEM: caPEM}})

	for i, id := range []string{"w1", "w2"} {
		h.d.Submit(Ref{EndpointID: "with", DeliveryID: id})
		r := h.res.wait(t, i+1)[i]
		if r.Status != StatusSuccess || string(r.Attempt.ResponseBody) != "sluice endpoint client" {
			t.Fatalf("%s with the client certificate: %s %d %q %s", id, r.Status, r.Attempt.StatusCode, r.Attempt.ResponseBody, r.Attempt.Error)
		}
	}
	mu.Lock()
	if newConns != 1 {
		t.Errorf("two deliveries with the same TLS material used %d connections, want 1 (one cached *tls.Config)", newConns)
	}
	mu.Unlock()
	// Equal material in distinct ClientTLS values (as a Loader builds them) is one config.
	c1, err1 := clientTLSCache.get(&ClientTLS{CertPEM: pki.certPEM, KeyPEM: pki.keyPEM, CAPEM: caPEM}, t0)
	c2, err2 := clientTLSCache.get(&ClientTLS{CertPEM: pki.certPEM, KeyPEM: pki.keyPEM, CAPEM: caPEM}, t0)
	if err1 != nil || err2 != nil || c1 != c2 {
		t.Errorf("same material, different *tls.Config: %p %p (%v %v)", c1, c2, err1, err2)
	}

	h.d.Submit(Ref{EndpointID: "without", DeliveryID: "n1"})
	r := h.res.wait(t, 3)[2]
	t.Logf("without a client certificate: %v", r.Err)
	if r.Status != StatusRetry || r.Attempt.StatusCode != 0 || !(errors.Is(r.Err, netpool.ErrTLS) || errors.Is(r.Err, netpool.ErrTransport)) {
		t.Fatalf("without a client certificate: %s %d %v; want a TLS rejection", r.Status, r.Attempt.StatusCode, r.Err)
	}

	h.d.Submit(Ref{EndpointID: "broken", DeliveryID: "b1"})
	r = h.res.wait(t, 4)[3]
	if !errors.Is(r.Err, ErrBadTLS) || strings.Contains(r.Attempt.Error, "PRIVATE KEY") {
		t.Fatalf("broken key: %v", r.Err)
	}
}

// TestTLSCacheEviction: configurations unused for an hour are dropped; used ones stay.
func TestTLSCacheEviction(t *testing.T) {
	pki := newTestPKI(t)
	c := &tlsCache{m: make(map[[32]byte]*tlsEntry)}
	a := &ClientTLS{CertPEM: pki.certPEM, KeyPEM: pki.keyPEM}
	b := &ClientTLS{CAPEM: pki.certPEM}
	if _, err := c.get(a, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get(b, t0); err != nil {
		t.Fatal(err)
	}
	c.get(b, t0.Add(50*time.Minute))
	c.get(b, t0.Add(61*time.Minute))
	if c.len() != 1 {
		t.Fatalf("%d configs cached after a's hour of disuse, want 1", c.len())
	}
}

// TestGuardEndToEnd: with the netpool SSRF guard on, a delivery to 127.0.0.1 fails without reaching the
// sink, classified as netpool.ErrForbiddenAddress; with 127.0.0.0/8 allowed it goes through.
func TestGuardEndToEnd(t *testing.T) {
	s := newSink(t, status(200))
	for _, tc := range []struct {
		cfg  netpool.Config
		want error
	}{
		{netpool.Config{BlockPrivate: true}, netpool.ErrForbiddenAddress},
		{netpool.Config{BlockPrivate: true, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, nil},
	} {
		pool, err := netpool.New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		js, res := newJobs(`{}`), newCollector()
		js.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
		d, err := New(Config{Clock: clock.NewFake(t0), Rand: constRand(0.5)}, js, pool, res)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		before := s.count.Load()
		d.Submit(Ref{EndpointID: "ep", DeliveryID: "d"})
		r := res.wait(t, 1)[0]
		cancel()
		<-done
		if tc.want == nil {
			if r.Status != StatusSuccess {
				t.Fatalf("allowed: %s %v", r.Status, r.Err)
			}
			continue
		}
		if !errors.Is(r.Err, tc.want) || r.Status != StatusRetry || s.count.Load() != before {
			t.Fatalf("guarded: %s %v (sink +%d)", r.Status, r.Err, s.count.Load()-before)
		}
		if !strings.Contains(r.Attempt.Error, "127.0.0.1") {
			t.Errorf("the attempt's error does not name the IP: %s", r.Attempt.Error)
		}
	}
}
