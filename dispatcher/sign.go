package dispatcher

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Signature schemes, chosen per endpoint by Endpoint.SignatureScheme.
//
// simple (the default, also ""): one header, Signature.Header (X-Sluice-Signature), carrying the HMAC
// of the raw body, with the hash and encoding of Signature.Versions[0] (SHA256, hex when unset: the
// lowercase hex HMAC-SHA256 of earlier releases, byte for byte). Signed by the newest live secret only.
//
//	X-Sluice-Signature: 5f1c…e2a0
//
// advanced (Stripe-like, versioned): one header, Signature.Header, with the attempt's Unix time and one
// signature per (version, live secret), versions in order, newest secret first within a version.
// Version n is Signature.Versions[n-1] (hash and encoding); the signed string is "<t>,<raw body>".
//
//	X-Sluice-Signature: t=1764158400,v1=<new secret>,v1=<old secret>,v2=<new secret>,v2=<old secret>
//
// standard (Standard Webhooks, https://www.standardwebhooks.com): webhook-id is the delivery id (stable
// across retries: receivers dedupe on it), webhook-timestamp the attempt's Unix time, and
// webhook-signature one "v1,<base64 HMAC-SHA256>" per live secret, space-separated, newest first. The
// signed string is "<id>.<timestamp>.<raw body>" and each secret is "whsec_" followed by the base64 of
// the key. The official standardwebhooks libraries verify it as is.
//
//	webhook-id: 01KB2Z…
//	webhook-timestamp: 1764158400
//	webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,Dmbs…=
//
// standard-ed25519: the same headers, with "v1a,<base64 ed25519 signature>" per live secret; secrets
// are "whsk_" private keys (GenerateEd25519Key) and receivers verify with the matching "whpk_" public
// keys (Ed25519PublicKey).
//
// Timestamped schemes are re-signed on every attempt with the attempt's start time on the dispatcher's
// Clock, so a retry carries a fresh timestamp and receivers can keep a short replay window.
const (
	SchemeSimple          = "simple"
	SchemeAdvanced        = "advanced"
	SchemeStandard        = "standard"
	SchemeStandardEd25519 = "standard-ed25519"
)

// Signature headers. The Webhook-* names are the Standard Webhooks headers in Go's canonical form
// (HTTP header names are case-insensitive; HTTP/2 sends them lowercase). Custom headers cannot set
// any header starting with ReservedWebhookPrefix, as for ReservedHeaderPrefix.
const (
	// HeaderSignature is the default header of the simple and advanced schemes.
	HeaderSignature        = "X-Sluice-Signature"
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
	ReservedWebhookPrefix  = "Webhook-"
)

// Hashes and encodings of a SignatureVersion (matched case-insensitively; "" means the first).
const (
	HashSHA256     = "SHA256"
	HashSHA512     = "SHA512"
	EncodingHex    = "hex"
	EncodingBase64 = "base64" // standard alphabet, padded
)

// Secret prefixes of the Standard Webhooks schemes.
const (
	PrefixStandardSecret = "whsec_" // base64 HMAC key
	PrefixEd25519Secret  = "whsk_"  // base64 ed25519 private key: 64 bytes (seed then public key) or the 32-byte seed
	PrefixEd25519Public  = "whpk_"  // base64 ed25519 public key, 32 bytes
)

// Signing errors. A Sign error fails the attempt without sending it (see Signer).
var (
	// ErrBadScheme: Endpoint.SignatureScheme names no scheme.
	ErrBadScheme = errors.New("dispatcher: unknown signature scheme")
	// ErrBadSignatureConfig: Endpoint.Signature has an invalid header name, hash or encoding.
	ErrBadSignatureConfig = errors.New("dispatcher: invalid signature config")
	// ErrBadSecret: a secret does not fit the endpoint's scheme (whsec_/whsk_ prefix, base64, length).
	ErrBadSecret = errors.New("dispatcher: invalid signing secret")
	// ErrNoLiveSecret: the endpoint has secrets but all have expired. The attempt is not sent rather
	// than sent unsigned.
	ErrNoLiveSecret = errors.New("dispatcher: no live signing secret")
)

// SecretKey is one signing secret. During a rotation an endpoint has several live ones, and every live
// secret signs each attempt, so receivers holding either the old or the new one can verify.
type SecretKey struct {
	// Value is the secret: for simple and advanced its bytes are the HMAC key; for standard a whsec_
	// secret; for standard-ed25519 a whsk_ private key.
	Value string
	// ExpiresAt is when the secret stops signing; the zero time means never. A secret is live at t
	// when ExpiresAt is zero or after t.
	ExpiresAt time.Time
}

// LiveAt reports whether s signs an attempt made at t.
func (s SecretKey) LiveAt(t time.Time) bool { return s.ExpiresAt.IsZero() || s.ExpiresAt.After(t) }

