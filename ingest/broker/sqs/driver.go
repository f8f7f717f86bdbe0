package sqs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
)

// Protocols (model.SQSSource.Protocol).
const (
	ProtocolJSON  = "json"
	ProtocolQuery = "query"
)

const (
	defaultVisibility = 30    // seconds, SQS's own default
	maxVisibility     = 43200 // seconds, SQS's limit (12 h)
	// maxBatch is SQS's limit on messages per ReceiveMessage and entries per batch call.
	maxBatch = 10
	// maxAttributes is SQS's limit on a message's attributes; the dead-letter copy adds
	// sluice-error only when the original leaves room for it.
	maxAttributes = 10
	// waitSeconds is the long-poll wait of ReceiveMessage (SQS's maximum).
	waitSeconds = 20
	// defaultWorkers mirrors the broker package's default publish concurrency, from which the
	// number of receivers follows.
	defaultWorkers = 64
	// finishTimeout bounds the dead-letter sends and deletes that follow a Process: they run even
	// when the consumer is stopping, since the events are committed and a delete now saves a
	// redelivery later.
	finishTimeout = 10 * time.Second
	// defaultLagInterval is how often the queue depth is polled for the lag gauge.
	defaultLagInterval = 10 * time.Second
	// ErrorAttribute carries the reason on a message sent to the dead-letter queue.
	ErrorAttribute = broker.DeadLetterErrorKey
)

// Driver is the sqs source type.
type Driver struct{}

var _ broker.Driver = Driver{}

// Check validates a source's sqs section without connecting.
func (Driver) Check(src *model.Source) error {
	if src.Broker == nil || src.Broker.SQS == nil {
		return errors.New("broker.sqs: required for an sqs source")
	}
	q := src.Broker.SQS
	if err := checkURL(q.QueueURL); err != nil {
		return fmt.Errorf("broker.sqs.queue_url: %w", err)
	}
	if strings.TrimSpace(q.Region) == "" {
		return errors.New("broker.sqs.region: required (any name an SQS-compatible server accepts, e.g. us-east-1)")
	}
	if q.Endpoint != "" {
		if err := checkURL(q.Endpoint); err != nil {
			return fmt.Errorf("broker.sqs.endpoint: %w", err)
		}
	}
	if (q.AccessKeyID == "") != (q.SecretAccessKey == "") {
		return errors.New("broker.sqs: access_key_id and secret_access_key go together (neither: the default credential chain)")
	}
	if q.SessionToken != "" && q.AccessKeyID == "" {
		return errors.New("broker.sqs.session_token: needs access_key_id and secret_access_key")
	}
	if q.VisibilityTimeout < 0 || q.VisibilityTimeout > maxVisibility {
		return fmt.Errorf("broker.sqs.visibility_timeout: %d is outside 1..%d seconds (0: %d)", q.VisibilityTimeout, maxVisibility, defaultVisibility)
	}
	if q.DeadLetterQueueURL != "" {
		if err := checkURL(q.DeadLetterQueueURL); err != nil {
			return fmt.Errorf("broker.sqs.dead_letter_queue_url: %w", err)
		}
		if q.DeadLetterQueueURL == q.QueueURL {
			return errors.New("broker.sqs.dead_letter_queue_url: is the consumed queue itself")
		}
	}
	switch q.Protocol {
	case "", ProtocolJSON, ProtocolQuery:
	default:
		return fmt.Errorf("broker.sqs.protocol: %q is not json or query", q.Protocol)
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Open returns the consumer of src; Run connects.
func (Driver) Open(src *model.Source, log *slog.Logger) (broker.Consumer, error) {
	cfg := *src.Broker.SQS
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = defaultVisibility
	}
	w := src.Broker.Workers
	if w <= 0 {
		w = defaultWorkers
	}
	return &consumer{
		src: src, cfg: cfg, log: log, clock: clock.Real{},
		receivers:   max(1, w/maxBatch),
		wait:        waitSeconds,
		lagInterval: defaultLagInterval,
	}, nil
}

// consumer reads one queue.
type consumer struct {
	src       *model.Source
	cfg       model.SQSSource // VisibilityTimeout defaulted
	log       *slog.Logger
	clock     clock.Clock
	receivers int // parallel long polls, each handing batches of up to ten to the Handler
	// wait is the long-poll wait in seconds and lagInterval the depth poll period; tests shorten
	// them.
	wait        int32
	lagInterval time.Duration
}

// NewClient returns an SQS client for a source's section: static credentials when it has them,
// else the SDK's default chain; its endpoint and protocol when set.
func NewClient(ctx context.Context, q *model.SQSSource) (*awssqs.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(q.Region)}
	if q.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(q.AccessKeyID, q.SecretAccessKey, q.SessionToken)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqs: loading the AWS configuration: %w", err)
	}
	return awssqs.NewFromConfig(cfg, func(o *awssqs.Options) {
		if q.Endpoint != "" {
			o.BaseEndpoint = aws.String(q.Endpoint)
		}
		if q.Protocol == ProtocolQuery {
			o.Protocol = awsquery.New(schemas.AmazonSQS)
		}
	}), nil
}

