package verify

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
	"strconv"
	"strings"
	"time"
)

// Errors. Every Verify error wraps exactly one of the first four; classify with errors.Is.
var (
	// ErrNoSignature: the signature header is missing or empty, or holds no signature of a version
	// this verifier knows.
	ErrNoSignature = errors.New("verify: no signature")
	// ErrTimestamp: the signed timestamp is further than the tolerance from now (a replay, or a
	// clock far off).
	ErrTimestamp = errors.New("verify: timestamp outside tolerance")
	// ErrMismatch: no signature matches any of the verifier's secrets or keys.
	ErrMismatch = errors.New("verify: signature mismatch")
	// ErrMalformed: a header could not be parsed.
	ErrMalformed = errors.New("verify: malformed header")
	// ErrBadKey: the verifier's own configuration is unusable (no secret, a key that does not parse).
	ErrBadKey = errors.New("verify: invalid key")
)

// Defaults.
const (
	// DefaultHeader is the simple and advanced schemes' default header.
	DefaultHeader = "X-Sluice-Signature"
	// DefaultTolerance is how far a timestamp may be from now, either way.
	DefaultTolerance = 5 * time.Minute
	// MaxSignatures bounds the signatures one header may carry, so a forged header cannot make a
	// receiver spend unbounded CPU (an ed25519 verification costs tens of microseconds).
	MaxSignatures = 32
)

// Standard Webhooks header names and key prefixes.
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
	PrefixSecret           = "whsec_" // HMAC secret, base64
	PrefixPublicKey        = "whpk_"  // ed25519 public key, base64
)

// Version is the hash and encoding of one signature version, as configured on the sender.
type Version struct {
	Hash     string // "SHA256" (also "") or "SHA512", case-insensitive
	Encoding string // "hex" (also "") or "base64", case-insensitive
}

func (v Version) hash() (func() hash.Hash, error) {
	switch {
	case v.Hash == "" || strings.EqualFold(v.Hash, "SHA256"):
		return sha256.New, nil
	case strings.EqualFold(v.Hash, "SHA512"):
		return sha512.New, nil
	}
	return nil, fmt.Errorf("%w: hash %q: want SHA256 or SHA512", ErrBadKey, v.Hash)
}

// decode decodes a signature value in v's encoding.
func (v Version) decode(s string) ([]byte, error) {
	switch {
	case v.Encoding == "" || strings.EqualFold(v.Encoding, "hex"):
		return hex.DecodeString(s)
	case strings.EqualFold(v.Encoding, "base64"):
		return base64.StdEncoding.DecodeString(s)
	}
	return nil, fmt.Errorf("%w: encoding %q: want hex or base64", ErrBadKey, v.Encoding)
}

// mac is the HMAC of the concatenated parts keyed with secret's bytes.
func (v Version) mac(secret string, parts ...[]byte) ([]byte, error) {
	hf, err := v.hash()
	if err != nil {
		return nil, err
	}
	m := hmac.New(hf, []byte(secret))
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil), nil
}

// Simple verifies the simple scheme: Header carries the HMAC of the raw body, keyed with the bytes of
// the endpoint's secret, in Version's hash and encoding. The zero Version is SHA256/hex. The simple
// scheme has no timestamp, so it cannot detect replays; prefer advanced or standard.
type Simple struct {
	Header  string   // "" means DefaultHeader
	Version Version  // the sender's first signature version
	Secrets []string // any may match (several during a rotation)
}

