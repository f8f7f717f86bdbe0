package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	gpubsub "cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
)

const (
	// defaultWorkers mirrors the broker package's default publish concurrency.
	defaultWorkers = 64
	// maxBatch caps the messages handed to one Process call.
	maxBatch = 64
	// linger is how long a batch waits for more messages after its first: short, since Receive
	// delivers messages that arrived together within microseconds of each other.
	linger = 5 * time.Millisecond
	// finishTimeout bounds a dead-letter publish after Process: it runs even when the consumer
	// is stopping, since the rejection is recorded and a publish now saves a redelivery.
	finishTimeout = 10 * time.Second
	// leaseExtension is the longest single ack deadline extension, so messages held by a node
	// that died come back within about this long; shorter means more ModifyAckDeadline calls.
	leaseExtension = 20 * time.Second
	// maxAttributeValue is Pub/Sub's limit on an attribute value's bytes.
	maxAttributeValue = 1024
	// ErrorAttribute carries the reason on a message published to the dead-letter topic.
	ErrorAttribute = broker.DeadLetterErrorKey
)

// resourceID matches a Pub/Sub topic or subscription id, or its full name.
var resourceID = regexp.MustCompile(`^(projects/[^/]+/(topics|subscriptions)/)?[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$`)

// Driver is the pubsub source type.
type Driver struct{}

var _ broker.Driver = Driver{}

// Check validates a source's pubsub section without connecting.
func (Driver) Check(src *model.Source) error {
	if src.Broker == nil || src.Broker.PubSub == nil {
		return errors.New("broker.pubsub: required for a pubsub source")
	}
	p := src.Broker.PubSub
	if strings.TrimSpace(p.ProjectID) == "" {
		return errors.New("broker.pubsub.project_id: required")
	}
	if err := checkName(p.Subscription, "subscriptions"); err != nil {
		return fmt.Errorf("broker.pubsub.subscription: %w", err)
	}
	if p.Endpoint != "" {
		if _, port, err := net.SplitHostPort(p.Endpoint); err != nil || port == "" {
			return fmt.Errorf("broker.pubsub.endpoint: %q is not host:port", p.Endpoint)
		}
	}
	if p.CredentialsJSON != "" {
		var key struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(p.CredentialsJSON), &key); err != nil {
			return fmt.Errorf("broker.pubsub.credentials_json: not JSON: %w", err)
		}
		// Other credential types name URLs the node would call to get tokens: not something an
		// API caller should choose for it.
		if key.Type != "service_account" {
			return fmt.Errorf("broker.pubsub.credentials_json: type %q is not service_account", key.Type)
		}
	}
	if p.DeadLetterTopic != "" {
		if err := checkName(p.DeadLetterTopic, "topics"); err != nil {
			return fmt.Errorf("broker.pubsub.dead_letter_topic: %w", err)
		}
	}
	return nil
}

func checkName(s, kind string) error {
	if s == "" {
		return errors.New("required")
	}
	m := resourceID.FindStringSubmatch(s)
	if m == nil || (m[2] != "" && m[2] != kind) {
		return fmt.Errorf("%q is neither an id (a letter, then 2-254 of letters, digits, -_.~+%%) nor projects/<project>/%s/<id>", s, kind)
	}
	return nil
}

// Open returns the consumer of src; Run connects.
func (Driver) Open(src *model.Source, log *slog.Logger) (broker.Consumer, error) {
	w := src.Broker.Workers
	if w <= 0 {
		w = defaultWorkers
	}
	return &consumer{src: src, cfg: *src.Broker.PubSub, log: log, clock: clock.Real{}, workers: w,
		batch: min(w, maxBatch), linger: linger}, nil
}

// consumer reads one subscription.
type consumer struct {
	src     *model.Source
	cfg     model.PubSubSource
	log     *slog.Logger
	clock   clock.Clock
	workers int
	batch   int           // messages per Process, at most
	linger  time.Duration // wait for more messages after a batch's first
}

// ClientOptions are the connection options for a source's section: an emulator (plaintext, no
// credentials) when it names an endpoint but no key; else the key, or application default
// credentials, over TLS.
func ClientOptions(p *model.PubSubSource) []option.ClientOption {
	var opts []option.ClientOption
	if p.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(p.Endpoint))
		if p.CredentialsJSON == "" {
			opts = append(opts, option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		}
	}
	if p.CredentialsJSON != "" {
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, []byte(p.CredentialsJSON)))
	}
	return opts
}

// item is one message on its way from a Receive callback through a batch and back.
type item struct {
	msg     *gpubsub.Message
	done    chan struct{} // closed once verdict or err is set
	verdict broker.Verdict
	err     error // Process gave up: nack
}

