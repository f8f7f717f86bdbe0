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
	"github.com/sluice-gw/sluice/internal/jsonscan"
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

// envelopeKeys are envelope's JSON names (envelopeFields in order), indexed by the ek* constants.
var envelopeKeys = []string{"event_type", "endpoint_id", "owner_id", "data", "custom_headers", "idempotency_key"}

const (
	ekEventType = iota
	ekEndpointID
	ekOwnerID
	ekData
	ekCustomHeaders
	ekIdempotencyKey
	ekCount
)

// envelopeStringKeys are the envelope fields that are strings.
var envelopeStringKeys = [...]int{ekEventType, ekEndpointID, ekOwnerID, ekIdempotencyKey}

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
		if !validJSON(trimmed) {
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
// envelope fields, decoding it into env if so. Any other JSON is the event's data. Its answer and env
// are looksLikeEnvelopeJSON's for every input (FuzzEnvelopeFastMatchesJSON); it only spares the
// common shapes encoding/json's two reflective passes and the map of every body's fields.
func looksLikeEnvelope(b []byte, env *envelope) bool {
	if isEnv, decided := envelopeFast(b, env); decided {
		return isEnv
	}
	return looksLikeEnvelopeJSON(b, env)
}

// envelopeFast is looksLikeEnvelope read with jsonscan (one pass for an envelope, the first keys for
// a typical data object) where the answer does not depend on how encoding/json reads escapes, nulls,
// duplicates or invalid input; decided is false for the rest, and then env is untouched. An
// envelope's strings, headers and data are copies: nothing aliases b.
func envelopeFast(b []byte, env *envelope) (isEnv, decided bool) {
	if len(b) == 0 || b[0] != '{' {
		return false, true
	}
	var spans [ekCount]jsonscan.Span
	if !jsonscan.Object(b, envelopeKeys, spans[:]) {
		if hasForeignKey(b) {
			return false, true
		}
		return false, false
	}
	// b is a valid object of distinct envelope fields, exactly as encoding/json reads its keys.
	if spans[ekEventType].Empty() || spans[ekData].Empty() {
		return false, true
	}
	var strs [ekCount][]byte
	if !jsonscan.Strings(b, spans[:], envelopeStringKeys[:], strs[:]) {
		return false, false
	}
	data := spans[ekData]
	if b[data.Start] == 'n' {
		// json.RawMessage keeps a null as the bytes "null": rare enough to leave to encoding/json.
		return false, false
	}
	headers, ok := jsonscan.StringMap(b, spans[ekCustomHeaders])
	if !ok {
		return false, false
	}
	*env = envelope{
		EventType:      string(strs[ekEventType]),
		EndpointID:     string(strs[ekEndpointID]),
		OwnerID:        string(strs[ekOwnerID]),
		Data:           bytes.Clone(b[data.Start:data.End]),
		CustomHeaders:  headers,
		IdempotencyKey: string(strs[ekIdempotencyKey]),
	}
	return true, true
}

// hasForeignKey reports whether the object b opens has a top-level key that is no envelope field,
// found before any key that is not a simple string and before any syntax error. Such a key makes b
// data whatever follows it: encoding/json unmarshals a simple key to exactly its bytes, so the key
// is in looksLikeEnvelopeJSON's map if b is valid, and invalid JSON is data too.
func hasForeignKey(b []byte) bool {
	i := jsonscan.SkipSpace(b, 1)
	for {
		key, next, ok := jsonscan.String(b, i)
		if !ok {
			return false
		}
		if !envelopeFields[string(key)] {
			return true
		}
		i = jsonscan.SkipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		end, err := jsonscan.Value(b, i+1)
		if err != nil {
			return false
		}
		i = jsonscan.SkipSpace(b, end)
		if i >= len(b) || b[i] != ',' {
			return false
		}
		i = jsonscan.SkipSpace(b, i+1)
	}
}

// looksLikeEnvelopeJSON is looksLikeEnvelope with encoding/json alone: the reference the fast path is
// held to, and its fallback for the inputs only encoding/json can read.
func looksLikeEnvelopeJSON(b []byte, env *envelope) bool {
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

// validJSON is json.Valid(b) on jsonscan's scanner, which checks string bytes eight at a time where
// encoding/json makes a call per byte (jsonscan's FuzzValue holds the two equal).
func validJSON(b []byte) bool {
	end, err := jsonscan.Value(b, 0)
	return err == nil && jsonscan.SkipSpace(b, end) == len(b)
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