// Run consumes until ctx ends; a failed call to SQS (after the SDK's own retries) ends it with
// the error, and the Manager restarts it.
func (c *consumer) Run(parent context.Context, h broker.Handler) error {
	cl, err := NewClient(parent, &c.cfg)
	if err != nil {
		return err
	}
	// The first depth poll doubles as a probe: a wrong queue URL or credentials fail here, once,
	// with SQS's own words.
	n, err := c.depth(parent, cl)
	if err != nil {
		if parent.Err() != nil {
			return nil
		}
		return err
	}
	h.SetLag(n)

	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range c.receivers {
		wg.Go(func() {
			if err := c.receive(ctx, cl, h); err != nil {
				cancel(err)
			}
		})
	}
	wg.Go(func() { c.pollLag(ctx, cl, h) })
	wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	return context.Cause(ctx)
}

// receive long-polls and handles batches until ctx ends or a call fails.
func (c *consumer) receive(ctx context.Context, cl *awssqs.Client, h broker.Handler) error {
	for ctx.Err() == nil {
		// The deadline guards against a server that never answers; the SDK sets none of its own.
		rctx, cancel := context.WithTimeout(ctx, time.Duration(c.wait)*time.Second+30*time.Second)
		out, err := cl.ReceiveMessage(rctx, &awssqs.ReceiveMessageInput{
			QueueUrl:              aws.String(c.cfg.QueueURL),
			MaxNumberOfMessages:   maxBatch,
			WaitTimeSeconds:       c.wait,
			VisibilityTimeout:     int32(c.cfg.VisibilityTimeout),
			MessageAttributeNames: []string{"All"},
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sqs: receiving from %s: %w", c.cfg.QueueURL, err)
		}
		if len(out.Messages) == 0 {
			continue
		}
		if err := c.handle(ctx, cl, h, out.Messages); err != nil {
			return err
		}
	}
	return nil
}

// handle processes one received batch, dead-letters its rejected messages and deletes what was
// handled. Nothing is deleted unless Process returned its verdicts.
func (c *consumer) handle(ctx context.Context, cl *awssqs.Client, h broker.Handler, raw []types.Message) error {
	msgs := make([]broker.Message, len(raw))
	for i := range raw {
		msgs[i] = toMessage(&raw[i])
	}
	stop := c.keepHidden(ctx, cl, raw)
	verdicts, err := h.Process(ctx, msgs)
	stop()
	if err != nil {
		// ctx ended before the batch was committed: SQS hands it out again after the timeout.
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	entries := make([]types.DeleteMessageBatchRequestEntry, 0, len(raw))
	var dlqErr error
	for i := range raw {
		if verdicts[i].Rejected && c.cfg.DeadLetterQueueURL != "" {
			if err := c.deadLetter(fctx, cl, &raw[i], verdicts[i].Reason); err != nil {
				// Left in the queue: it comes back, is rejected (and recorded) again, and has
				// another chance at the dead-letter queue.
				dlqErr = errors.Join(dlqErr, err)
				continue
			}
		}
		entries = append(entries, types.DeleteMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: raw[i].ReceiptHandle,
		})
	}
	if len(entries) > 0 {
		out, err := cl.DeleteMessageBatch(fctx, &awssqs.DeleteMessageBatchInput{
			QueueUrl: aws.String(c.cfg.QueueURL), Entries: entries,
		})
		if err != nil {
			return errors.Join(dlqErr, fmt.Errorf("sqs: deleting %d handled messages from %s: %w", len(entries), c.cfg.QueueURL, err))
		}
		for _, f := range out.Failed {
			// The message comes back once its timeout runs out, and its idempotency key makes
			// the second publish a duplicate of the committed event.
			c.log.Warn("sqs: handled message not deleted; it will be redelivered and deduplicated",
				"source", c.src.UID, "entry", aws.ToString(f.Id), "code", aws.ToString(f.Code), "err", aws.ToString(f.Message))
		}
	}
	return dlqErr
}

// keepHidden extends the visibility of raw every half timeout until stop is called, so messages
// still being published are not handed to another receiver.
func (c *consumer) keepHidden(ctx context.Context, cl *awssqs.Client, raw []types.Message) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	every := time.Duration(c.cfg.VisibilityTimeout) * time.Second / 2
	var wg sync.WaitGroup
	wg.Go(func() {
		t := c.clock.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
			}
			// One call per message: ChangeMessageVisibilityBatch would do, but SQS-compatible
			// servers (goaws) lack it, and ten calls per half timeout are cheap.
			for i := range raw {
				_, err := cl.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
					QueueUrl: aws.String(c.cfg.QueueURL), ReceiptHandle: raw[i].ReceiptHandle,
					VisibilityTimeout: int32(c.cfg.VisibilityTimeout),
				})
				if err != nil && ctx.Err() == nil {
					c.log.Warn("sqs: extending the visibility of a message in flight failed; it may be received twice",
						"source", c.src.UID, "message", aws.ToString(raw[i].MessageId), "err", err)
				}
			}
			t.Reset(every)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// deadLetter copies a rejected message to the dead-letter queue with its attributes and the
