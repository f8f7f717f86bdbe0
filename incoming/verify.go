package incoming

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Errors a verification fails with (wrapped with the detail).
var (
	ErrMissing   = errors.New("incoming: missing signature or credentials")
	ErrMalformed = errors.New("incoming: malformed signature header")
	ErrMismatch  = errors.New("incoming: signature or credentials do not match")
	ErrExpired   = errors.New("incoming: signature timestamp outside the tolerance")
	ErrConfig    = errors.New("incoming: invalid source config")
)

// Tolerance is how far a signed timestamp (Stripe, Standard Webhooks) may be from now.
const Tolerance = 5 * time.Minute

// maxSignatures bounds how many signatures one header may carry (each costs a comparison).
const maxSignatures = 16

// Request is an ingest request as a verifier sees it.
type Request struct {
	Method string
	// URL is the full URL the provider called, scheme and host included (Twilio signs it).
	URL    string
	Header http.Header
	Body   []byte
}

// Verifier authenticates an ingest request. Implementations are immutable and safe for concurrent use.
type Verifier interface {
	// Verify returns nil if r is authentic at time now, else an error wrapping ErrMissing,
	// ErrMalformed, ErrMismatch or ErrExpired.
	Verify(r *Request, now time.Time) error
}

type noopVerifier struct{}

func (noopVerifier) Verify(*Request, time.Time) error { return nil }

// hmacVerifier is the generic HMAC-of-the-body scheme (and the GitHub and Shopify presets).
type hmacVerifier struct {
	header string
	hash   func() hash.Hash
	secret []byte
	base64 bool
	prefix string
}

func (v *hmacVerifier) Verify(r *Request, _ time.Time) error {
	raw := r.Header.Get(v.header)
	if raw == "" {
		return fmt.Errorf("%w: no %s header", ErrMissing, v.header)
	}
	sig, err := parseHMACHeader(raw, v.prefix, v.base64)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, v.header, err)
	}
	m := hmac.New(v.hash, v.secret)
	m.Write(r.Body)
	if !hmac.Equal(m.Sum(nil), sig) {
		return fmt.Errorf("%w: %s", ErrMismatch, v.header)
	}
	return nil
}

// parseHMACHeader strips prefix (required when set) and decodes the signature.
func parseHMACHeader(raw, prefix string, b64 bool) ([]byte, error) {
	raw = strings.TrimSpace(raw)
	if prefix != "" {
		rest, ok := strings.CutPrefix(raw, prefix)
		if !ok {
			return nil, fmt.Errorf("value does not start with %q", prefix)
		}
		raw = rest
	}
	if raw == "" {
		return nil, errors.New("empty signature")
	}
	var sig []byte
	var err error
	if b64 {
		sig, err = decodeBase64(raw)
	} else {
		sig, err = hex.DecodeString(raw)
	}
	if err == nil && len(sig) == 0 {
		err = errors.New("empty signature")
	}
	return sig, err
}

// decodeBase64 accepts standard and URL-safe alphabets, padded or not.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

type basicAuthVerifier struct{ user, pass []byte }

func (v *basicAuthVerifier) Verify(r *Request, _ time.Time) error {
	user, pass, err := parseBasicAuth(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	u := subtle.ConstantTimeCompare([]byte(user), v.user)
	p := subtle.ConstantTimeCompare([]byte(pass), v.pass)
	if u&p != 1 {
		return fmt.Errorf("%w: basic auth", ErrMismatch)
	}
	return nil
}

// parseBasicAuth reads an Authorization: Basic header.
func parseBasicAuth(h string) (user, pass string, err error) {
	if h == "" {
		return "", "", fmt.Errorf("%w: no Authorization header", ErrMissing)
	}
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", fmt.Errorf("%w: Authorization is not Basic", ErrMalformed)
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", fmt.Errorf("%w: Authorization: %v", ErrMalformed, err)
	}
	user, pass, ok = strings.Cut(string(dec), ":")
	if !ok {
		return "", "", fmt.Errorf("%w: Authorization: no ':' in the credentials", ErrMalformed)
	}
	return user, pass, nil
}