// SignatureConfig is the project-level configuration of the simple and advanced schemes.
type SignatureConfig struct {
	// Header is the signature header's name; "" means X-Sluice-Signature. It may not be a reserved
	// (X-Sluice-* other than X-Sluice-Signature, Webhook-*) or transport header.
	Header string
	// Versions are the advanced scheme's versions: Versions[i] is version i+1, sent as "v<i+1>=". The
	// simple scheme uses Versions[0]. Empty means one version, SHA256 and hex.
	Versions []SignatureVersion
}

// SignatureVersion is the hash and encoding of one signature version.
type SignatureVersion struct {
	Hash     string // HashSHA256 (also "") or HashSHA512
	Encoding string // EncodingHex (also "") or EncodingBase64
}

// Validate reports the first invalid field.
func (c SignatureConfig) Validate() error {
	if c.Header != "" {
		if err := checkHeaderName(c.Header); err != nil {
			return fmt.Errorf("%w: header: %w", ErrBadSignatureConfig, err)
		}
		if ck := textproto.CanonicalMIMEHeaderKey(c.Header); ck != HeaderSignature && isReserved(ck) {
			return fmt.Errorf("%w: header %q is reserved", ErrBadSignatureConfig, c.Header)
		}
	}
	for i, v := range c.Versions {
		if _, err := v.hash(); err != nil {
			return fmt.Errorf("%w: versions[%d]: %w", ErrBadSignatureConfig, i, err)
		}
		if _, err := v.encode(nil); err != nil {
			return fmt.Errorf("%w: versions[%d]: %w", ErrBadSignatureConfig, i, err)
		}
	}
	return nil
}

// ValidateScheme reports whether scheme names a signature scheme ("" is the default, simple).
func ValidateScheme(scheme string) error {
	switch scheme {
	case "", SchemeSimple, SchemeAdvanced, SchemeStandard, SchemeStandardEd25519:
		return nil
	}
	return fmt.Errorf("%w %q: want %s, %s, %s or %s", ErrBadScheme, scheme, SchemeSimple, SchemeAdvanced, SchemeStandard, SchemeStandardEd25519)
}

func (c *SignatureConfig) header() string {
	if c.Header == "" {
		return HeaderSignature
	}
	return textproto.CanonicalMIMEHeaderKey(c.Header)
}

// versions returns the configured versions, or the single default one.
func (c *SignatureConfig) versions() []SignatureVersion {
	if len(c.Versions) == 0 {
		return defaultVersions
	}
	return c.Versions
}

var defaultVersions = []SignatureVersion{{}}

func (v SignatureVersion) hash() (func() hash.Hash, error) {
	switch {
	case v.Hash == "" || strings.EqualFold(v.Hash, HashSHA256):
		return sha256.New, nil
	case strings.EqualFold(v.Hash, HashSHA512):
		return sha512.New, nil
	}
	return nil, fmt.Errorf("hash %q: want %s or %s", v.Hash, HashSHA256, HashSHA512)
}

func (v SignatureVersion) encode(sum []byte) (string, error) {
	switch {
	case v.Encoding == "" || strings.EqualFold(v.Encoding, EncodingHex):
		return hex.EncodeToString(sum), nil
	case strings.EqualFold(v.Encoding, EncodingBase64):
		return base64.StdEncoding.EncodeToString(sum), nil
	}
	return "", fmt.Errorf("encoding %q: want %s or %s", v.Encoding, EncodingHex, EncodingBase64)
}

// Signer adds the signature header(s) of one attempt to its request headers.
//
// Sign is called once per attempt, just before the request is sent, from that attempt's goroutine:
// concurrently for different jobs, so implementations must be safe for concurrent use. h already holds every
// other header; job is read-only; now is the attempt's start time on the dispatcher's Clock (timestamped
// schemes sign it, so each attempt is re-signed). An error fails the attempt without sending it.
type Signer interface {
	Sign(h http.Header, job *Job, now time.Time) error
}

// SchemeSigner is the default Signer: it signs with Endpoint.SignatureScheme (see SchemeSimple), every
// secret of Endpoint.Secrets live at now, and the project's Endpoint.Signature configuration. An
// endpoint without any secret is sent unsigned; one whose secrets have all expired is not sent
// (ErrNoLiveSecret). It is stateless.
type SchemeSigner struct{}

// HMACSigner is SchemeSigner's former name, kept so existing configurations compile.
type HMACSigner = SchemeSigner

var _ Signer = SchemeSigner{}

// Sign implements Signer.
func (SchemeSigner) Sign(h http.Header, job *Job, now time.Time) error {
	ep := &job.Endpoint
	if err := ValidateScheme(ep.SignatureScheme); err != nil {
		return err
	}
	var buf [4]string
	secrets, err := liveSecrets(buf[:0], ep, now)
	if err != nil || len(secrets) == 0 {
		return err
	}
	switch ep.SignatureScheme {
	case SchemeAdvanced:
		return signAdvanced(h, &ep.Signature, secrets, job.Body, now)
	case SchemeStandard, SchemeStandardEd25519:
		return signStandard(h, ep.SignatureScheme, secrets, job.DeliveryID, job.Body, now)
	default:
		return signSimple(h, &ep.Signature, secrets[0], job.Body)
	}
}

