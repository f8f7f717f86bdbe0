package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sluice-gw/sluice/model"
)

// TLSConfig builds a client TLS configuration from a source's settings; nil settings or Enabled
// false give nil (plain connections).
func TLSConfig(t *model.BrokerTLS) (*tls.Config, error) {
	if t == nil || !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(t.CAPEM)) {
			return nil, errors.New("tls.ca_pem: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	if (t.CertPEM == "") != (t.KeyPEM == "") {
		return nil, errors.New("tls: cert_pem and key_pem go together")
	}
	if t.CertPEM != "" {
		cert, err := tls.X509KeyPair([]byte(t.CertPEM), []byte(t.KeyPEM))
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