// Verify checks h against body. It returns nil or an error wrapping one of the package's sentinels.
func (v *Simple) Verify(h http.Header, body []byte) error {
	if len(v.Secrets) == 0 {
		return fmt.Errorf("%w: no secret", ErrBadKey)
	}
	value := h.Get(headerOr(v.Header, DefaultHeader))
	if value == "" {
		return fmt.Errorf("%w: %s is missing", ErrNoSignature, headerOr(v.Header, DefaultHeader))
	}
	got, err := ParseSimple(value, v.Version)
	if err != nil {
		return err
	}
	for _, s := range v.Secrets {
		want, err := v.Version.mac(s, body)
		if err != nil {
			return err
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrMismatch
}

// ParseSimple decodes a simple signature header value in ver's encoding.
func ParseSimple(value string, ver Version) ([]byte, error) {
	b, err := ver.decode(strings.TrimSpace(value))
	if errors.Is(err, ErrBadKey) {
		return nil, err
	}
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: the signature is not %s", ErrMalformed, encodingName(ver))
	}
	return b, nil
}

// Advanced verifies the advanced scheme: Header is "t=<unix>,v1=<sig>,v1=<sig>,v2=<sig>…", where
// each signature is the HMAC of "<t>,<raw body>" keyed with the bytes of one of the endpoint's live
// secrets, in its version's hash and encoding (version n is Versions[n-1]).
type Advanced struct {
	Header string // "" means DefaultHeader
	// Versions are the sender's versions (the project's signature config); empty means one version,
	// SHA256/hex. Signatures of other versions are ignored.
	Versions []Version
	Secrets  []string // any may match
	// Tolerance bounds |now - t|; 0 means DefaultTolerance.
	Tolerance time.Duration
	// Now is the clock of Verify; nil means time.Now.
	Now func() time.Time
}

// Verify checks h against body at v.Now().
func (v *Advanced) Verify(h http.Header, body []byte) error { return v.VerifyAt(h, body, now(v.Now)) }

// VerifyAt checks h against body as of now.
func (v *Advanced) VerifyAt(h http.Header, body []byte, now time.Time) error {
	if len(v.Secrets) == 0 {
		return fmt.Errorf("%w: no secret", ErrBadKey)
	}
	name := headerOr(v.Header, DefaultHeader)
	value := h.Get(name)
	if value == "" {
		return fmt.Errorf("%w: %s is missing", ErrNoSignature, name)
	}
	ah, err := ParseAdvanced(value)
	if err != nil {
		return err
	}
	if err := checkTimestamp(ah.Timestamp, now, v.Tolerance); err != nil {
		return err
	}
	versions := v.Versions
	if len(versions) == 0 {
		versions = []Version{{}}
	}
	signed := []byte(strconv.FormatInt(ah.Timestamp, 10) + ",")
	found := false
	for _, sig := range ah.Signatures {
		if sig.Version > len(versions) {
			continue
		}
		found = true
		ver := versions[sig.Version-1]
		got, err := ver.decode(sig.Value)
		if errors.Is(err, ErrBadKey) {
			return err
		}
		if err != nil {
			continue // undecodable: cannot match
		}
		for _, s := range v.Secrets {
			want, err := ver.mac(s, signed, body)
			if err != nil {
				return err
			}
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	if !found {
		return fmt.Errorf("%w: no v1 to v%d signature in %s", ErrNoSignature, len(versions), name)
	}
	return ErrMismatch
}

// AdvancedHeader is a parsed advanced signature header.
type AdvancedHeader struct {
	Timestamp  int64               // Unix seconds
	Signatures []AdvancedSignature // in header order
}

// AdvancedSignature is one "v<Version>=<Value>" element; Value is still encoded.
type AdvancedSignature struct {
	Version int // 1-based
	Value   string
}

// String formats h as a header value; ParseAdvanced(h.String()) returns h.
func (h AdvancedHeader) String() string {
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(h.Timestamp, 10))
	for _, s := range h.Signatures {
		fmt.Fprintf(&b, ",v%d=%s", s.Version, s.Value)
	}
	return b.String()
}

// ParseAdvanced parses "t=<unix>,v<n>=<sig>,…": comma-separated key=value elements, spaces around
// elements allowed, exactly one t (decimal, non-negative), any number of v<n> (n a decimal without
// leading zeros, at least 1; values non-empty, without spaces). Elements with other keys are skipped,
// for forward compatibility. Errors wrap ErrMalformed.
func ParseAdvanced(value string) (AdvancedHeader, error) {
	var h AdvancedHeader
	haveT := false
	for elem := range strings.SplitSeq(value, ",") {
		elem = strings.Trim(elem, " \t")
		k, val, ok := strings.Cut(elem, "=")
		if !ok || k == "" || val == "" || strings.ContainsAny(val, " \t") {
			return AdvancedHeader{}, fmt.Errorf("%w: element %q is not key=value", ErrMalformed, clip(elem))
		}
		switch {
		case k == "t":
			t, ok := parseUnix(val)
			if !ok || haveT {
				return AdvancedHeader{}, fmt.Errorf("%w: bad or repeated timestamp %q", ErrMalformed, clip(val))
			}
			h.Timestamp, haveT = t, true
		case k[0] == 'v' && len(k) > 1 && isDecimal(k[1:]):
			n, err := strconv.Atoi(k[1:])
			if err != nil || n < 1 || k[1] == '0' {
				return AdvancedHeader{}, fmt.Errorf("%w: bad version %q", ErrMalformed, clip(k))
			}
			if len(h.Signatures) == MaxSignatures {
				return AdvancedHeader{}, fmt.Errorf("%w: more than %d signatures", ErrMalformed, MaxSignatures)
			}
			h.Signatures = append(h.Signatures, AdvancedSignature{Version: n, Value: val})
		}
	}
	if !haveT {
		return AdvancedHeader{}, fmt.Errorf("%w: no t= timestamp", ErrMalformed)
	}
	return h, nil
}

// Standard verifies Standard Webhooks signatures (https://www.standardwebhooks.com): webhook-id,
// webhook-timestamp and webhook-signature, a space-separated list of "v1,<base64 HMAC-SHA256>" and
// "v1a,<base64 ed25519>" signatures of "<id>.<timestamp>.<raw body>".
type Standard struct {
	// Keys are whsec_ secrets (to check v1 signatures) and whpk_ public keys (to check v1a ones); any
	// may match.
	Keys []string
	// Tolerance bounds |now - timestamp|; 0 means DefaultTolerance.
	Tolerance time.Duration
	// Now is the clock of Verify; nil means time.Now.
	Now func() time.Time
}

// Verify checks h against body at v.Now().
func (v *Standard) Verify(h http.Header, body []byte) error { return v.VerifyAt(h, body, now(v.Now)) }

// VerifyAt checks h against body as of now.
func (v *Standard) VerifyAt(h http.Header, body []byte, now time.Time) error {
	var secrets [][]byte
	var publics []ed25519.PublicKey
	for i, k := range v.Keys {
		secret, public, err := ParseKey(k)
		if err != nil {
			return fmt.Errorf("keys[%d]: %w", i, err)
		}
		if secret != nil {
			secrets = append(secrets, secret)
		} else {
			publics = append(publics, public)
		}
	}
	if len(secrets)+len(publics) == 0 {
		return fmt.Errorf("%w: no key", ErrBadKey)
	}
	value := h.Get(HeaderWebhookSignature)
	if value == "" {
		return fmt.Errorf("%w: %s is missing", ErrNoSignature, HeaderWebhookSignature)
	}
	id, ts := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp)
	if id == "" || ts == "" {
		return fmt.Errorf("%w: %s and %s are required", ErrMalformed, HeaderWebhookID, HeaderWebhookTimestamp)
	}
	t, ok := parseUnix(ts)
	if !ok {
		return fmt.Errorf("%w: %s %q is not a Unix time", ErrMalformed, HeaderWebhookTimestamp, clip(ts))
	}
	if err := checkTimestamp(t, now, v.Tolerance); err != nil {
		return err
	}
	sigs, err := ParseStandard(value)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, len(id)+len(ts)+2+len(body))
	msg = append(append(append(append(append(msg, id...), '.'), ts...), '.'), body...)
	found := false
	for _, s := range sigs {
		switch {
		case s.Version == "v1" && len(secrets) > 0:
			found = true
			got, err := base64.StdEncoding.DecodeString(s.Value)
			if err != nil {
				continue
			}
			for _, k := range secrets {
				m := hmac.New(sha256.New, k)
				m.Write(msg)
				if hmac.Equal(got, m.Sum(nil)) {
					return nil
				}
			}
		case s.Version == "v1a" && len(publics) > 0:
			found = true
			got, err := base64.StdEncoding.DecodeString(s.Value)
			if err != nil || len(got) != ed25519.SignatureSize {
				continue
			}
			for _, k := range publics {
				if ed25519.Verify(k, msg, got) {
					return nil
				}
			}
		}
	}
	if !found {
		return fmt.Errorf("%w: no signature of a version these keys check (v1 for whsec_, v1a for whpk_)", ErrNoSignature)
	}
	return ErrMismatch
}

