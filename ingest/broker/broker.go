package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/sluice-gw/sluice/model"
)

// Message is one broker message as a consumer read it.
type Message struct {
	// ID identifies the message across redeliveries: Kafka topic/partition/offset, the JetStream
	// stream sequence, the AMQP message-id property, the SQS MessageId, the Pub/Sub message id. It
	// makes the default idempotency key, so it must be the same every time the broker hands the
	// same message out, and differ between messages of one source.
	ID string
	// Body is the message payload. The handler does not keep it after Process returns.
	Body []byte
	// Headers are the message's headers or attributes (names as sent; lookups ignore case).
	Headers map[string]string
}

// Verdict is what became of one message in Process.
type Verdict struct {
	// Rejected: the message cannot become an event (malformed, unknown endpoint, too large...). It
	// has been recorded as a dead letter; the consumer moves it to the broker's dead-letter
	// destination if the source names one, then acknowledges it. Otherwise it is committed (or
	// was a duplicate of a committed event) and the consumer acknowledges it.
	Rejected bool
	// Reason says why a message was rejected.
	Reason string
}

// Handler turns messages into events. Consumers call it from their own goroutines.
type Handler interface {
	// Process publishes msgs and returns one verdict per message once every message is either
	// committed as an event or rejected and recorded. It waits out failures that are Sluice's
	// (no leader, overload), retrying with backoff; it returns an error only when ctx ends first,
	// and then the consumer must acknowledge none of msgs. Safe for concurrent use.
	Process(ctx context.Context, msgs []Message) ([]Verdict, error)
	// SetLag reports how many messages wait in the broker for this source (-1: unknown), for the
	// sluice_source_lag metric.
	SetLag(n int64)
}

// Consumer reads one broker source.
type Consumer interface {
	// Run connects and consumes until ctx ends, handing messages to h and acknowledging each only
	// after h.Process returned its verdict (dead-lettering rejected ones first). It returns nil
	// when ctx ended and the error otherwise; the Manager then restarts it with backoff. Messages
	// in flight when Run returns are left unacknowledged for the broker to redeliver.
	Run(ctx context.Context, h Handler) error
}

// Driver connects one broker type.
type Driver interface {
	// Check validates a source's broker settings without connecting; the error is shown to the
	// API caller who saved the source.
	Check(src *model.Source) error
	// Open returns a consumer for src (which has passed Check). It does not connect: Run does.
	Open(src *model.Source, log *slog.Logger) (Consumer, error)
}

// Registry maps source types to the drivers this node has.
type Registry map[string]Driver

// Types lists the registered source types, sorted.
func (r Registry) Types() []string {
	out := make([]string, 0, len(r))
	for t := range r {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Check validates a broker source: the settings every broker shares, then its driver's.
func (r Registry) Check(src *model.Source) error {
	d := r[src.Type]
	if d == nil {
		return fmt.Errorf("type: %q sources are not supported by this node (it has %v)", src.Type, r.Types())
	}
	if err := checkCommon(src); err != nil {
		return err
	}
	return d.Check(src)
}

func checkCommon(src *model.Source) error {
	b := src.Broker
	if b == nil {
		return fmt.Errorf("broker: required for a %s source", src.Type)
	}
	if b.Workers < 0 || b.Workers > maxWorkers {
		return fmt.Errorf("broker.workers: %d is outside 0..%d", b.Workers, maxWorkers)
	}
	switch b.Body {
	case "", model.BodyAuto, model.BodyEnvelope, model.BodyData:
	default:
		return fmt.Errorf("broker.body: %q is not auto, envelope or data", b.Body)
	}
	if b.EndpointID != "" && b.OwnerID != "" {
		return fmt.Errorf("broker: endpoint_id and owner_id cannot both be set")
	}
	sections := 0
	for _, set := range []bool{b.Kafka != nil, b.NATS != nil, b.AMQP != nil, b.SQS != nil, b.PubSub != nil} {
		if set {
			sections++
		}
	}
	if sections != 1 {
		return fmt.Errorf("broker: exactly one section (%s) must be set, found %d", src.Type, sections)
	}
	return nil
}

// Workers caps.
const (
	defaultWorkers = 64
	maxWorkers     = 4096
)

// Workers is a source's publish concurrency: broker.workers, default 64. Drivers size prefetch and
// receiver counts by it.
func Workers(src *model.Source) int {
	if src.Broker != nil && src.Broker.Workers > 0 {
		return src.Broker.Workers
	}
	return defaultWorkers
}

// DefaultGroup is the consumer group / durable name a source uses when it names none.
func DefaultGroup(src *model.Source) string { return "sluice-" + src.UID }
