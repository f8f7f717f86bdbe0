package model

import (
	"net/url"
	"time"
)

// Broker sources: a project's subscription to a message broker, whose messages Sluice consumes and
// publishes as events. The connection settings live in Source.Broker, one section per type.

// Broker source types (Source.Type).
const (
	SourceKafka  = "kafka"
	SourceNATS   = "nats"
	SourceAMQP   = "amqp"
	SourceSQS    = "sqs"
	SourcePubSub = "pubsub"
)

// IsBrokerSource reports whether a source type is consumed from a broker (rather than served at
// /ingest/{mask_id}).
func IsBrokerSource(typ string) bool {
	switch typ {
	case SourceKafka, SourceNATS, SourceAMQP, SourceSQS, SourcePubSub:
		return true
	}
	return false
}

// Message body modes (BrokerConfig.Body).
const (
	BodyAuto     = "auto"     // an object with "event_type" and "data" is an envelope, else data
	BodyEnvelope = "envelope" // always a publish envelope; anything else is malformed
	BodyData     = "data"     // always the event's data, whatever its shape
)

// BrokerConfig says how a broker source connects, what it consumes and how a message becomes an
// event. Exactly the section matching the source's type is set.
type BrokerConfig struct {
	// Workers caps the messages of this source being published at once (default 64). They share the
	// proposer's batches with every other publish.
	Workers int `json:"workers,omitempty"`
	// Body is auto (default), envelope or data; see docs/brokers.md for the message contract.
	Body string `json:"body,omitempty"`
	// EventType is the type of messages that name none (neither envelope nor header).
	EventType string `json:"event_type,omitempty"`
	// EndpointID or OwnerID target messages that name no target; with neither, such messages are
	// broadcast to the project's matching subscriptions.
	EndpointID string `json:"endpoint_id,omitempty"`
	OwnerID    string `json:"owner_id,omitempty"`

	Kafka  *KafkaSource  `json:"kafka,omitempty"`
	NATS   *NATSSource   `json:"nats,omitempty"`
	AMQP   *AMQPSource   `json:"amqp,omitempty"`
	SQS    *SQSSource    `json:"sqs,omitempty"`
	PubSub *PubSubSource `json:"pubsub,omitempty"`
}

