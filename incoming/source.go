package incoming

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/model"
)

// Providers with presets.
const (
	ProviderGitHub           = "github"
	ProviderStripe           = "stripe"
	ProviderShopify          = "shopify"
	ProviderTwilio           = "twilio"
	ProviderStandardWebhooks = "standardwebhooks"
)

// Preset is what a provider implies besides its signature scheme; a source's own settings win.
type Preset struct {
	EventType       model.EventTypeLocation
	IdempotencyKeys []string
	ForwardHeaders  []string
	// NonJSON: the provider sends bodies that are not JSON (Twilio's forms).
	NonJSON bool
}

var presets = map[string]Preset{
	ProviderGitHub: {
		EventType:       model.EventTypeLocation{From: model.EventTypeFromHeader, Name: "X-GitHub-Event"},
		IdempotencyKeys: []string{"request.headers.X-GitHub-Delivery"},
		ForwardHeaders:  []string{"X-GitHub-Event", "X-GitHub-Delivery", "X-GitHub-Hook-ID"},
	},
	ProviderStripe: {
		EventType:       model.EventTypeLocation{From: model.EventTypeFromBody, Name: "type"},
		IdempotencyKeys: []string{"request.body.id"},
	},
	ProviderShopify: {
		EventType:       model.EventTypeLocation{From: model.EventTypeFromHeader, Name: "X-Shopify-Topic"},
		IdempotencyKeys: []string{"request.headers.X-Shopify-Webhook-Id"},
		ForwardHeaders:  []string{"X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Webhook-Id", "X-Shopify-Api-Version"},
	},
	ProviderTwilio: {
		EventType:       model.EventTypeLocation{From: model.EventTypeFixed, Default: "twilio.webhook"},
		IdempotencyKeys: []string{"request.headers.I-Twilio-Idempotency-Token"},
		NonJSON:         true,
	},
	ProviderStandardWebhooks: {
		EventType:       model.EventTypeLocation{From: model.EventTypeFromBody, Name: "type"},
		IdempotencyKeys: []string{"request.headers.webhook-id", "request.headers.svix-id"},
	},
}

// PresetFor returns a provider's preset.
func PresetFor(provider string) (Preset, bool) {
	p, ok := presets[provider]
	return p, ok
}

// DefaultEventType is the type of events from a source that says nothing else.
const DefaultEventType = "webhook"

// Limits on a source's settings.
const (
	maxKeys       = 16
	maxHeaderSize = 8192
)

// Source is a model.Source compiled for ingest. It is immutable and safe for concurrent use.
type Source struct {
	Src       *model.Source
	verifier  Verifier
	eventType model.EventTypeLocation
	idem      []valueRef
	forward   []string // canonical header names
	nonJSON   bool
}

// valueRef names one request value.
type valueRef struct {
	raw   string
	where string // headers, query, body
	name  string
	path  []string
}

