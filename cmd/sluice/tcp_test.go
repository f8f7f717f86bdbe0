package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/ingest/client"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir and returns a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return
}

// TestTCPIngestOverTLSSurvivesKill9 publishes pipelined over TLS-wrapped TCP ingest, kill -9s the
// node and finds every acknowledged event after a restart.
func TestTCPIngestOverTLSSurvivesKill9(t *testing.T) {
	dataDir, tlsDir := t.TempDir(), t.TempDir()
	certFile, keyFile, pool := selfSigned(t, tlsDir)
	httpAddr, raftAddr, tcpAddr, tlsAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	args := []string{"--tcp-addr", tcpAddr, "--tcp-tls-addr", tlsAddr, "--tcp-tls-cert", certFile, "--tcp-tls-key", keyFile}
	p := startProc(t, dataDir, httpAddr, raftAddr, args...)
	var proj, ep struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "tcp"}, &proj)
	p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/x", "status": "paused"}, &ep)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, tlsAddr, client.Options{Key: p.key, Project: proj.UID, TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, MaxRetries: 1})
	if err != nil {
		t.Fatalf("dial TLS ingest: %v", err)
	}
	const n = 300
	futures := make([]*client.Future, n)
	for i := range futures {
		futures[i] = cl.PublishAsync(&client.Request{EndpointID: ep.UID, EventType: "tls.test",
			Data: []byte(fmt.Sprintf(`{"i":%d}`, i)), IdempotencyKey: fmt.Sprintf("tls-%d", i)})
	}
	var ids []string
	for i, f := range futures {
		ack, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("publish %d over TLS: %v", i, err)
		}
		ids = append(ids, ack.EventID)
	}
	cl.Close()
	p.kill()

	p = startProc(t, dataDir, httpAddr, raftAddr, args...)
	for i, id := range ids {
		if c := p.call("GET", "/projects/"+proj.UID+"/events/"+id, nil, nil); c != 200 {
			t.Fatalf("acknowledged TCP publish %d (%s) lost after kill -9: %d", i, id, c)
		}
	}
}
