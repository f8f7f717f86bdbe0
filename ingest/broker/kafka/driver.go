package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/model"
)

// Headers a dead-lettered record carries besides its own.
const (
	HeaderError     = broker.DeadLetterErrorKey
	HeaderMessageID = broker.DeadLetterMessageIDKey
)

const (
	// maxPoll bounds one batch: a batch holds rebalances back until it is committed, so it must
	// publish well within the group's rebalance timeout (60 s).
	maxPoll = 500
	// sessionTimeout is how long the group waits for a member that stopped heartbeating (a node
	// killed, a leader gone) before giving its partitions to the next consumer; the group
	// protocol's minimum is 6 s.
	sessionTimeout = 10 * time.Second
	// maxErrorPolls is how many polls in a row may return only errors before Run gives up and the
	// Manager reconnects with backoff; kgo retries each failure itself in between.
	maxErrorPolls = 10
	// leaveTimeout bounds the LeaveGroup sent when Run stops, so an unreachable cluster cannot hold
	// the stop up; the group then drops the member after sessionTimeout.
	leaveTimeout = 5 * time.Second
)

// Driver is the Kafka broker.Driver.
type Driver struct{}

var _ broker.Driver = Driver{}

// Check validates a kafka source's section.
func (Driver) Check(src *model.Source) error {
	k := kafkaSection(src)
	if k == nil {
		return errors.New("broker.kafka: required for a kafka source")
	}
	if len(k.Brokers) == 0 {
		return errors.New("broker.kafka.brokers: at least one host:port is required")
	}
	for _, b := range k.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			return fmt.Errorf("broker.kafka.brokers: %q: %w", b, err)
		}
		if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("broker.kafka.brokers: %q is not host:port", b)
		}
	}
	if len(k.Topics) == 0 {
		return errors.New("broker.kafka.topics: at least one topic is required")
	}
	for _, t := range k.Topics {
		if err := checkTopic(t); err != nil {
			return fmt.Errorf("broker.kafka.topics: %w", err)
		}
	}
	if k.DeadLetterTopic != "" {
		if err := checkTopic(k.DeadLetterTopic); err != nil {
			return fmt.Errorf("broker.kafka.dead_letter_topic: %w", err)
		}
		for _, t := range k.Topics {
			if t == k.DeadLetterTopic {
				return fmt.Errorf("broker.kafka.dead_letter_topic: %q is also consumed: rejected records would come back forever", t)
			}
		}
	}
	if len(k.ConsumerGroup) > 255 {
		return fmt.Errorf("broker.kafka.consumer_group: %d characters, at most 255", len(k.ConsumerGroup))
	}
	switch k.StartOffset {
	case "", "earliest", "latest":
	default:
		return fmt.Errorf("broker.kafka.start_offset: %q is not earliest or latest", k.StartOffset)
	}
	if _, err := saslMechanism(k.SASL); err != nil {
		return err
	}
	if _, err := broker.TLSConfig(k.TLS); err != nil {
		return fmt.Errorf("broker.kafka.%w", err)
	}
	return nil
}

// checkTopic applies Kafka's topic name rules.
func checkTopic(t string) error {
	if t == "" || t == "." || t == ".." || len(t) > 249 {
		return fmt.Errorf("%q is not a valid topic name", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: topic names hold only ASCII letters, digits, '.', '_' and '-'", t)
		}
	}
	return nil
}