// Compile validates a source's verifier and settings and prepares it for ingest. Errors wrap
// ErrConfig and name the field.
func Compile(src *model.Source) (*Source, error) {
	c := &Source{Src: src}
	v, err := newVerifier(src)
	if err != nil {
		return nil, err
	}
	c.verifier = v
	preset, hasPreset := presets[src.Provider]
	if src.Provider != "" && !hasPreset {
		return nil, fmt.Errorf("%w: provider: %q is not one of github, stripe, shopify, twilio, standardwebhooks (or empty)", ErrConfig, src.Provider)
	}
	c.eventType = preset.EventType
	if src.EventTypeLocation != nil {
		c.eventType = *src.EventTypeLocation
	}
	if err := checkEventTypeLocation(&c.eventType); err != nil {
		return nil, err
	}
	keys := preset.IdempotencyKeys
	if len(src.IdempotencyKeys) > 0 {
		keys = src.IdempotencyKeys
	}
	if len(keys) > maxKeys {
		return nil, fmt.Errorf("%w: idempotency_keys: at most %d", ErrConfig, maxKeys)
	}
	for _, k := range keys {
		ref, err := parseValueRef(k)
		if err != nil {
			return nil, fmt.Errorf("%w: idempotency_keys: %v", ErrConfig, err)
		}
		c.idem = append(c.idem, ref)
	}
	fw := append(append([]string(nil), preset.ForwardHeaders...), src.ForwardHeaders...)
	if len(src.ForwardHeaders) > maxKeys {
		return nil, fmt.Errorf("%w: forward_headers: at most %d", ErrConfig, maxKeys)
	}
	for _, h := range fw {
		if !validHeaderName(h) {
			return nil, fmt.Errorf("%w: forward_headers: %q is not a header name", ErrConfig, h)
		}
		c.forward = append(c.forward, http.CanonicalHeaderKey(h))
	}
	c.nonJSON = src.AllowNonJSON || preset.NonJSON
	if cr := src.CustomResponse; cr != nil {
		if cr.Status != 0 && (cr.Status < 200 || cr.Status > 299) {
			return nil, fmt.Errorf("%w: custom_response.status: %d is not a 2xx status", ErrConfig, cr.Status)
		}
		if len(cr.Body) > 64<<10 {
			return nil, fmt.Errorf("%w: custom_response.body: longer than 64 KiB", ErrConfig)
		}
		if cr.ContentType != "" {
			if _, _, err := mime.ParseMediaType(cr.ContentType); err != nil {
				return nil, fmt.Errorf("%w: custom_response.content_type: %q is not a media type", ErrConfig, cr.ContentType)
			}
		}
	}
	return c, nil
}

func newVerifier(src *model.Source) (Verifier, error) {
	v := &src.Verifier
	if src.Provider != "" {
		if v.Type != "" && v.Type != "hmac" {
			return nil, fmt.Errorf("%w: verifier.type: provider %s verifies with hmac, not %q", ErrConfig, src.Provider, v.Type)
		}
		if v.HMac == nil || v.HMac.Secret == "" {
			return nil, fmt.Errorf("%w: verifier.hmac.secret: required for provider %s", ErrConfig, src.Provider)
		}
		secret := []byte(v.HMac.Secret)
		switch src.Provider {
		case ProviderGitHub:
			return &hmacVerifier{header: "X-Hub-Signature-256", hash: sha256.New, secret: secret, prefix: "sha256="}, nil
		case ProviderShopify:
			return &hmacVerifier{header: "X-Shopify-Hmac-Sha256", hash: sha256.New, secret: secret, base64: true}, nil
		case ProviderStripe:
			return &stripeVerifier{secret: secret}, nil
		case ProviderTwilio:
			return &twilioVerifier{token: secret}, nil
		case ProviderStandardWebhooks:
			k, err := StandardWebhooksKey(v.HMac.Secret)
			if err != nil {
				return nil, fmt.Errorf("verifier.hmac.secret: %w", err)
			}
			return &standardVerifier{key: k}, nil
		}
		return nil, fmt.Errorf("%w: provider: unknown %q", ErrConfig, src.Provider)
	}
	switch v.Type {
	case "noop":
		return noopVerifier{}, nil
	case "hmac":
		h := v.HMac
		if h == nil || h.Secret == "" || h.Header == "" {
			return nil, fmt.Errorf("%w: verifier.hmac: header and secret are required", ErrConfig)
		}
		if !validHeaderName(h.Header) {
			return nil, fmt.Errorf("%w: verifier.hmac.header: %q is not a header name", ErrConfig, h.Header)
		}
		var fn func() hash.Hash
		switch strings.ToUpper(h.Hash) {
		case "SHA256", "":
			fn = sha256.New
		case "SHA512":
			fn = sha512.New
		default:
			return nil, fmt.Errorf("%w: verifier.hmac.hash: %q is not SHA256 or SHA512", ErrConfig, h.Hash)
		}
		var b64 bool
		switch strings.ToLower(h.Encoding) {
		case "hex", "":
		case "base64":
			b64 = true
		default:
			return nil, fmt.Errorf("%w: verifier.hmac.encoding: %q is not hex or base64", ErrConfig, h.Encoding)
		}
		return &hmacVerifier{header: h.Header, hash: fn, secret: []byte(h.Secret), base64: b64, prefix: h.Prefix}, nil
	case "basic_auth":
		b := v.BasicAuth
		if b == nil || b.Username == "" || b.Password == "" {
			return nil, fmt.Errorf("%w: verifier.basic_auth: username and password are required", ErrConfig)
		}
		return &basicAuthVerifier{user: []byte(b.Username), pass: []byte(b.Password)}, nil
	case "api_key":
		k := v.APIKey
		if k == nil || k.HeaderName == "" || k.HeaderValue == "" {
			return nil, fmt.Errorf("%w: verifier.api_key: header_name and header_value are required", ErrConfig)
		}
		if !validHeaderName(k.HeaderName) {
			return nil, fmt.Errorf("%w: verifier.api_key.header_name: %q is not a header name", ErrConfig, k.HeaderName)
		}
		return &apiKeyVerifier{header: k.HeaderName, value: []byte(k.HeaderValue)}, nil
	case "":
		return nil, fmt.Errorf("%w: verifier.type: required (noop, hmac, basic_auth or api_key) unless a provider is set", ErrConfig)
	}
	return nil, fmt.Errorf("%w: verifier.type: %q is not noop, hmac, basic_auth or api_key", ErrConfig, v.Type)
}