type apiKeyVerifier struct {
	header string
	value  []byte
}

func (v *apiKeyVerifier) Verify(r *Request, _ time.Time) error {
	got := r.Header.Get(v.header)
	if got == "" {
		return fmt.Errorf("%w: no %s header", ErrMissing, v.header)
	}
	if subtle.ConstantTimeCompare([]byte(got), v.value) != 1 {
		return fmt.Errorf("%w: %s", ErrMismatch, v.header)
	}
	return nil
}

// ---- Stripe ----

type stripeVerifier struct{ secret []byte }

const stripeHeader = "Stripe-Signature"

func (v *stripeVerifier) Verify(r *Request, now time.Time) error {
	raw := r.Header.Get(stripeHeader)
	if raw == "" {
		return fmt.Errorf("%w: no %s header", ErrMissing, stripeHeader)
	}
	ts, sigs, err := parseStripeHeader(raw)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, stripeHeader, err)
	}
	if err := checkTolerance(ts, now); err != nil {
		return err
	}
	m := hmac.New(sha256.New, v.secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(r.Body)
	want := m.Sum(nil)
	for _, s := range sigs {
		if hmac.Equal(want, s) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrMismatch, stripeHeader)
}

// parseStripeHeader reads "t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]": the timestamp and every v1
// signature (other schemes are ignored, as Stripe's libraries do).
func parseStripeHeader(h string) (ts int64, sigs [][]byte, err error) {
	seenT := false
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return 0, nil, fmt.Errorf("element %q is not key=value", part)
		}
		switch k {
		case "t":
			if seenT {
				return 0, nil, errors.New("two timestamps")
			}
			ts, err = strconv.ParseInt(v, 10, 64)
			if err != nil || ts <= 0 {
				return 0, nil, fmt.Errorf("bad timestamp %q", v)
			}
			seenT = true
		case "v1":
			s, err := hex.DecodeString(v)
			if err != nil || len(s) != sha256.Size {
				continue
			}
			if len(sigs) == maxSignatures {
				return 0, nil, fmt.Errorf("more than %d signatures", maxSignatures)
			}
			sigs = append(sigs, s)
		}
	}
	if !seenT {
		return 0, nil, errors.New("no timestamp (t=)")
	}
	if len(sigs) == 0 {
		return 0, nil, errors.New("no v1 signature")
	}
	return ts, sigs, nil
}

func checkTolerance(unix int64, now time.Time) error {
	d := now.Unix() - unix
	if d > int64(Tolerance/time.Second) || d < -int64(Tolerance/time.Second) {
		return fmt.Errorf("%w: signed at %d, now %d (tolerance %s)", ErrExpired, unix, now.Unix(), Tolerance)
	}
	return nil
}

// ---- Standard Webhooks (and Svix) ----

type standardVerifier struct{ key []byte }

// StandardWebhooksKey decodes a "whsec_<base64>" secret (the prefix is optional) into the HMAC key.
func StandardWebhooksKey(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("%w: a Standard Webhooks secret is whsec_ followed by base64", ErrConfig)
	}
	return k, nil
}

func (v *standardVerifier) Verify(r *Request, now time.Time) error {
	id, ts, sig := r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Timestamp"), r.Header.Get("Webhook-Signature")
	if id == "" && ts == "" && sig == "" {
		id, ts, sig = r.Header.Get("Svix-Id"), r.Header.Get("Svix-Timestamp"), r.Header.Get("Svix-Signature")
	}
	if id == "" || ts == "" || sig == "" {
		return fmt.Errorf("%w: webhook-id, webhook-timestamp and webhook-signature are all required", ErrMissing)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q", ErrMalformed, ts)
	}
	if err := checkTolerance(unix, now); err != nil {
		return err
	}
	sigs, err := parseStandardSignatures(sig)
	if err != nil {
		return fmt.Errorf("%w: webhook-signature: %v", ErrMalformed, err)
	}
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(r.Body)
	want := m.Sum(nil)
	for _, s := range sigs {
		if hmac.Equal(want, s) {
			return nil
		}
	}
	return fmt.Errorf("%w: webhook-signature", ErrMismatch)
}

