package dispatcher

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBadTLS: Endpoint.TLS cannot be turned into a TLS configuration (unparsable PEM, a certificate
// without its key...). The message never includes key material.
var ErrBadTLS = errors.New("dispatcher: invalid endpoint TLS config")

// ClientTLS is an endpoint's TLS client material, in PEM, for mTLS and private CAs.
type ClientTLS struct {
	// CertPEM and KeyPEM are the client certificate (leaf first, then any intermediates) and its
	// private key, presented when the receiver asks for one. Both or neither.
	CertPEM, KeyPEM string
	// CAPEM, when set, is the bundle of CA certificates that verify the receiver's certificate,
	// instead of the system roots.
	CAPEM string
}

// Validate reports whether c builds a TLS configuration.
func (c *ClientTLS) Validate() error {
	_, err := c.build()
	return err
}

// build parses c into a new *tls.Config (TLS 1.2 or later).
func (c *ClientTLS) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case c.CertPEM != "" && c.KeyPEM != "":
		cert, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
		if err != nil {
			// crypto/tls's messages describe the problem without quoting the key.
			return nil, fmt.Errorf("%w: client certificate: %w", ErrBadTLS, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.CertPEM != "" || c.KeyPEM != "":
		return nil, fmt.Errorf("%w: a client certificate needs both the certificate and its key", ErrBadTLS)
	}
	if c.CAPEM != "" {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(c.CAPEM)) {
			return nil, fmt.Errorf("%w: the CA bundle holds no PEM certificate", ErrBadTLS)
		}
		cfg.RootCAs = roots
	}
	return cfg, nil
}

// digest names c's material: SHA-256 over the length-prefixed PEM fields.
func (c *ClientTLS) digest() [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, s := range [...]string{c.CertPEM, c.KeyPEM, c.CAPEM} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// Entries of the client TLS cache unused for tlsIdle are dropped, checked at most every tlsSweepEvery.
const (
	tlsIdle       = time.Hour
	tlsSweepEvery = time.Minute
)

// clientTLSCache turns ClientTLS material into long-lived *tls.Config values. netpool caches one
// transport (and its connections) per *tls.Config pointer, but a Loader builds a fresh Endpoint for
// every job, so the dispatcher must hand netpool the same pointer for the same material: this cache,
// keyed by the SHA-256 of the PEM fields, does. Changed material (a rotated certificate) is a new key
// and a new config; the old entry is dropped after tlsIdle without use, its config is then collected,
// and netpool closes its transport. The cache is content-addressed, so it is safe to share between
// Dispatchers: it is package-level state, not configuration.
var clientTLSCache = &tlsCache{m: make(map[[sha256.Size]byte]*tlsEntry)}

type tlsCache struct {
	mu        sync.Mutex // guards m and lastSweep
	m         map[[sha256.Size]byte]*tlsEntry
	lastSweep time.Time
}

type tlsEntry struct {
	cfg  *tls.Config
	used time.Time
}

// get returns the cached configuration of c, building it on first use. now is the attempt's time on
// the dispatcher's Clock.
func (tc *tlsCache) get(c *ClientTLS, now time.Time) (*tls.Config, error) {
	key := c.digest()
	tc.mu.Lock()
	if e := tc.m[key]; e != nil {
		e.used = now
		tc.sweepLocked(now)
		tc.mu.Unlock()
		return e.cfg, nil
	}
	tc.mu.Unlock()
	// Parse outside the lock: a broken or large bundle does not stall other endpoints.
	cfg, err := c.build()
	if err != nil {
		return nil, err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if e := tc.m[key]; e != nil { // built concurrently: keep the first, so there is one pointer
		e.used = now
		return e.cfg, nil
	}
	tc.m[key] = &tlsEntry{cfg: cfg, used: now}
	tc.sweepLocked(now)
	return cfg, nil
}

func (tc *tlsCache) sweepLocked(now time.Time) {
	if now.Sub(tc.lastSweep) < tlsSweepEvery {
		return
	}
	tc.lastSweep = now
	for k, e := range tc.m {
		if now.Sub(e.used) > tlsIdle {
			delete(tc.m, k)
		}
	}
}

// len reports the number of cached configurations; for tests.
func (tc *tlsCache) len() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.m)
}