func checkEventTypeLocation(l *model.EventTypeLocation) error {
	if l.From == "" {
		l.From = model.EventTypeFixed
	}
	if l.Default == "" {
		l.Default = DefaultEventType
	}
	if !validEventType(l.Default) {
		return fmt.Errorf("%w: event_type_location.default: %q must be 1-255 printable characters", ErrConfig, l.Default)
	}
	switch l.From {
	case model.EventTypeFixed:
		return nil
	case model.EventTypeFromHeader:
		if !validHeaderName(l.Name) {
			return fmt.Errorf("%w: event_type_location.name: %q is not a header name", ErrConfig, l.Name)
		}
	case model.EventTypeFromQuery, model.EventTypeFromBody:
		if l.Name == "" || len(l.Name) > 256 {
			return fmt.Errorf("%w: event_type_location.name: required for %s", ErrConfig, l.From)
		}
	default:
		return fmt.Errorf("%w: event_type_location.from: %q is not header, query, body or fixed", ErrConfig, l.From)
	}
	return nil
}

// parseValueRef reads "request.headers.<Name>", "request.query.<name>" or "request.body.<path>".
func parseValueRef(s string) (valueRef, error) {
	ref := valueRef{raw: s}
	rest, ok := strings.CutPrefix(s, "request.")
	if !ok {
		return ref, fmt.Errorf("%q does not start with request.headers., request.query. or request.body.", s)
	}
	where, name, ok := strings.Cut(rest, ".")
	if !ok || name == "" || len(name) > 256 {
		return ref, fmt.Errorf("%q names no value", s)
	}
	ref.name = name
	switch strings.ToLower(where) {
	case "headers", "header":
		ref.where = "headers"
		if !validHeaderName(name) {
			return ref, fmt.Errorf("%q: %q is not a header name", s, name)
		}
	case "query", "query_params":
		ref.where = "query"
	case "body":
		ref.where = "body"
		ref.path = strings.Split(name, ".")
	default:
		return ref, fmt.Errorf("%q: %q is not headers, query or body", s, where)
	}
	return ref, nil
}