// reason.
func (c *consumer) deadLetter(ctx context.Context, cl *awssqs.Client, m *types.Message, reason string) error {
	attrs := make(map[string]types.MessageAttributeValue, len(m.MessageAttributes)+1)
	for k, v := range m.MessageAttributes {
		attrs[k] = v
	}
	if reason == "" {
		reason = "rejected"
	}
	if _, taken := attrs[ErrorAttribute]; !taken && len(attrs) < maxAttributes {
		attrs[ErrorAttribute] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(reason)}
	}
	in := &awssqs.SendMessageInput{QueueUrl: aws.String(c.cfg.DeadLetterQueueURL), MessageBody: m.Body, MessageAttributes: attrs}
	if strings.HasSuffix(c.cfg.DeadLetterQueueURL, ".fifo") {
		// A FIFO queue needs a group; the message id deduplicates a send retried after a crash.
		in.MessageGroupId = aws.String("sluice-dead-letters")
		in.MessageDeduplicationId = m.MessageId
	}
	if _, err := cl.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("sqs: sending message %s to the dead-letter queue %s: %w", aws.ToString(m.MessageId), c.cfg.DeadLetterQueueURL, err)
	}
	return nil
}

// pollLag reports the queue depth every lagInterval until ctx ends.
func (c *consumer) pollLag(ctx context.Context, cl *awssqs.Client, h broker.Handler) {
	t := c.clock.NewTimer(c.lagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		n, err := c.depth(ctx, cl)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Debug("sqs: polling the queue depth", "source", c.src.UID, "err", err)
			n = -1
		}
		h.SetLag(n)
		t.Reset(c.lagInterval)
	}
}

// depth is the queue's ApproximateNumberOfMessages (visible messages, as SQS counts them).
func (c *consumer) depth(ctx context.Context, cl *awssqs.Client) (int64, error) {
	const name = types.QueueAttributeNameApproximateNumberOfMessages
	out, err := cl.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(c.cfg.QueueURL), AttributeNames: []types.QueueAttributeName{name},
	})
	if err != nil {
		return -1, fmt.Errorf("sqs: reading the attributes of %s: %w", c.cfg.QueueURL, err)
	}
	n, err := strconv.ParseInt(out.Attributes[string(name)], 10, 64)
	if err != nil {
		return -1, fmt.Errorf("sqs: %s of %s: %w", name, c.cfg.QueueURL, err)
	}
	return n, nil
}

// toMessage maps an SQS message: the MessageId is the id, attributes are headers.
func toMessage(m *types.Message) broker.Message {
	out := broker.Message{ID: aws.ToString(m.MessageId), Body: []byte(aws.ToString(m.Body))}
	if len(m.MessageAttributes) > 0 {
		out.Headers = make(map[string]string, len(m.MessageAttributes))
		for k, v := range m.MessageAttributes {
			switch {
			case v.StringValue != nil:
				out.Headers[k] = *v.StringValue
			case v.BinaryValue != nil:
				out.Headers[k] = base64.StdEncoding.EncodeToString(v.BinaryValue)
			}
		}
	}
	return out
}
