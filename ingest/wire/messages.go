package wire

import (
	"encoding/json"
	"fmt"
)

// Code says why a request was refused (NACK) or a connection closed (ERROR).
type Code uint16

// Codes 1–15 are the caller's fault and are not retried as they are; 16–31 are transient and the
// request may be sent again with the same idempotency key; 32 and up are protocol violations (a
// client bug) or connection limits.
const (
	CodeBadRequest   Code = 1 // invalid JSON, a missing or malformed field (HTTP 400/422)
	CodeNotFound     Code = 2 // unknown project or endpoint (HTTP 404)
	CodeUnauthorized Code = 3 // missing or unknown API key (HTTP 401)
	CodeForbidden    Code = 4 // the key may not act on this project (HTTP 403)
	CodeConflict     Code = 5 // HTTP 409
	CodeTooLarge     Code = 6 // a publish body over the node's --max-payload-bytes (HTTP 413)

	CodeOverloaded   Code = 16 // the node sheds load; retry after a backoff
	CodeUnavailable  Code = 17 // no leader can commit right now (HTTP 503)
	CodeTimeout      Code = 18 // the commit did not finish in time: outcome unknown, retry with the same idempotency key
	CodeInternal     Code = 19 // unexpected server error
	CodeShuttingDown Code = 20 // the node is stopping; reconnect (to it later or to another node)

	CodeBadFrame           Code = 32 // malformed header or payload layout
	CodeUnsupportedVersion Code = 33 // version byte is not 1
	CodeUnknownType        Code = 34 // unknown frame type, or one a client may not send
	CodeFrameTooLarge      Code = 35 // length over the limit for the frame type
	CodeAuthRequired       Code = 36 // the first frame was not AUTH, or AUTH came twice
	CodeAuthTimeout        Code = 37 // no AUTH within the server's auth timeout
	CodeIdleTimeout        Code = 38 // no complete frame within the idle timeout while nothing was in flight
	CodeTooManyConns       Code = 39 // the server's connection limit is reached
)

var codeNames = map[Code]string{
	CodeBadRequest: "bad_request", CodeNotFound: "not_found", CodeUnauthorized: "unauthorized",
	CodeForbidden: "forbidden", CodeConflict: "conflict", CodeTooLarge: "too_large",
	CodeOverloaded: "overloaded", CodeUnavailable: "unavailable", CodeTimeout: "timeout",
	CodeInternal: "internal", CodeShuttingDown: "shutting_down",
	CodeBadFrame: "bad_frame", CodeUnsupportedVersion: "unsupported_version", CodeUnknownType: "unknown_type",
	CodeFrameTooLarge: "frame_too_large", CodeAuthRequired: "auth_required", CodeAuthTimeout: "auth_timeout",
	CodeIdleTimeout: "idle_timeout", CodeTooManyConns: "too_many_connections",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code_%d", uint16(c))
}

// Retryable reports whether sending the same request again (with the same idempotency key, after a
// backoff) may succeed. For an ERROR it says whether reconnecting may help.
func (c Code) Retryable() bool {
	switch c {
	case CodeOverloaded, CodeUnavailable, CodeTimeout, CodeInternal, CodeShuttingDown,
		CodeAuthTimeout, CodeIdleTimeout, CodeTooManyConns:
		return true
	}
	return false
}

// Auth is the JSON payload of AUTH, the first frame of a connection.
type Auth struct {
	// Key is a project API key or the root key.
	Key string `json:"key"`
	// ProjectID is the default project of the connection's publishes. With a project key it may be
	// empty (the key's project) and must otherwise name the key's project. With the root key it is
	// optional; a publish without project_id then needs it.
	ProjectID string `json:"project_id,omitempty"`
	// Client names the client software, for logs ("sluice-go/0.1").
	Client string `json:"client,omitempty"`
}

// AuthOK is the JSON payload of AUTH_OK: the session's limits, which a client must respect.
type AuthOK struct {
	// ProjectID is the connection's default project ("" for the root key without one).
	ProjectID string `json:"project_id"`
	// Root reports a root key: publishes may name any project.
	Root bool `json:"root"`
	// MaxPayload is the largest PUBLISH / PUBLISH_BATCH payload, before and after decompression.
	MaxPayload int `json:"max_payload"`
	// MaxPublishBytes is the largest single publish JSON (the node's --max-payload-bytes).
	MaxPublishBytes int `json:"max_publish_bytes"`
	// MaxInFlight is how many publishes of this connection may await their ACK/NACK at once. A
	// client that sends more is not read until some are answered.
	MaxInFlight int `json:"max_in_flight"`
	// MaxBatch is the largest item count of one PUBLISH_BATCH.
	MaxBatch int `json:"max_batch"`
	// IdleTimeoutMS: with nothing in flight, a connection that sends no frame for this long is
	// closed; PING keeps it open.
	IdleTimeoutMS int64  `json:"idle_timeout_ms"`
	Server        string `json:"server"`
}

// Targets of a publish: which endpoints an event goes to.
const (
	TargetEndpoint  = "endpoint"  // the endpoint named by endpoint_id
	TargetOwner     = "owner"     // every endpoint with owner_id (HTTP: /events/fanout)
	TargetBroadcast = "broadcast" // every endpoint whose subscriptions match (HTTP: /events/broadcast)
)

// Publish is the JSON payload of one PUBLISH (or one PUBLISH_BATCH item): the HTTP publish body
// plus the project and an optional explicit target. Unknown fields are refused, as over HTTP.
type Publish struct {
	// ProjectID overrides the connection's project; only the root key may name another project.
	ProjectID string `json:"project_id,omitempty"`
	// Target is "endpoint", "owner" or "broadcast". When empty it is inferred: endpoint_id set means
	// endpoint, else owner_id set means owner, else broadcast; both set without a target is refused.
	Target         string            `json:"target,omitempty"`
	EndpointID     string            `json:"endpoint_id,omitempty"`
	OwnerID        string            `json:"owner_id,omitempty"`
	EventType      string            `json:"event_type"`
	Data           json.RawMessage   `json:"data"`
	CustomHeaders  map[string]string `json:"custom_headers,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
}

// ResolveTarget returns the publish's target, inferring it when Target is empty.
func (p *Publish) ResolveTarget() (string, error) {
	switch p.Target {
	case TargetEndpoint, TargetOwner, TargetBroadcast:
		return p.Target, nil
	case "":
	default:
		return "", fmt.Errorf("target: %q is not endpoint, owner or broadcast", p.Target)
	}
	switch {
	case p.EndpointID != "" && p.OwnerID != "":
		return "", fmt.Errorf("target: both endpoint_id and owner_id are set; say which with \"target\"")
	case p.EndpointID != "":
		return TargetEndpoint, nil
	case p.OwnerID != "":
		return TargetOwner, nil
	}
	return TargetBroadcast, nil
}
