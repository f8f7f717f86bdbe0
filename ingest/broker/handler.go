package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
)

// Publisher is the publish path every protocol shares (api.Server).
type Publisher interface {
	// Publish stores an event and returns once it is committed (see api.Server.Publish).
	Publish(ctx context.Context, projectID string, in *api.PublishRequest) (*api.Published, error)
	// RecordDeadLetters commits records of messages that could not become events.
	RecordDeadLetters(ctx context.Context, letters []model.DeadLetter) error
}

// maxDeadLetterBody is how much of a rejected message's body its record keeps.
const maxDeadLetterBody = 64 << 10

// Stats are one source's counters. Fields are updated atomically by the handler and consumer.
type Stats struct {
	Published    atomic.Uint64 // messages that became new events
	Duplicates   atomic.Uint64 // messages whose event already existed (a redelivery)
	DeadLettered atomic.Uint64 // messages rejected and recorded
	Retries      atomic.Uint64 // publishes retried because Sluice could not commit them yet
	Restarts     atomic.Uint64 // consumer runs that ended in an error
	Lag          atomic.Int64  // messages waiting in the broker, -1 unknown
	Running      atomic.Bool   // a consumer is connected and running on this node
}

// handler is the Handler of one source.
type handler struct {
	src      *model.Source
	pub      Publisher
	clock    clock.Clock
	log      *slog.Logger
	maxBytes int
	retryMin time.Duration
	retryMax time.Duration
	stats    *Stats
	sem      chan struct{} // publish slots shared by concurrent Process calls: the source's workers
}

var _ Handler = (*handler)(nil)

func (h *handler) SetLag(n int64) { h.stats.Lag.Store(n) }

func (h *handler) Process(ctx context.Context, msgs []Message) ([]Verdict, error) {
	verdicts := make([]Verdict, len(msgs))
	todo := make([]int, len(msgs))
	for i := range todo {
		todo[i] = i
	}
	backoff := h.retryMin
	for {
		retry, err := h.publishAll(ctx, msgs, todo, verdicts)
		if err != nil {
			return nil, err
		}
		if len(retry) == 0 {
			break
		}
		h.stats.Retries.Add(uint64(len(retry)))
		if err := h.wait(ctx, &backoff); err != nil {
			return nil, err
		}
		todo = retry
	}
	var letters []model.DeadLetter
	for i := range verdicts {
		if verdicts[i].Rejected {
			letters = append(letters, h.letter(&msgs[i], verdicts[i].Reason))
		}
	}
	if len(letters) == 0 {
		return verdicts, nil
	}
	backoff = h.retryMin
	for {
		err := h.pub.RecordDeadLetters(ctx, letters)
		if err == nil {
			break
		}
		if _, msg, client := api.ClientError(err); client {
			// The source went away under us (deleted with its project): nothing to record into,
			// and nothing will consume it again.
			h.log.Warn("broker: dead letters not recorded", "source", h.src.UID, "err", msg)
			break
		}
		h.log.Warn("broker: recording dead letters, will retry", "source", h.src.UID, "err", err)
		if err := h.wait(ctx, &backoff); err != nil {
			return nil, err
		}
	}
	h.stats.DeadLettered.Add(uint64(len(letters)))
	return verdicts, nil
}

// publishAll publishes msgs[i] for every i in todo, workers at a time, filling verdicts, and returns
// the indices to try again (Sluice could not commit them yet). It returns an error only when ctx
// ended.
func (h *handler) publishAll(ctx context.Context, msgs []Message, todo []int, verdicts []Verdict) ([]int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards retry
		retry []int
	)
	for _, i := range todo {
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-h.sem; wg.Done() }()
			v, again := h.publishOne(ctx, &msgs[i])
			if again {
				mu.Lock()
				retry = append(retry, i)
				mu.Unlock()
				return
			}
			verdicts[i] = v
		}(i)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return retry, nil
}

// publishOne publishes one message; again means the failure was Sluice's and it should be retried.
func (h *handler) publishOne(ctx context.Context, m *Message) (v Verdict, again bool) {
	in, _, err := Decode(h.src, m, h.maxBytes)
	if err != nil {
		return Verdict{Rejected: true, Reason: err.Error()}, false
	}
	res, err := h.pub.Publish(ctx, h.src.ProjectID, in)
	if err != nil {
		if code, msg, client := api.ClientError(err); client && code != 408 && code != 429 {
			return Verdict{Rejected: true, Reason: msg}, false
		}
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			h.log.Debug("broker: publish failed, will retry", "source", h.src.UID, "message", m.ID, "err", err)
		}
		return Verdict{}, true
	}
	if res.Duplicate {
		h.stats.Duplicates.Add(1)
	} else {
		h.stats.Published.Add(1)
	}
	return Verdict{}, false
}

// wait sleeps for *backoff (doubling it up to retryMax) or until ctx ends.
func (h *handler) wait(ctx context.Context, backoff *time.Duration) error {
	t := h.clock.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(*backoff*2, h.retryMax)
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *handler) letter(m *Message, reason string) model.DeadLetter {
	body, cut := m.Body, false
	if len(body) > maxDeadLetterBody {
		body, cut = body[:maxDeadLetterBody], true
	}
	l := model.DeadLetter{
		ProjectID: h.src.ProjectID, SourceID: h.src.UID, MessageID: m.ID, Reason: reason,
		Headers: m.Headers, Body: append(model.EventData(nil), body...), Truncated: cut,
		DeadLettered: DeadLetterTarget(h.src),
	}
	return l
}

// The header (or attribute) names every driver puts on a message it sends to the broker's dead-letter
// destination: why Sluice rejected it, and the broker message id it had (drivers whose dead letters
// keep the original id leave the second out). docs/brokers.md documents them per broker.
const (
	DeadLetterErrorKey     = "sluice-error"
	DeadLetterMessageIDKey = "sluice-message-id"
)

// DeadLetterTarget names where a source's consumer sends rejected messages ("" when it only
// records them).
func DeadLetterTarget(src *model.Source) string {
	b := src.Broker
	switch {
	case b == nil:
		return ""
	case b.Kafka != nil && b.Kafka.DeadLetterTopic != "":
		return "kafka topic " + b.Kafka.DeadLetterTopic
	case b.NATS != nil && b.NATS.DeadLetterSubject != "":
		return "nats subject " + b.NATS.DeadLetterSubject
	case b.AMQP != nil && b.AMQP.DeadLetterExchange != "":
		return "amqp exchange " + b.AMQP.DeadLetterExchange
	case b.AMQP != nil:
		return fmt.Sprintf("amqp reject of queue %s (its x-dead-letter-exchange, if any)", b.AMQP.Queue)
	case b.SQS != nil && b.SQS.DeadLetterQueueURL != "":
		return "sqs queue " + b.SQS.DeadLetterQueueURL
	case b.PubSub != nil && b.PubSub.DeadLetterTopic != "":
		return "pubsub topic " + b.PubSub.DeadLetterTopic
	}
	return ""
}