// StandardSignature is one "<version>,<base64>" element of webhook-signature; Value is still encoded.
type StandardSignature struct {
	Version string // "v1" (HMAC-SHA256) or "v1a" (ed25519); others are passed through
	Value   string
}

// FormatStandard formats signatures as a webhook-signature value; ParseStandard reverses it.
func FormatStandard(sigs []StandardSignature) string {
	parts := make([]string, len(sigs))
	for i, s := range sigs {
		parts[i] = s.Version + "," + s.Value
	}
	return strings.Join(parts, " ")
}

// ParseStandard parses a webhook-signature value: elements separated by spaces, each a non-empty
// version and a non-empty value separated by the first comma. Errors wrap ErrNoSignature (nothing
// there) or ErrMalformed.
func ParseStandard(value string) ([]StandardSignature, error) {
	var out []StandardSignature
	for elem := range strings.FieldsSeq(value) {
		ver, val, ok := strings.Cut(elem, ",")
		if !ok || ver == "" || val == "" {
			return nil, fmt.Errorf("%w: signature %q is not <version>,<signature>", ErrMalformed, clip(elem))
		}
		if len(out) == MaxSignatures {
			return nil, fmt.Errorf("%w: more than %d signatures", ErrMalformed, MaxSignatures)
		}
		out = append(out, StandardSignature{Version: ver, Value: val})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrNoSignature, HeaderWebhookSignature)
	}
	return out, nil
}