// saslMechanism returns the client mechanism for s (nil for none).
func saslMechanism(s *model.SASL) (sasl.Mechanism, error) {
	if s == nil {
		return nil, nil
	}
	if s.Username == "" || s.Password == "" {
		return nil, errors.New("broker.kafka.sasl: username and password are required")
	}
	switch strings.ToLower(s.Mechanism) {
	case "plain":
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("broker.kafka.sasl.mechanism: %q is not plain, scram-sha-256 or scram-sha-512", s.Mechanism)
}

func kafkaSection(src *model.Source) *model.KafkaSource {
	if src.Broker == nil {
		return nil
	}
	return src.Broker.Kafka
}

// Open returns src's consumer; it connects in Run.
func (Driver) Open(src *model.Source, log *slog.Logger) (broker.Consumer, error) {
	k := kafkaSection(src)
	if k == nil {
		return nil, errors.New("kafka: source has no kafka section")
	}
	group := k.ConsumerGroup
	if group == "" {
		group = broker.DefaultGroup(src)
	}
	reset := kgo.NewOffset().AtStart()
	if k.StartOffset == "latest" {
		reset = kgo.NewOffset().AtEnd()
	}
	c := &consumer{cfg: k, log: log, maxPoll: maxPoll, lag: map[partition]*position{}}
	c.opts = []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...),
		kgo.ClientID("sluice"),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(k.Topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(sessionTimeout),
		kgo.OnPartitionsRevoked(c.forget),
		kgo.OnPartitionsLost(c.forget),
		kgo.WithLogger(logger{log}),
	}
	tlsCfg, err := broker.TLSConfig(k.TLS)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if tlsCfg != nil {
		c.opts = append(c.opts, kgo.DialTLSConfig(tlsCfg))
	}
	mech, err := saslMechanism(k.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if mech != nil {
		c.opts = append(c.opts, kgo.SASL(mech))
	}
	return c, nil
}

type partition struct {
	topic string
	part  int32
}

// position is what the consumer knows of one owned partition.
type position struct {
	next int64 // the next offset to consume, -1 before the first record
	high int64 // the high watermark of the last fetch, -1 unknown
}

// consumer is one Run-able group member; Run may be called again after it returned.
type consumer struct {
	cfg     *model.KafkaSource
	opts    []kgo.Opt
	log     *slog.Logger
	maxPoll int

	mu  sync.Mutex // guards lag: kgo calls forget from its own goroutine
	lag map[partition]*position
}

var _ broker.Consumer = (*consumer)(nil)

// Run consumes until ctx ends (nil) or the cluster fails it (an error).
func (c *consumer) Run(ctx context.Context, h broker.Handler) error {
	cl, err := kgo.NewClient(c.opts...)
	if err != nil {
		return fmt.Errorf("kafka: client for %v: %w", c.cfg.Brokers, err)
	}
	defer c.close(cl)
	if err := cl.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kafka: reaching %v: %w", c.cfg.Brokers, err)
	}
	errorPolls := 0
	for {
		fetches := cl.PollRecords(ctx, c.maxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		records := fetches.Records()
		var firstErr error
		fetches.EachError(func(topic string, p int32, err error) {
			c.log.Warn("kafka: fetch failed", "topic", topic, "partition", p, "err", err)
			if firstErr == nil {
				firstErr = fmt.Errorf("topic %s partition %d: %w", topic, p, err)
			}
		})
		if len(records) > 0 || firstErr == nil {
			errorPolls = 0
		} else if errorPolls++; errorPolls >= maxErrorPolls {
			return fmt.Errorf("kafka: %d polls in a row failed, the last with %w", errorPolls, firstErr)
		}
		if len(records) > 0 {
			if err := c.handle(ctx, cl, h, records); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		c.noteLag(fetches, h)
		cl.AllowRebalance()
	}
}

// handle processes one polled batch and commits it. Until it returns, the group cannot move the
// batch's partitions (BlockRebalanceOnPoll), so the commit is for partitions this member owns.
// On error nothing is committed.
func (c *consumer) handle(ctx context.Context, cl *kgo.Client, h broker.Handler, records []*kgo.Record) error {
	msgs := make([]broker.Message, len(records))
	for i, r := range records {
		msgs[i] = broker.Message{ID: MessageID(r), Body: r.Value, Headers: headers(r)}
	}
	verdicts, err := h.Process(ctx, msgs)
	if err != nil {
		return fmt.Errorf("kafka: processing %d records: %w", len(records), err)
	}
	if c.cfg.DeadLetterTopic != "" {
		var dead []*kgo.Record
		for i, v := range verdicts {
			if v.Rejected {
				dead = append(dead, deadLetter(c.cfg.DeadLetterTopic, records[i], msgs[i].ID, v.Reason))
			}
		}
		if len(dead) > 0 {
			if err := cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
				return fmt.Errorf("kafka: producing %d dead letters to %s: %w", len(dead), c.cfg.DeadLetterTopic, err)
			}
		}
	}
	if err := cl.CommitRecords(ctx, records...); err != nil {
		return fmt.Errorf("kafka: committing %d records (%s ...): %w", len(records), msgs[0].ID, err)
	}
	return nil
}

// MessageID is a record's broker.Message ID: topic/partition/offset.
func MessageID(r *kgo.Record) string {
	return r.Topic + "/" + strconv.FormatInt(int64(r.Partition), 10) + "/" + strconv.FormatInt(r.Offset, 10)
}

// headers maps a record's headers; of repeated keys the last wins.
func headers(r *kgo.Record) map[string]string {
	if len(r.Headers) == 0 {
		return nil
	}
	m := make(map[string]string, len(r.Headers))
	for _, hd := range r.Headers {
		m[hd.Key] = string(hd.Value)
	}
	return m
}

func deadLetter(topic string, r *kgo.Record, id, reason string) *kgo.Record {
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+2)
	for _, hd := range r.Headers {
		if hd.Key != HeaderError && hd.Key != HeaderMessageID {
			hs = append(hs, hd)
		}
	}
	hs = append(hs, kgo.RecordHeader{Key: HeaderError, Value: []byte(reason)}, kgo.RecordHeader{Key: HeaderMessageID, Value: []byte(id)})
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hs}
}

// noteLag updates the positions of the fetched partitions and reports the total lag.
func (c *consumer) noteLag(fs kgo.Fetches, h broker.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		key := partition{p.Topic, p.Partition}
		pos := c.lag[key]
		if pos == nil {
			pos = &position{next: -1, high: -1}
			c.lag[key] = pos
		}
		if n := len(p.Records); n > 0 {
			pos.next = p.Records[n-1].Offset + 1
		}
		if p.HighWatermark >= 0 {
			pos.high = p.HighWatermark
		}
	})
	var total int64
	known := false
	for _, pos := range c.lag {
		if pos.next >= 0 && pos.high >= 0 {
			total += max(pos.high-pos.next, 0)
			known = true
		}
	}
	if known {
		h.SetLag(total)
	}
}

// forget drops partitions the group took away: their lag is another member's now.
func (c *consumer) forget(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range lost {
		for _, p := range parts {
			delete(c.lag, partition{topic, p})
		}
	}
}

// close leaves the group without committing anything (auto-commit is off, so the revoke that
// leaving causes commits nothing) and closes the client.
func (c *consumer) close(cl *kgo.Client) {
	cl.AllowRebalance()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if err := cl.LeaveGroupContext(ctx); err != nil {
		c.log.Debug("kafka: leaving the group", "err", err)
	}
	cl.Close()
}

// logger passes kgo's warnings and errors to slog.
type logger struct{ log *slog.Logger }

func (l logger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l logger) Log(level kgo.LogLevel, msg string, kv ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	l.log.Log(context.Background(), lv, "kafka: "+msg, kv...)
}