// BrokerTLS is a client TLS configuration for a broker connection. Enabled with no other field uses
// the system roots.
type BrokerTLS struct {
	Enabled            bool   `json:"enabled"`
	CAPEM              string `json:"ca_pem,omitempty"`
	CertPEM            string `json:"cert_pem,omitempty"`
	KeyPEM             string `json:"key_pem,omitempty"` // secret
	ServerName         string `json:"server_name,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// KafkaSource consumes one or more topics as a consumer group.
type KafkaSource struct {
	Brokers []string `json:"brokers"`
	Topics  []string `json:"topics"`
	// ConsumerGroup defaults to "sluice-<source uid>".
	ConsumerGroup string `json:"consumer_group,omitempty"`
	// StartOffset is where a group with no committed offset starts: earliest (default) or latest.
	StartOffset string     `json:"start_offset,omitempty"`
	TLS         *BrokerTLS `json:"tls,omitempty"`
	// SASL mechanism plain, scram-sha-256 or scram-sha-512.
	SASL *SASL `json:"sasl,omitempty"`
	// DeadLetterTopic receives malformed messages (value and headers as consumed, plus
	// sluice-error); empty: they are only recorded.
	DeadLetterTopic string `json:"dead_letter_topic,omitempty"`
}

// SASL credentials.
type SASL struct {
	Mechanism string `json:"mechanism"`
	Username  string `json:"username"`
	Password  string `json:"password"` // secret
}

// NATSSource consumes a JetStream stream through a durable pull consumer.
type NATSSource struct {
	URLs   []string `json:"urls"`
	Stream string   `json:"stream"`
	// Subject filters the stream (optional).
	Subject string `json:"subject,omitempty"`
	// Durable is the consumer name, default "sluice-<source uid>".
	Durable  string     `json:"durable,omitempty"`
	Username string     `json:"username,omitempty"`
	Password string     `json:"password,omitempty"` // secret
	Token    string     `json:"token,omitempty"`    // secret
	TLS      *BrokerTLS `json:"tls,omitempty"`
	// DeadLetterSubject receives malformed messages; empty: they are recorded and terminated.
	DeadLetterSubject string `json:"dead_letter_subject,omitempty"`
	// AckWait (seconds, default 30) is how long JetStream waits for the ack of a delivered
	// message before redelivering it: how soon messages in flight at a crash come back. The
	// consumer keeps a batch it is publishing alive meanwhile, so it may be short.
	AckWait int `json:"ack_wait,omitempty"`
}

// AMQPSource consumes a RabbitMQ (AMQP 0-9-1) queue.
type AMQPSource struct {
	// URL is amqp://user:password@host:port/vhost (amqps:// for TLS); the password is a secret.
	URL   string     `json:"url"`
	Queue string     `json:"queue"`
	TLS   *BrokerTLS `json:"tls,omitempty"`
	// DeadLetterExchange, when set, receives malformed messages (published with
	// DeadLetterRoutingKey, default the queue name); empty: they are rejected without requeue, so
	// the queue's own x-dead-letter-exchange takes them if it has one.
	DeadLetterExchange   string `json:"dead_letter_exchange,omitempty"`
	DeadLetterRoutingKey string `json:"dead_letter_routing_key,omitempty"`
}

// SQSSource consumes an Amazon SQS queue (or an SQS-compatible server through Endpoint).
type SQSSource struct {
	QueueURL        string `json:"queue_url"`
	Region          string `json:"region"`
	Endpoint        string `json:"endpoint,omitempty"`
	AccessKeyID     string `json:"access_key_id,omitempty"`
	SecretAccessKey string `json:"secret_access_key,omitempty"` // secret
	SessionToken    string `json:"session_token,omitempty"`     // secret
	// VisibilityTimeout (seconds, default 30) is how long a received message stays hidden while it
	// is published; it must exceed the publish time.
	VisibilityTimeout int `json:"visibility_timeout,omitempty"`
	// DeadLetterQueueURL receives malformed messages; empty: they are recorded and deleted.
	DeadLetterQueueURL string `json:"dead_letter_queue_url,omitempty"`
	// Protocol is the wire protocol: json (default, AWS JSON 1.0 as AWS SQS speaks it) or query
	// (the older form-encoded protocol, for SQS-compatible servers that speak only that).
	Protocol string `json:"protocol,omitempty"`
}

// PubSubSource consumes a Google Cloud Pub/Sub subscription.
type PubSubSource struct {
	ProjectID    string `json:"project_id"`
	Subscription string `json:"subscription"`
	// Endpoint overrides the service address (an emulator, or a private endpoint).
	Endpoint string `json:"endpoint,omitempty"`
	// CredentialsJSON is a service account key; empty: application default credentials (none
	// against an emulator endpoint).
	CredentialsJSON string `json:"credentials_json,omitempty"` // secret
	// DeadLetterTopic receives malformed messages; empty: they are recorded and acknowledged.
	DeadLetterTopic string `json:"dead_letter_topic,omitempty"`
}

// DeadLetter is a broker message Sluice could not turn into an event, recorded in the replicated
// state (table 'K'), whether or not the broker's dead-letter mechanism also took it.
type DeadLetter struct {
	UID       string            `json:"uid"`
	ProjectID string            `json:"project_id"`
	SourceID  string            `json:"source_id"`
	MessageID string            `json:"message_id"`
	Reason    string            `json:"reason"`
	Headers   map[string]string `json:"headers,omitempty"`
	// Body is the message body, cut at 64 KiB (Truncated says so).
	Body      EventData `json:"body"`
	Truncated bool      `json:"truncated,omitempty"`
	// DeadLettered is where the broker's dead-letter mechanism took it ("" when only recorded).
	DeadLettered string    `json:"dead_lettered,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// RedactBroker returns a copy of b with every secret replaced by placeholder, for API output.
func RedactBroker(b *BrokerConfig, placeholder string) *BrokerConfig {
	out := *b
	copySections(&out)
	hide := func(s *string) {
		if *s != "" {
			*s = placeholder
		}
	}
	hideTLS := func(t *BrokerTLS) {
		if t != nil {
			hide(&t.KeyPEM)
		}
	}
	if k := out.Kafka; k != nil {
		hideTLS(k.TLS)
		if k.SASL != nil {
			hide(&k.SASL.Password)
		}
	}
	if n := out.NATS; n != nil {
		hideTLS(n.TLS)
		hide(&n.Password)
		hide(&n.Token)
	}
	if a := out.AMQP; a != nil {
		hideTLS(a.TLS)
		if u, err := url.Parse(a.URL); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), placeholder)
				a.URL = u.String()
			}
		}
	}
	if q := out.SQS; q != nil {
		hide(&q.SecretAccessKey)
		hide(&q.SessionToken)
	}
	if p := out.PubSub; p != nil {
		hide(&p.CredentialsJSON)
	}
	return &out
}

