package model

import (
	"encoding/json"
	"net/http"
	"time"
)

// Project types.
const (
	ProjectOutgoing = "outgoing"
	ProjectIncoming = "incoming"
)

// Endpoint statuses.
const (
	EndpointActive   = "active"
	EndpointPaused   = "paused"
	EndpointDisabled = "disabled"
)

// DeliveryStatus is where one event delivery stands. Scheduled and Retry deliveries are pending: they
// sit in the due-time index and the scheduler's wheel.
type DeliveryStatus string

const (
	StatusScheduled  DeliveryStatus = "scheduled"
	StatusProcessing DeliveryStatus = "processing"
	StatusSuccess    DeliveryStatus = "success"
	StatusRetry      DeliveryStatus = "retry"
	StatusFailed     DeliveryStatus = "failed"
	StatusDiscarded  DeliveryStatus = "discarded"
)

// AllStatuses lists the statuses in their stable index order (the byte a status index key carries).
var AllStatuses = []DeliveryStatus{StatusScheduled, StatusProcessing, StatusSuccess, StatusRetry, StatusFailed, StatusDiscarded}

// Valid reports whether s is a known status.
func (s DeliveryStatus) Valid() bool { return s.Code() != 0 }

// Code is the status's one-byte index code (0 for an unknown status).
func (s DeliveryStatus) Code() byte {
	for i, x := range AllStatuses {
		if x == s {
			return byte(i + 1)
		}
	}
	return 0
}

// Pending reports whether a delivery in this status still waits for an attempt.
func (s DeliveryStatus) Pending() bool { return s == StatusScheduled || s == StatusRetry }