// Run consumes until ctx ends; Receive's non-retryable errors end it with the error, and the
// Manager restarts it.
func (c *consumer) Run(ctx context.Context, h broker.Handler) error {
	h.SetLag(-1)
	client, err := gpubsub.NewClient(ctx, c.cfg.ProjectID, ClientOptions(&c.cfg)...)
	if err != nil {
		return fmt.Errorf("pubsub: connecting for project %s: %w", c.cfg.ProjectID, err)
	}
	defer client.Close()
	var dlq *gpubsub.Publisher
	if c.cfg.DeadLetterTopic != "" {
		dlq = client.Publisher(c.cfg.DeadLetterTopic)
		defer dlq.Stop()
	}

	sub := client.Subscriber(c.cfg.Subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = c.workers
	// Bounds how long messages a crashed node held stay hidden: the stream's ack deadline (60 s
	// by default) and each lease extension are at most this long.
	sub.ReceiveSettings.MaxDurationPerAckExtension = leaseExtension
	// Wait for the callbacks: they end promptly once ctx ends (Process gives up, the message is
	// nacked), and waiting keeps every goroutine inside Run.
	sub.ReceiveSettings.ShutdownOptions = &gpubsub.ShutdownOptions{Behavior: gpubsub.ShutdownBehaviorWaitForProcessing, Timeout: -1}

	// gctx outlives Receive only until it returns: on a fatal error Receive has waited for its
	// callbacks, so nothing is left to gather.
	gctx, cancel := context.WithCancel(ctx)
	items := make(chan *item)
	var wg sync.WaitGroup
	wg.Go(func() { c.gather(gctx, h, items) })
	err = sub.Receive(ctx, func(_ context.Context, m *gpubsub.Message) {
		it := &item{msg: m, done: make(chan struct{})}
		select {
		case items <- it:
		case <-ctx.Done():
			m.Nack()
			return
		}
		<-it.done
		c.finish(ctx, dlq, it)
	})
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pubsub: receiving from %s: %w", c.cfg.Subscription, err)
	}
	return errors.New("pubsub: receive ended without an error")
}

// gather groups the messages the callbacks hand over into batches and processes each batch in
// its own goroutine, until ctx ends and every batch is done.
func (c *consumer) gather(ctx context.Context, h broker.Handler, items <-chan *item) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var first *item
		select {
		case first = <-items:
		case <-ctx.Done():
			return
		}
		batch := []*item{first}
		t := c.clock.NewTimer(c.linger)
	fill:
		for len(batch) < c.batch {
			select {
			case it := <-items:
				batch = append(batch, it)
			case <-t.C():
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		t.Stop()
		wg.Go(func() { c.process(ctx, h, batch) })
	}
}

// process runs one batch through the Handler and releases its callbacks.
func (c *consumer) process(ctx context.Context, h broker.Handler, batch []*item) {
	msgs := make([]broker.Message, len(batch))
	for i, it := range batch {
		msgs[i] = broker.Message{ID: it.msg.ID, Body: it.msg.Data, Headers: it.msg.Attributes}
	}
	verdicts, err := h.Process(ctx, msgs)
	for i, it := range batch {
		if err != nil {
			it.err = err
		} else {
			it.verdict = verdicts[i]
		}
		close(it.done)
	}
}

// finish acks a processed message, after publishing it to the dead-letter topic if it was
// rejected and the source names one; a message Process gave up on, or whose dead-letter publish
// failed, is nacked for Pub/Sub to redeliver.
func (c *consumer) finish(ctx context.Context, dlq *gpubsub.Publisher, it *item) {
	if it.err != nil {
		it.msg.Nack()
		return
	}
	if it.verdict.Rejected && dlq != nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		attrs := make(map[string]string, len(it.msg.Attributes)+1)
		for k, v := range it.msg.Attributes {
			attrs[k] = v
		}
		reason := it.verdict.Reason
		if reason == "" {
			reason = "rejected"
		}
		if len(reason) > maxAttributeValue {
			reason = reason[:maxAttributeValue]
		}
		attrs[ErrorAttribute] = reason
		if _, err := dlq.Publish(fctx, &gpubsub.Message{Data: it.msg.Data, Attributes: attrs}).Get(fctx); err != nil {
			// Redelivered, rejected (and recorded) again, with another try at the topic.
			c.log.Warn("pubsub: publishing a rejected message to the dead-letter topic failed; nacked for redelivery",
				"source", c.src.UID, "message", it.msg.ID, "topic", c.cfg.DeadLetterTopic, "err", err)
			it.msg.Nack()
			return
		}
	}
	it.msg.Ack()
}