// KeepBrokerSecrets puts old's secrets back where an update sent the placeholder (the redacted
// value the API showed), so a client can send back what it read. It copies b's sections before
// changing them.
func KeepBrokerSecrets(b, old *BrokerConfig, placeholder string) {
	if old == nil {
		return
	}
	copySections(b)
	keep := func(s *string, o string) {
		if *s == placeholder {
			*s = o
		}
	}
	keepTLS := func(t, o *BrokerTLS) {
		if t != nil && o != nil {
			keep(&t.KeyPEM, o.KeyPEM)
		}
	}
	if k, o := b.Kafka, old.Kafka; k != nil && o != nil {
		keepTLS(k.TLS, o.TLS)
		if k.SASL != nil && o.SASL != nil {
			keep(&k.SASL.Password, o.SASL.Password)
		}
	}
	if n, o := b.NATS, old.NATS; n != nil && o != nil {
		keepTLS(n.TLS, o.TLS)
		keep(&n.Password, o.Password)
		keep(&n.Token, o.Token)
	}
	if a, o := b.AMQP, old.AMQP; a != nil && o != nil {
		keepTLS(a.TLS, o.TLS)
		u, err := url.Parse(a.URL)
		ou, oerr := url.Parse(o.URL)
		if err == nil && oerr == nil && u.User != nil && ou.User != nil {
			if pw, _ := u.User.Password(); pw == placeholder {
				opw, _ := ou.User.Password()
				u.User = url.UserPassword(u.User.Username(), opw)
				a.URL = u.String()
			}
		}
	}
	if q, o := b.SQS, old.SQS; q != nil && o != nil {
		keep(&q.SecretAccessKey, o.SecretAccessKey)
		keep(&q.SessionToken, o.SessionToken)
	}
	if p, o := b.PubSub, old.PubSub; p != nil && o != nil {
		keep(&p.CredentialsJSON, o.CredentialsJSON)
	}
}

// copySections replaces b's section pointers (and their TLS/SASL pointers) with copies.
func copySections(b *BrokerConfig) {
	cpTLS := func(t **BrokerTLS) {
		if *t != nil {
			c := **t
			*t = &c
		}
	}
	if b.Kafka != nil {
		c := *b.Kafka
		cpTLS(&c.TLS)
		if c.SASL != nil {
			s := *c.SASL
			c.SASL = &s
		}
		b.Kafka = &c
	}
	if b.NATS != nil {
		c := *b.NATS
		cpTLS(&c.TLS)
		b.NATS = &c
	}
	if b.AMQP != nil {
		c := *b.AMQP
		cpTLS(&c.TLS)
		b.AMQP = &c
	}
	if b.SQS != nil {
		c := *b.SQS
		b.SQS = &c
	}
	if b.PubSub != nil {
		c := *b.PubSub
		b.PubSub = &c
	}
}