// Project is a tenant. API keys are scoped to one project.
type Project struct {
	UID       string        `json:"uid"`
	Name      string        `json:"name"`
	Type      string        `json:"type"`
	Config    ProjectConfig `json:"config"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// ProjectConfig holds per-project defaults that endpoints inherit.
type ProjectConfig struct {
	// Strategy is the default retry policy of the project's endpoints.
	Strategy *RetryStrategy `json:"strategy,omitempty"`
	// RateLimit is the default per-endpoint rate limit.
	RateLimit *RateLimit `json:"ratelimit,omitempty"`
	// Signature configures signature headers; Header defaults to X-Sluice-Signature.
	Signature *SignatureConfig `json:"signature,omitempty"`
	// MetaEvent, when set, is where the project owner is told about its endpoints (disabled, failing).
	MetaEvent *MetaEventConfig `json:"meta_event,omitempty"`
	// DisableEndpointAfter disables an endpoint after this many consecutive failed attempts
	// (0: never; a 410 Gone always disables).
	DisableEndpointAfter int `json:"disable_endpoint_after,omitempty"`
}

// MetaEventConfig routes meta events (webhooks about the project's own endpoints) to the owner.
type MetaEventConfig struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
	// EventTypes lists the meta events wanted; default ["endpoint.disabled"].
	EventTypes []string `json:"event_types,omitempty"`
}

// Meta event types.
const (
	MetaEndpointDisabled = "endpoint.disabled"
	MetaDeliveryFailed   = "eventdelivery.failed"
)

// Wants reports whether the config asks for meta events of type t.
func (m *MetaEventConfig) Wants(t string) bool {
	if m == nil || m.URL == "" {
		return false
	}
	if len(m.EventTypes) == 0 {
		return t == MetaEndpointDisabled
	}
	for _, x := range m.EventTypes {
		if x == t {
			return true
		}
	}
	return false
}

// MetaEvent is one webhook to the project owner about its endpoints. Data is the JSON body sent.
type MetaEvent struct {
	UID        string          `json:"uid"`
	ProjectID  string          `json:"project_id"`
	EventType  string          `json:"event_type"`
	Data       json.RawMessage `json:"data"`
	Status     string          `json:"status"` // scheduled, success, failed
	Attempts   int             `json:"attempts"`
	LastStatus int             `json:"last_http_status,omitempty"`
	LastError  string          `json:"last_error,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// EndpointHealth summarises an endpoint's recent deliveries.
type EndpointHealth struct {
	Attempts uint64 `json:"attempts"`
	Failures uint64 `json:"failures"`
	// SuccessRate is an exponentially weighted average over attempts (weight 0.1 for the newest).
	SuccessRate         float64    `json:"success_rate"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastStatus          int        `json:"last_http_status,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	LastAttemptAt       *time.Time `json:"last_attempt_at,omitempty"`
}

// SignatureConfig is a project's signature settings: the header of simple and advanced signatures
// (default X-Sluice-Signature) and the advanced scheme's versions (index+1 is the version number).
type SignatureConfig struct {
	Header   string             `json:"header,omitempty"`
	Versions []SignatureVersion `json:"versions,omitempty"`
}

// SignatureVersion is one signature version: hash SHA256 or SHA512, encoding hex or base64.
type SignatureVersion struct {
	Hash     string `json:"hash"`
	Encoding string `json:"encoding"`
}

// EndpointAuth is how Sluice authenticates to an endpoint: an API-key header or HTTP basic auth.
type EndpointAuth struct {
	Type      string          `json:"type"` // api_key | basic_auth
	APIKey    *AuthAPIKey     `json:"api_key,omitempty"`
	BasicAuth *AuthBasicCreds `json:"basic_auth,omitempty"`
}

// AuthAPIKey sends HeaderValue in HeaderName.
type AuthAPIKey struct {
	HeaderName  string `json:"header_name"`
	HeaderValue string `json:"header_value"`
}

// AuthBasicCreds is HTTP basic auth.
type AuthBasicCreds struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// EndpointTLS is an endpoint's client certificate and key (PEM) for mTLS, and an optional CA bundle
// to verify the server with instead of the system roots.
type EndpointTLS struct {
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	CACert     string `json:"ca_cert,omitempty"`
}

// RetryStrategy is a retry policy as the API speaks it (Convoy's shape): Duration in seconds.
type RetryStrategy struct {
	// Type is "exponential" (with jitter), "linear", or "default" (the Standard Webhooks schedule).
	Type       string `json:"type"`
	Duration   int    `json:"duration"`
	RetryCount int    `json:"retry_count"`
}

// RateLimit is Count events per Duration seconds.
type RateLimit struct {
	Count    int `json:"count"`
	Duration int `json:"duration"`
}

// Secret is one endpoint signing secret; during a rotation an endpoint has several live ones. For
// standard-ed25519 Value is the private whsk_ key (never shown) and PublicKey the whpk_ key receivers
// verify with.
type Secret struct {
	UID       string     `json:"uid"`
	Value     string     `json:"value,omitempty"`
	PublicKey string     `json:"public_key,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// Endpoint is a destination URL with its delivery settings.
type Endpoint struct {
	UID         string   `json:"uid"`
	ProjectID   string   `json:"project_id"`
	OwnerID     string   `json:"owner_id,omitempty"`
	URL         string   `json:"url"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Secrets     []Secret `json:"secrets"`
	// HTTPTimeout is in seconds; 0 means the node default (30 s).
	HTTPTimeout int `json:"http_timeout"`
	// RateLimit events per RateLimitDuration seconds; 0 means unlimited.
	RateLimit         int               `json:"rate_limit"`
	RateLimitDuration int               `json:"rate_limit_duration"`
	SupportEmail      string            `json:"support_email,omitempty"`
	Status            string            `json:"status"`
	Strategy          *RetryStrategy    `json:"strategy,omitempty"`
	Headers           map[string]string `json:"headers,omitempty"`
	EgressPool        string            `json:"egress_pool,omitempty"`
	// Region pins delivery to nodes of this region (empty: any node).
	Region string `json:"region,omitempty"`
	// SignatureScheme is simple (default), advanced, standard or standard-ed25519;
	// AdvancedSignatures (Convoy's flag) selects advanced when no scheme is named.
	SignatureScheme    string        `json:"signature_scheme,omitempty"`
	AdvancedSignatures bool          `json:"advanced_signatures,omitempty"`
	Authentication     *EndpointAuth `json:"authentication,omitempty"`
	TLS                *EndpointTLS  `json:"tls,omitempty"`
	CreatedAt          time.Time     `json:"created_at"`
	UpdatedAt          time.Time     `json:"updated_at"`
}

// Node is one Sluice process in the cluster, as it registered itself.
type Node struct {
	ID        string   `json:"id"`
	RaftAddr  string   `json:"raft_addr"`
	HTTPAddr  string   `json:"http_addr"`
	Region    string   `json:"region,omitempty"`
	EgressIPs []string `json:"egress_ips,omitempty"`
	Version   string   `json:"version,omitempty"`
	// Codec is the newest command encoding the node applies (raftstore.CodecVersion); 0 for
	// versions before the binary commands. The leader proposes binary commands only when every
	// server reports 1 or more.
	Codec int `json:"codec,omitempty"`
	// AppliedIndex is the node's applied Raft index when it last heartbeated.
	AppliedIndex uint64    `json:"applied_index,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Subscription routes events to an endpoint.
type Subscription struct {
	UID          string       `json:"uid"`
	ProjectID    string       `json:"project_id"`
	Name         string       `json:"name"`
	Type         string       `json:"type"`
	EndpointID   string       `json:"endpoint_id"`
	SourceID     string       `json:"source_id,omitempty"` // incoming projects: the source routed
	FilterConfig FilterConfig `json:"filter_config"`
	CreatedAt    time.Time    `json:"created_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
}

// FilterConfig selects events: EventTypes holds "*" or exact names; Filter narrows them by headers
// and payload (see filter.go).
type FilterConfig struct {
	EventTypes []string `json:"event_types"`
	Filter     Filter   `json:"filter,omitzero"`
}

// Matches reports whether the subscription wants eventType.
func (s *Subscription) Matches(eventType string) bool {
	for _, t := range s.FilterConfig.EventTypes {
		if t == "*" || t == eventType {
			return true
		}
	}
	return false
}

// Event is what a publisher sent. Data is kept as the exact bytes published.
type Event struct {
	UID       string `json:"uid"`
	ProjectID string `json:"project_id"`
	EventType string `json:"event_type"`
	// EndpointID or OwnerID record how the event was targeted (neither: broadcast), so a replay
	// resolves the same way against the current subscriptions.
	EndpointID     string            `json:"endpoint_id,omitempty"`
	OwnerID        string            `json:"owner_id,omitempty"`
	Endpoints      []string          `json:"endpoints"`
	Headers        map[string]string `json:"headers,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	SourceID       string            `json:"source_id,omitempty"` // the incoming source that received it
	Data           EventData         `json:"data"`
	CreatedAt      time.Time         `json:"created_at"`
}

// Delivery is one event to one endpoint.
type Delivery struct {
	UID           string         `json:"uid"`
	ProjectID     string         `json:"project_id"`
	EventID       string         `json:"event_id"`
	EndpointID    string         `json:"endpoint_id"`
	EventType     string         `json:"event_type"`
	OwnerID       string         `json:"owner_id,omitempty"`
	Status        DeliveryStatus `json:"status"`
	Attempts      int            `json:"attempts"`
	NextAttemptAt *time.Time     `json:"next_attempt_at,omitempty"`
	LastStatus    int            `json:"last_http_status,omitempty"`
	LastError     string         `json:"last_error,omitempty"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
}

// Attempt is one HTTP try of a delivery.
type Attempt struct {
	UID             string      `json:"uid"`
	DeliveryID      string      `json:"event_delivery_id"`
	ProjectID       string      `json:"project_id"`
	EndpointID      string      `json:"endpoint_id"`
	Number          int         `json:"attempt"`
	Method          string      `json:"method"`
	URL             string      `json:"url"`
	RequestHeaders  http.Header `json:"request_http_header"`
	StatusCode      int         `json:"http_status"`
	ResponseHeaders http.Header `json:"response_http_header,omitempty"`
	ResponseBody    string      `json:"response_data"`
	BodyTruncated   bool        `json:"response_truncated,omitempty"`
	LatencyMS       float64     `json:"latency_ms"`
	Error           string      `json:"error,omitempty"`
	EgressIP        string      `json:"ip_address,omitempty"`
	CreatedAt       time.Time   `json:"created_at"`
}

// APIKey is a stored key: only the SHA-256 of the secret is kept. ProjectID is empty for the root key.
type APIKey struct {
	UID       string    `json:"uid"`
	Hash      []byte    `json:"hash"`
	ProjectID string    `json:"project_id,omitempty"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// Key roles.
const (
	RoleRoot    = "root"
	RoleProject = "project"
)
