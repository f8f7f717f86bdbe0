package sqs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/ingest/broker/brokertest"
	"github.com/sluice-gw/sluice/ingest/broker/sqs/sqstest"
	"github.com/sluice-gw/sluice/model"
)

func TestCheck(t *testing.T) {
	valid := func() *model.SQSSource {
		return &model.SQSSource{QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/orders", Region: "eu-west-1"}
	}
	cases := []struct {
		name    string
		edit    func(q *model.SQSSource)
		wantErr string // "" valid
	}{
		{"minimal", func(*model.SQSSource) {}, ""},
		{"everything", func(q *model.SQSSource) {
			q.Endpoint, q.Protocol = "http://127.0.0.1:4100", "query"
			q.AccessKeyID, q.SecretAccessKey, q.SessionToken = "AKIA", "secret", "token"
			q.VisibilityTimeout = 120
			q.DeadLetterQueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq"
		}, ""},
		{"json protocol", func(q *model.SQSSource) { q.Protocol = "json" }, ""},
		{"no queue", func(q *model.SQSSource) { q.QueueURL = "" }, "queue_url: required"},
		{"queue not a URL", func(q *model.SQSSource) { q.QueueURL = "orders" }, "queue_url"},
		{"queue bad scheme", func(q *model.SQSSource) { q.QueueURL = "ftp://x/1/q" }, "not an http(s) URL"},
		{"no region", func(q *model.SQSSource) { q.Region = " " }, "region: required"},
		{"bad endpoint", func(q *model.SQSSource) { q.Endpoint = "127.0.0.1:4100" }, "endpoint"},
		{"key without secret", func(q *model.SQSSource) { q.AccessKeyID = "AKIA" }, "go together"},
		{"secret without key", func(q *model.SQSSource) { q.SecretAccessKey = "s" }, "go together"},
		{"token alone", func(q *model.SQSSource) { q.SessionToken = "t" }, "session_token"},
		{"negative visibility", func(q *model.SQSSource) { q.VisibilityTimeout = -1 }, "visibility_timeout"},
		{"visibility too long", func(q *model.SQSSource) { q.VisibilityTimeout = 43201 }, "visibility_timeout"},
		{"dead letters to itself", func(q *model.SQSSource) { q.DeadLetterQueueURL = q.QueueURL }, "consumed queue itself"},
		{"dead letter not a URL", func(q *model.SQSSource) { q.DeadLetterQueueURL = "dlq" }, "dead_letter_queue_url"},
		{"unknown protocol", func(q *model.SQSSource) { q.Protocol = "xml" }, "protocol"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := valid()
			tc.edit(q)
			err := Driver{}.Check(&model.Source{Type: model.SourceSQS, Broker: &model.BrokerConfig{SQS: q}})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	if err := (Driver{}).Check(&model.Source{Type: model.SourceSQS, Broker: &model.BrokerConfig{}}); err == nil {
		t.Error("Check without an sqs section passed")
	}
}

// fakeHandler records what Process got; decide gives each message's verdict (default: accepted).
type fakeHandler struct {
	decide func(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error)

	mu      sync.Mutex // guards the fields below
	calls   map[string]int
	msgs    map[string]broker.Message
	batches []int
	lag     atomic.Int64
	lagSet  atomic.Bool
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{calls: map[string]int{}, msgs: map[string]broker.Message{}}
}

func (h *fakeHandler) Process(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error) {
	// Counted on entry, so a message handed out again while an earlier Process still holds it
	// shows up as a second call.
	h.mu.Lock()
	h.batches = append(h.batches, len(msgs))
	for _, m := range msgs {
		h.calls[m.ID]++
		h.msgs[m.ID] = m
	}
	h.mu.Unlock()
	if h.decide != nil {
		return h.decide(ctx, msgs)
	}
	return make([]broker.Verdict, len(msgs)), nil
}

func (h *fakeHandler) SetLag(n int64) { h.lag.Store(n); h.lagSet.Store(true) }

func (h *fakeHandler) processed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

func source(q *model.SQSSource, workers int) *model.Source {
	return &model.Source{UID: "src1", ProjectID: "p1", Type: model.SourceSQS, Broker: &model.BrokerConfig{Workers: workers, SQS: q}}
}

func open(t *testing.T, src *model.Source) *consumer {
	t.Helper()
	if err := (Driver{}).Check(src); err != nil {
		t.Fatalf("Check: %v", err)
	}
	c, err := Driver{}.Open(src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	cc := c.(*consumer)
	cc.wait = 1 // short long polls keep shutdown quick
	cc.lagInterval = 100 * time.Millisecond
	return cc
}

// start runs c until the test ends (or stop is called) and returns stop, which waits for Run and
// returns its error.
func start(t *testing.T, c *consumer, h broker.Handler) (stop func() error) {
	return brokertest.Run(t, c, h)
}

// TestConsume: every message reaches Process once with its id and attributes, is deleted only
// after Process returned, and the rejected one lands in the dead-letter queue with the reason.
func TestConsume(t *testing.T) {
	srv := sqstest.Start(t)
	queue := srv.CreateQueue(t, "consume", 30)
	dlq := srv.CreateQueue(t, "consume-dlq", 30)

	const n = 35
	ids := map[string]int{}
	var badID string
	for i := range n {
		attrs := map[string]string(nil)
		if i%2 == 0 {
			attrs = map[string]string{"sluice-event-type": "order.header", "n": fmt.Sprint(i)}
		}
		body := fmt.Appendf(nil, `{"i":%d}`, i)
		if i == 17 {
			body = []byte("bad")
		}
		id := srv.Send(t, queue, body, attrs)
		ids[id] = i
		if i == 17 {
			badID = id
		}
	}

	h := newFakeHandler()
	h.decide = func(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error) {
		// One receiver: the batch being processed is exactly what SQS holds hidden, so nothing of
		// it was deleted early.
		if _, hidden := srv.Counts(t, queue); hidden != len(msgs) {
			t.Errorf("during Process of %d messages, %d are hidden in the queue", len(msgs), hidden)
		}
		v := make([]broker.Verdict, len(msgs))
		for i, m := range msgs {
			if string(m.Body) == "bad" {
				v[i] = broker.Verdict{Rejected: true, Reason: "body: invalid JSON"}
			}
		}
		return v, nil
	}
	c := open(t, source(srv.Section(queue, dlq, 30), 10))
	if c.receivers != 1 {
		t.Fatalf("workers 10 gave %d receivers, want 1", c.receivers)
	}
	stop := start(t, c, h)
	brokertest.WaitFor(t, "every message processed", func() bool { return h.processed() == n })
	brokertest.WaitFor(t, "the queue emptied", func() bool { all, _ := srv.Counts(t, queue); return all == 0 })
	brokertest.WaitFor(t, "a lag report of 0", func() bool { return h.lagSet.Load() && h.lag.Load() == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	h.mu.Lock()
	for id, i := range ids {
		if h.calls[id] != 1 {
			t.Errorf("message %d (%s) processed %d times", i, id, h.calls[id])
		}
		m := h.msgs[id]
		if i%2 == 0 && (m.Headers["sluice-event-type"] != "order.header" || m.Headers["n"] != fmt.Sprint(i)) {
			t.Errorf("message %d headers = %v", i, m.Headers)
		}
		if i%2 == 1 && len(m.Headers) != 0 {
			t.Errorf("message %d has headers %v, sent none", i, m.Headers)
		}
	}
	for _, b := range h.batches {
		if b > maxBatch {
			t.Errorf("a batch of %d messages", b)
		}
	}
	if len(h.batches) >= n {
		t.Errorf("%d messages came in %d batches: no batching", n, len(h.batches))
	}
	h.mu.Unlock()

	got := srv.Receive(t, dlq)
	if len(got) != 1 {
		t.Fatalf("dead-letter queue holds %d messages, want 1", len(got))
	}
	if aws.ToString(got[0].Body) != "bad" {
		t.Errorf("dead letter body %q", aws.ToString(got[0].Body))
	}
	if r := got[0].MessageAttributes[ErrorAttribute]; aws.ToString(r.StringValue) != "body: invalid JSON" {
		t.Errorf("dead letter %s = %q, want the reason", ErrorAttribute, aws.ToString(r.StringValue))
	}
	if _, ok := ids[badID]; !ok {
		t.Fatal("lost the bad message's id")
	}
}

// TestNoAckWithoutVerdict: when Process gives up (ctx ended) nothing is deleted; the messages
// come back after their visibility timeout with the same MessageIds, which is what a crash
// between receive and commit relies on.
func TestNoAckWithoutVerdict(t *testing.T) {
	srv := sqstest.Start(t)
	queue := srv.CreateQueue(t, "noack", 1)
	const n = 5
	sent := map[string]bool{}
	for i := range n {
		sent[srv.Send(t, queue, fmt.Appendf(nil, `{"i":%d}`, i), nil)] = true
	}

	first := newFakeHandler()
	first.decide = func(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error) {
		return nil, context.Canceled
	}
	c := open(t, source(srv.Section(queue, "", 1), 10))
	stop := start(t, c, first)
	brokertest.WaitFor(t, "the first consumer to give up on every message", func() bool { return first.processed() == n })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if all, _ := srv.Counts(t, queue); all != n {
		t.Fatalf("after Process failed, the queue holds %d messages, want all %d", all, n)
	}

	second := newFakeHandler()
	stop = start(t, open(t, source(srv.Section(queue, "", 1), 10)), second)
	brokertest.WaitFor(t, "redelivery to the second consumer", func() bool { return second.processed() == n })
	brokertest.WaitFor(t, "the queue emptied", func() bool { all, _ := srv.Counts(t, queue); return all == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	second.mu.Lock()
	defer second.mu.Unlock()
	for id := range sent {
		if second.calls[id] != 1 {
			t.Errorf("message %s redelivered %d times under the same id", id, second.calls[id])
		}
	}
}

// TestSlowProcessKeepsMessagesHidden: a Process that outlasts the visibility timeout several
// times over does not let another receiver take the same messages.
func TestSlowProcessKeepsMessagesHidden(t *testing.T) {
	srv := sqstest.Start(t)
	queue := srv.CreateQueue(t, "slow", 1)
	const n = 3
	for i := range n {
		srv.Send(t, queue, fmt.Appendf(nil, `{"i":%d}`, i), nil)
	}
	h := newFakeHandler()
	var slow atomic.Bool
	h.decide = func(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error) {
		if slow.CompareAndSwap(false, true) {
			// Simulates a publish that waits out a leader election: three timeouts long.
			t := time.NewTimer(3500 * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return make([]broker.Verdict, len(msgs)), nil
	}
	c := open(t, source(srv.Section(queue, "", 1), 40)) // four receivers compete
	stop := start(t, c, h)
	brokertest.WaitFor(t, "every message processed", func() bool { return h.processed() == n })
	brokertest.WaitFor(t, "the queue emptied", func() bool { all, _ := srv.Counts(t, queue); return all == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, k := range h.calls {
		if k != 1 {
			t.Errorf("message %s processed %d times", id, k)
		}
	}
}

// TestRunFailsOnMissingQueue: a queue that does not exist ends Run with SQS's error.
func TestRunFailsOnMissingQueue(t *testing.T) {
	srv := sqstest.Start(t)
	q := srv.Section(srv.Endpoint+"/100010001000/no-such-queue", "", 30)
	c := open(t, source(q, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Run(ctx, newFakeHandler())
	if err == nil || !strings.Contains(err.Error(), "no-such-queue") {
		t.Fatalf("Run = %v, want an error naming the queue", err)
	}
}