// ParseKey decodes a Standard Webhooks key: a whsec_ secret into its HMAC key, or a whpk_ public key
// into an ed25519 public key (exactly one result is non-nil). The base64 may omit its padding. Errors
// wrap ErrBadKey and never include the key.
func ParseKey(key string) (secret []byte, public ed25519.PublicKey, err error) {
	if rest, ok := strings.CutPrefix(key, PrefixSecret); ok {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
		if err != nil || len(b) == 0 {
			return nil, nil, fmt.Errorf("%w: %s secret is not base64", ErrBadKey, PrefixSecret)
		}
		return b, nil, nil
	}
	if rest, ok := strings.CutPrefix(key, PrefixPublicKey); ok {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, nil, fmt.Errorf("%w: %s key is not the base64 of %d bytes", ErrBadKey, PrefixPublicKey, ed25519.PublicKeySize)
		}
		return nil, ed25519.PublicKey(b), nil
	}
	return nil, nil, fmt.Errorf("%w: want a %s secret or a %s public key", ErrBadKey, PrefixSecret, PrefixPublicKey)
}

func checkTimestamp(t int64, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	d := now.Sub(time.Unix(t, 0))
	if d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %d, %s from now (tolerance %s)", ErrTimestamp, t, d.Round(time.Second), tolerance)
	}
	return nil
}

// parseUnix parses a non-negative decimal Unix time of at most 12 digits (year 33658).
func parseUnix(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 12 || !isDecimal(s) {
		return 0, false
	}
	t, err := strconv.ParseInt(s, 10, 64)
	return t, err == nil
}

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func headerOr(h, def string) string {
	if h == "" {
		return def
	}
	return h
}

func encodingName(v Version) string {
	if v.Encoding == "" {
		return "hex"
	}
	return v.Encoding
}

func now(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}

// clip shortens attacker-controlled text quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