// parseStandardSignatures reads "v1,<base64> v1,<base64> v1a,<...>": every v1 signature (other
// versions, such as v1a for ed25519, are ignored).
func parseStandardSignatures(h string) ([][]byte, error) {
	var sigs [][]byte
	for _, part := range strings.Fields(h) {
		ver, s, ok := strings.Cut(part, ",")
		if !ok {
			return nil, fmt.Errorf("element %q is not version,signature", part)
		}
		if ver != "v1" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("signature %q is not base64", s)
		}
		if len(sigs) == maxSignatures {
			return nil, fmt.Errorf("more than %d signatures", maxSignatures)
		}
		sigs = append(sigs, b)
	}
	if len(sigs) == 0 {
		return nil, errors.New("no v1 signature")
	}
	return sigs, nil
}

// ---- Twilio ----

type twilioVerifier struct{ token []byte }

const twilioHeader = "X-Twilio-Signature"

func (v *twilioVerifier) Verify(r *Request, _ time.Time) error {
	raw := r.Header.Get(twilioHeader)
	if raw == "" {
		return fmt.Errorf("%w: no %s header", ErrMissing, twilioHeader)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
	if err != nil || len(sig) != sha1.Size {
		return fmt.Errorf("%w: %s is not a base64 HMAC-SHA1", ErrMalformed, twilioHeader)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return fmt.Errorf("%w: request URL: %v", ErrMalformed, err)
	}
	var params url.Values
	if bodyHash := u.Query().Get("bodySHA256"); bodyHash != "" {
		// JSON bodies: the URL (with the body's hash) is signed, and the hash must be the body's.
		sum := sha256.Sum256(r.Body)
		got, err := hex.DecodeString(bodyHash)
		if err != nil || subtle.ConstantTimeCompare(got, sum[:]) != 1 {
			return fmt.Errorf("%w: bodySHA256 is not the SHA-256 of the body", ErrMismatch)
		}
	} else if r.Method == http.MethodPost {
		if params, err = url.ParseQuery(string(r.Body)); err != nil {
			return fmt.Errorf("%w: form body: %v", ErrMalformed, err)
		}
	}
	for _, candidate := range twilioURLs(u) {
		if hmac.Equal(TwilioSignature(v.token, candidate, params), sig) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrMismatch, twilioHeader)
}

// TwilioSignature computes Twilio's request signature: HMAC-SHA1 of the URL followed by each form
// parameter's name and value, names sorted (and a name's values sorted).
func TwilioSignature(token []byte, rawURL string, params url.Values) []byte {
	m := hmac.New(sha1.New, token)
	m.Write([]byte(rawURL))
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vals := append([]string(nil), params[k]...)
		sort.Strings(vals)
		for _, val := range vals {
			m.Write([]byte(k))
			m.Write([]byte(val))
		}
	}
	return m.Sum(nil)
}

// twilioURLs are the forms of the URL Twilio may have signed: as received, and with the default
// port removed or added (Twilio's own libraries try both).
func twilioURLs(u *url.URL) []string {
	out := []string{u.String()}
	alt := *u
	if u.Port() != "" {
		alt.Host = u.Hostname()
		if strings.Contains(alt.Host, ":") {
			alt.Host = "[" + alt.Host + "]" // IPv6 literal
		}
	} else if u.Scheme == "https" {
		alt.Host = u.Host + ":443"
	} else {
		alt.Host = u.Host + ":80"
	}
	return append(out, alt.String())
}