func validHeaderName(h string) bool {
	if h == "" || len(h) > 256 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validEventType(t string) bool {
	return t != "" && len(t) <= 255 && !strings.ContainsAny(t, "\r\n\x00") && utf8.ValidString(t)
}

// Verify authenticates r at time now.
func (c *Source) Verify(r *Request, now time.Time) error { return c.verifier.Verify(r, now) }

// ErrNotJSON is returned by Extract for a body that is not JSON from a source that does not allow that.
var ErrNotJSON = errors.New("incoming: the body is not JSON")

// Extracted is what an ingest request contributes to its event.
type Extracted struct {
	EventType string
	// IdempotencyKey is derived from the source and its idempotency values; empty when the source
	// has none or the request carries none of them.
	IdempotencyKey string
	// Headers are the forwarded request headers (and Content-Type for a non-JSON body).
	Headers map[string]string
	// Raw says the body is not JSON (kept and delivered as raw bytes).
	Raw bool
}

// Extract reads the event type, the idempotency key and the headers to forward from r (verified
// first). The body is parsed at most once.
func (c *Source) Extract(r *Request) (*Extracted, error) {
	out := &Extracted{}
	body := &lazyBody{data: r.Body, header: r.Header}
	if !json.Valid(r.Body) {
		if !c.nonJSON {
			return nil, ErrNotJSON
		}
		out.Raw = true
	}
	var query url.Values
	if u, err := url.Parse(r.URL); err == nil {
		query = u.Query()
	}
	lookup := func(where, name string, path []string) (string, bool) {
		switch where {
		case "headers":
			vs := r.Header.Values(name)
			if len(vs) == 0 {
				return "", false
			}
			return strings.Join(vs, ", "), true
		case "query":
			if !query.Has(name) {
				return "", false
			}
			return query.Get(name), true
		default:
			return body.get(path)
		}
	}
	out.EventType = c.eventType.Default
	if l := c.eventType; l.From != model.EventTypeFixed {
		where := map[string]string{model.EventTypeFromHeader: "headers", model.EventTypeFromQuery: "query", model.EventTypeFromBody: "body"}[l.From]
		if t, ok := lookup(where, l.Name, strings.Split(l.Name, ".")); ok && validEventType(t) {
			out.EventType = t
		}
	}
	if len(c.idem) > 0 {
		h := sha256.New()
		found := false
		for _, ref := range c.idem {
			v, ok := lookup(ref.where, ref.name, ref.path)
			found = found || (ok && v != "")
			io.WriteString(h, ref.raw)
			h.Write([]byte{0})
			io.WriteString(h, v)
			h.Write([]byte{0})
		}
		if found {
			out.IdempotencyKey = "src_" + c.Src.UID + "_" + hex.EncodeToString(h.Sum(nil))
		}
	}
	for _, name := range c.forward {
		vs := r.Header.Values(name)
		if len(vs) == 0 {
			continue
		}
		v := strings.Join(vs, ", ")
		if len(v) > maxHeaderSize || strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(v) {
			continue
		}
		if out.Headers == nil {
			out.Headers = map[string]string{}
		}
		out.Headers[name] = v
	}
	if out.Raw {
		if ct := r.Header.Get("Content-Type"); ct != "" && len(ct) <= maxHeaderSize {
			if out.Headers == nil {
				out.Headers = map[string]string{}
			}
			out.Headers["Content-Type"] = ct
		}
	}
	return out, nil
}

// lazyBody parses a JSON (or form) body on first use.
type lazyBody struct {
	data   []byte
	header http.Header
	done   bool
	v      any
}

func (b *lazyBody) get(path []string) (string, bool) {
	if !b.done {
		b.done = true
		dec := json.NewDecoder(bytes.NewReader(b.data))
		dec.UseNumber()
		if dec.Decode(&b.v) != nil {
			b.v = nil
			if mt, _, _ := mime.ParseMediaType(b.header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
				if vals, err := url.ParseQuery(string(b.data)); err == nil {
					m := make(map[string]any, len(vals))
					for k, vs := range vals {
						m[k] = vs[0]
					}
					b.v = m
				}
			}
		}
	}
	v := b.v
	for _, seg := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return "", false
			}
			v = x[i]
		default:
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}