// liveSecrets appends the endpoint's secrets live at now to dst, newest (last in Endpoint.Secrets)
// first. Endpoint.Secret counts as one never-expiring secret when Secrets is empty.
func liveSecrets(dst []string, ep *Endpoint, now time.Time) ([]string, error) {
	if len(ep.Secrets) == 0 {
		if ep.Secret != "" {
			dst = append(dst, ep.Secret)
		}
		return dst, nil
	}
	for i := len(ep.Secrets) - 1; i >= 0; i-- {
		if s := ep.Secrets[i]; s.LiveAt(now) && s.Value != "" {
			dst = append(dst, s.Value)
		}
	}
	if len(dst) == 0 {
		return nil, fmt.Errorf("%w: all %d secrets of endpoint %s have expired at %s", ErrNoLiveSecret, len(ep.Secrets), ep.ID, now.UTC().Format(time.RFC3339))
	}
	return dst, nil
}

func signSimple(h http.Header, c *SignatureConfig, secret string, body []byte) error {
	v := c.versions()[0]
	sig, err := macEncoded(v, secret, nil, body)
	if err != nil {
		return fmt.Errorf("%w: versions[0]: %w", ErrBadSignatureConfig, err)
	}
	h[c.header()] = []string{sig}
	return nil
}

func signAdvanced(h http.Header, c *SignatureConfig, secrets []string, body []byte, now time.Time) error {
	versions := c.versions()
	var b strings.Builder
	prefix := strconv.AppendInt(make([]byte, 0, 24), now.Unix(), 10)
	b.Grow(len("t=") + len(prefix) + len(versions)*len(secrets)*(len(",v1=")+128))
	b.WriteString("t=")
	b.Write(prefix)
	prefix = append(prefix, ',')
	for i, v := range versions {
		for _, s := range secrets {
			sig, err := macEncoded(v, s, prefix, body)
			if err != nil {
				return fmt.Errorf("%w: versions[%d]: %w", ErrBadSignatureConfig, i, err)
			}
			b.WriteString(",v")
			b.WriteString(strconv.Itoa(i + 1))
			b.WriteByte('=')
			b.WriteString(sig)
		}
	}
	h[c.header()] = []string{b.String()}
	return nil
}

// macEncoded is the encoded HMAC of prefix+body keyed with secret's bytes.
func macEncoded(v SignatureVersion, secret string, prefix, body []byte) (string, error) {
	hf, err := v.hash()
	if err != nil {
		return "", err
	}
	m := hmac.New(hf, []byte(secret))
	m.Write(prefix)
	m.Write(body)
	var sum [sha512.Size]byte
	return v.encode(m.Sum(sum[:0]))
}

func signStandard(h http.Header, scheme string, secrets []string, id string, body []byte, now time.Time) error {
	if id == "" || strings.ContainsAny(id, ". ,") {
		// The id is part of the "."-delimited signed string: a "." in it would make two messages sign alike.
		return fmt.Errorf("dispatcher: delivery id %q cannot be a webhook-id", id)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	var sig strings.Builder
	if scheme == SchemeStandard {
		for i, s := range secrets {
			key, err := parseStandardSecret(s)
			if err != nil {
				return err
			}
			m := hmac.New(sha256.New, key)
			m.Write([]byte(id))
			m.Write([]byte{'.'})
			m.Write([]byte(ts))
			m.Write([]byte{'.'})
			m.Write(body)
			var sum [sha256.Size]byte
			if i > 0 {
				sig.WriteByte(' ')
			}
			sig.WriteString("v1,")
			sig.WriteString(base64.StdEncoding.EncodeToString(m.Sum(sum[:0])))
		}
	} else {
		msg := make([]byte, 0, len(id)+len(ts)+2+len(body))
		msg = append(append(append(append(append(msg, id...), '.'), ts...), '.'), body...)
		for i, s := range secrets {
			key, err := parseEd25519Secret(s)
			if err != nil {
				return err
			}
			if i > 0 {
				sig.WriteByte(' ')
			}
			sig.WriteString("v1a,")
			sig.WriteString(base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg)))
		}
	}
	h[HeaderWebhookID] = []string{id}
	h[HeaderWebhookTimestamp] = []string{ts}
	h[HeaderWebhookSignature] = []string{sig.String()}
	return nil
}

// SignHex returns the lowercase hex HMAC-SHA256 of body keyed with secret: the default simple
// signature. Receivers (and tests) verify with hmac.Equal against their own computation.
func SignHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0]))
}
