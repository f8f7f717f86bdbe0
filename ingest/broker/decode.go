package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/model"
)

// Message headers (or attributes) that name what a body does not. Lookups ignore case. An envelope
// field wins over a header, a header over the source's defaults (BrokerConfig).
const (
	HeaderEventType      = "sluice-event-type"
	HeaderEndpointID     = "sluice-endpoint-id"
	HeaderOwnerID        = "sluice-owner-id"
	HeaderIdempotencyKey = "sluice-idempotency-key"
)

// cloudEventType are CloudEvents binary-mode type attributes (Kafka, HTTP/NATS, AMQP spellings),
// read when no sluice-event-type header is present.
var cloudEventType = []string{"ce_type", "ce-type", "cloudEvents:type"}

// envelope is a full publish in a message body: the fields of the REST publish body.
type envelope struct {
	EventType      string            `json:"event_type"`
	EndpointID     string            `json:"endpoint_id"`
	OwnerID        string            `json:"owner_id"`
	Data           json.RawMessage   `json:"data"`
	CustomHeaders  map[string]string `json:"custom_headers"`
	IdempotencyKey string            `json:"idempotency_key"`
}

var envelopeFields = map[string]bool{
	"event_type": true, "endpoint_id": true, "owner_id": true, "data": true,
	"custom_headers": true, "idempotency_key": true,
}

// ErrMalformed marks a message that cannot become an event whatever Sluice's state.
var ErrMalformed = errors.New("broker: malformed message")

// Decode turns a message of src into a validated publish request and its mode. maxBytes caps the
// body (the node's publish limit). Errors wrap ErrMalformed and say what is wrong with which field.
func Decode(src *model.Source, m *Message, maxBytes int) (*api.PublishRequest, api.PublishMode, error) {
	var cfg model.BrokerConfig
	if src.Broker != nil {
		cfg = *src.Broker
	}
	if maxBytes > 0 && len(m.Body) > maxBytes {
		return nil, 0, fmt.Errorf("%w: body: %d bytes exceeds the %d-byte publish limit", ErrMalformed, len(m.Body), maxBytes)
	}
	var (
		env     envelope
		isEnv   bool
		trimmed = bytes.TrimSpace(m.Body)
	)
	switch cfg.Body {
	case model.BodyEnvelope:
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			return nil, 0, fmt.Errorf("%w: body: not a publish envelope: %v", ErrMalformed, err)
		}
		if dec.More() {
			return nil, 0, fmt.Errorf("%w: body: data after the envelope object", ErrMalformed)
		}
		isEnv = true
	case model.BodyData:
	default:
		isEnv = looksLikeEnvelope(trimmed, &env)
	}
	in := &api.PublishRequest{SourceID: src.UID}
	if isEnv {
		in.EventType, in.EndpointID, in.OwnerID = env.EventType, env.EndpointID, env.OwnerID
		in.Data, in.CustomHeaders, in.IdempotencyKey = env.Data, env.CustomHeaders, env.IdempotencyKey
	} else {
		if !json.Valid(trimmed) {
			return nil, 0, fmt.Errorf("%w: body: not JSON (the body is the event data unless it is a publish envelope)", ErrMalformed)
		}
		in.Data = json.RawMessage(trimmed)
	}
	if in.EventType == "" {
		in.EventType = header(m.Headers, HeaderEventType)
	}
	if in.EventType == "" {
		for _, h := range cloudEventType {
			if in.EventType = header(m.Headers, h); in.EventType != "" {
				break
			}
		}
	}
	if in.EventType == "" {
		in.EventType = cfg.EventType
	}
	if in.EventType == "" {
		return nil, 0, fmt.Errorf("%w: event_type: none in the body, the %s header or the source's broker.event_type", ErrMalformed, HeaderEventType)
	}
	if in.EndpointID == "" && in.OwnerID == "" {
		in.EndpointID, in.OwnerID = header(m.Headers, HeaderEndpointID), header(m.Headers, HeaderOwnerID)
		if in.EndpointID == "" && in.OwnerID == "" {
			in.EndpointID, in.OwnerID = cfg.EndpointID, cfg.OwnerID
		}
	}
	if in.IdempotencyKey == "" {
		in.IdempotencyKey = header(m.Headers, HeaderIdempotencyKey)
	}
	if in.IdempotencyKey == "" && m.ID != "" {
		// A message without a broker id (an AMQP message without message-id) has no key: it is
		// delivered at least once rather than sharing one key with every other such message.
		in.IdempotencyKey = MessageKey(src, m.ID)
	}
	mode := api.PublishBroadcast
	switch {
	case in.EndpointID != "" && in.OwnerID != "":
		return nil, 0, fmt.Errorf("%w: a message names both endpoint_id %q and owner_id %q", ErrMalformed, in.EndpointID, in.OwnerID)
	case in.EndpointID != "":
		mode = api.PublishToEndpoint
	case in.OwnerID != "":
		mode = api.PublishFanout
	}
	if err := in.Validate(mode); err != nil {
		_, msg, _ := api.ClientError(err)
		if msg == "" {
			msg = err.Error()
		}
		return nil, 0, fmt.Errorf("%w: %s", ErrMalformed, msg)
	}
	return in, mode, nil
}

// looksLikeEnvelope reports whether b is a JSON object holding event_type and data and nothing but
// envelope fields, decoding it into env if so. Any other JSON is the event's data.
func looksLikeEnvelope(b []byte, env *envelope) bool {
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return false
	}
	if fields["event_type"] == nil || fields["data"] == nil {
		return false
	}
	for k := range fields {
		if !envelopeFields[k] {
			return false
		}
	}
	return json.Unmarshal(b, env) == nil
}

// MessageKey is the idempotency key of a message that names none: the source and the broker's
// message id (hashed when the two would exceed the 255-byte key limit).
func MessageKey(src *model.Source, msgID string) string {
	k := "msg:" + src.UID + ":" + msgID
	if len(k) <= 255 {
		return k
	}
	sum := sha256.Sum256([]byte(msgID))
	return "msg:" + src.UID + ":sha256:" + hex.EncodeToString(sum[:])
}

func header(h map[string]string, name string) string {
	if v, ok := h[name]; ok {
		return strings.TrimSpace(v)
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
