package model

import (
	"encoding/json"
	"time"
)

// Source is an ingest URL of an incoming project: providers POST webhooks to /ingest/{mask_id}, the
// verifier checks them, and each accepted request becomes an event routed by the subscriptions that
// name the source.
type Source struct {
	UID       string `json:"uid"`
	ProjectID string `json:"project_id"`
	Name      string `json:"name"`
	// Type is "http" (served at /ingest/{mask_id}) or a broker: kafka, nats, amqp, sqs, pubsub.
	Type string `json:"type"`
	// Broker is a broker source's connection and message settings (nil for http).
	Broker *BrokerConfig `json:"broker,omitempty"`
	// MaskID is the random, unguessable id in the ingest URL.
	MaskID string `json:"mask_id"`
	// Provider names a preset (github, stripe, shopify, twilio, standardwebhooks) whose exact
	// signature scheme, event type location and idempotency keys apply; empty for a custom verifier.
	Provider string         `json:"provider,omitempty"`
	Verifier SourceVerifier `json:"verifier"`
	// CustomResponse is what a provider is answered on success (default 200 and a JSON envelope).
	CustomResponse *CustomResponse `json:"custom_response,omitempty"`
	// IdempotencyKeys are the request values that identify a delivery from a provider that retries:
	// "request.headers.<Name>", "request.query.<name>" or "request.body.<dot.path>". A request whose
	// values were seen before creates no second event. Empty: the provider's default, else none.
	IdempotencyKeys []string `json:"idempotency_keys,omitempty"`
	// ForwardHeaders are request headers copied into the event's headers (delivered to endpoints
	// and seen by header filters).
	ForwardHeaders []string `json:"forward_headers,omitempty"`
	// EventTypeLocation says where the event type is read; nil: the provider's default, else the
	// fixed type "webhook".
	EventTypeLocation *EventTypeLocation `json:"event_type_location,omitempty"`
	// AllowNonJSON accepts bodies that are not JSON (kept as raw bytes, delivered with the original
	// Content-Type); otherwise they are refused with 400. Always on for twilio (form-encoded).
	AllowNonJSON bool      `json:"allow_non_json,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Source types and event type location kinds.
const (
	SourceHTTP = "http"

	EventTypeFromHeader = "header"
	EventTypeFromQuery  = "query"
	EventTypeFromBody   = "body"
	EventTypeFixed      = "fixed"
)

// SourceVerifier is how an ingest request is authenticated (Convoy's shape).
type SourceVerifier struct {
	// Type is noop, hmac, basic_auth or api_key. With a Provider it is hmac and only HMac.Secret
	// is needed.
	Type      string               `json:"type"`
	HMac      *HMacVerifier        `json:"hmac,omitempty"`
	BasicAuth *BasicAuthVerifier   `json:"basic_auth,omitempty"`
	APIKey    *APIKeyVerifierCreds `json:"api_key,omitempty"`
}

// HMacVerifier checks an HMAC of the raw body sent in Header: Hash SHA256 or SHA512, Encoding hex or
// base64, after an optional Prefix (e.g. "sha256=").
type HMacVerifier struct {
	Header   string `json:"header,omitempty"`
	Hash     string `json:"hash,omitempty"`
	Secret   string `json:"secret"`
	Encoding string `json:"encoding,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
}

// BasicAuthVerifier checks HTTP basic auth.
type BasicAuthVerifier struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// APIKeyVerifierCreds checks that header HeaderName carries HeaderValue.
type APIKeyVerifierCreds struct {
	HeaderName  string `json:"header_name"`
	HeaderValue string `json:"header_value"`
}

// CustomResponse is the answer to an accepted ingest request.
type CustomResponse struct {
	Status      int    `json:"status,omitempty"`
	Body        string `json:"body,omitempty"`
	ContentType string `json:"content_type,omitempty"`
}

// EventTypeLocation says where an ingest request's event type is read: From header (Name is the
// header), query (Name is the parameter) or body (Name is a dot path into the JSON body), or fixed.
// Default is used when the value is missing (and is the type when From is fixed); empty: "webhook".
type EventTypeLocation struct {
	From    string `json:"from"`
	Name    string `json:"name,omitempty"`
	Default string `json:"default,omitempty"`
}

// EventData is an event's payload: the exact bytes published or received, stored and delivered
// byte for byte. It marshals as itself when it is JSON and as a JSON string otherwise: an incoming
// source that allows non-JSON bodies (a form-encoded Twilio request) keeps the raw bytes, which
// cannot be embedded in a JSON response as they are.
type EventData []byte

// MarshalJSON implements json.Marshaler.
func (d EventData) MarshalJSON() ([]byte, error) {
	if d == nil {
		return []byte("null"), nil
	}
	if json.Valid(d) {
		return d, nil
	}
	return json.Marshal(string(d))
}

// UnmarshalJSON implements json.Unmarshaler: it keeps a copy of the raw JSON value.
func (d *EventData) UnmarshalJSON(b []byte) error {
	*d = append((*d)[:0], b...)
	return nil
}
