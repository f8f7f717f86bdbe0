package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/model"
)

// Headers a dead letter carries besides the message's own.
const (
	HeaderError     = broker.DeadLetterErrorKey
	HeaderMessageID = broker.DeadLetterMessageIDKey
)

const (
	// maxBatch bounds the messages handed to one Process call.
	maxBatch = 256
	// defaultAckWait is the consumer's AckWait when the source names none.
	defaultAckWait = 30 * time.Second
	maxAckWait     = time.Hour
	// connectTimeout bounds the dial of each server URL.
	connectTimeout = 5 * time.Second
	// maxReason caps the reason sent with Term: it travels in a JetStream advisory.
	maxReason = 256
)

// Driver is the NATS JetStream broker.Driver.
type Driver struct{}

var _ broker.Driver = Driver{}

func natsSection(src *model.Source) *model.NATSSource {
	if src.Broker == nil {
		return nil
	}
	return src.Broker.NATS
}

// Check validates a nats source's section.
func (Driver) Check(src *model.Source) error {
	n := natsSection(src)
	if n == nil {
		return errors.New("broker.nats: required for a nats source")
	}
	if len(n.URLs) == 0 {
		return errors.New("broker.nats.urls: at least one server URL is required")
	}
	for _, raw := range n.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("broker.nats.urls: %q: %w", raw, err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("broker.nats.urls: %q: scheme must be nats, tls, ws or wss", raw)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("broker.nats.urls: %q has no host", raw)
		}
	}
	if err := checkName(n.Stream); err != nil {
		return fmt.Errorf("broker.nats.stream: %w", err)
	}
	if n.Durable != "" {
		if err := checkName(n.Durable); err != nil {
			return fmt.Errorf("broker.nats.durable: %w", err)
		}
	}
	if n.Subject != "" {
		if err := checkSubject(n.Subject, true); err != nil {
			return fmt.Errorf("broker.nats.subject: %w", err)
		}
	}
	if n.DeadLetterSubject != "" {
		if err := checkSubject(n.DeadLetterSubject, false); err != nil {
			return fmt.Errorf("broker.nats.dead_letter_subject: %w", err)
		}
	}
	if (n.Username == "") != (n.Password == "") {
		return errors.New("broker.nats: username and password go together")
	}
	if n.Token != "" && n.Username != "" {
		return errors.New("broker.nats: token and username/password are exclusive")
	}
	if n.AckWait < 0 || time.Duration(n.AckWait)*time.Second > maxAckWait {
		return fmt.Errorf("broker.nats.ack_wait: %d seconds is outside 0..%d", n.AckWait, int(maxAckWait/time.Second))
	}
	if _, err := broker.TLSConfig(n.TLS); err != nil {
		return fmt.Errorf("broker.nats.%w", err)
	}
	return nil
}

// checkName applies JetStream's stream and consumer name rules.
func checkName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > 255 || strings.ContainsAny(s, " \t\r\n.*>/\\") {
		return fmt.Errorf("%q: a name has at most 255 characters and no whitespace, '.', '*', '>', '/' or '\\'", s)
	}
	return nil
}

// checkSubject checks a subject's tokens; wild allows '*' and a final '>'.
func checkSubject(s string, wild bool) error {
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q: subjects hold no whitespace", s)
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("%q: empty token", s)
		case (tok == "*" || tok == ">") && !wild:
			return fmt.Errorf("%q: no wildcards here", s)
		case tok == ">" && i != len(toks)-1:
			return fmt.Errorf("%q: '>' only ends a subject", s)
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%q: a wildcard is a whole token", s)
		}
	}
	return nil
}

// Open returns src's consumer; it connects in Run.
func (Driver) Open(src *model.Source, log *slog.Logger) (broker.Consumer, error) {
	n := natsSection(src)
	if n == nil {
		return nil, errors.New("nats: source has no nats section")
	}
	durable := n.Durable
	if durable == "" {
		durable = broker.DefaultGroup(src)
	}
	ackWait := defaultAckWait
	if n.AckWait > 0 {
		ackWait = time.Duration(n.AckWait) * time.Second
	}
	opts := []nats.Option{nats.Name("sluice source " + src.UID), nats.Timeout(connectTimeout)}
	switch {
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token))
	case n.Username != "":
		opts = append(opts, nats.UserInfo(n.Username, n.Password))
	}
	tlsCfg, err := broker.TLSConfig(n.TLS)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	return &consumer{
		cfg: n, log: log, opts: opts, maxBatch: maxBatch,
		consumer: jetstream.ConsumerConfig{
			Durable: durable, FilterSubject: n.Subject, AckPolicy: jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy, AckWait: ackWait, MaxDeliver: -1,
		},
	}, nil
}

// consumer is one source's Run-able consumer; Run may be called again after it returned.
type consumer struct {
	cfg      *model.NATSSource
	log      *slog.Logger
	opts     []nats.Option
	consumer jetstream.ConsumerConfig
	maxBatch int
}

var _ broker.Consumer = (*consumer)(nil)

// next is one result of the message iterator.
type next struct {
	msg jetstream.Msg
	err error
}

// Run consumes until ctx ends (nil) or the server fails it (an error).
func (c *consumer) Run(ctx context.Context, h broker.Handler) error {
	nc, err := nats.Connect(strings.Join(c.cfg.URLs, ","), c.opts...)
	if err != nil {
		return fmt.Errorf("nats: connecting to %v: %w", c.cfg.URLs, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.consumer)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("nats: consumer %s on stream %s: %w", c.consumer.Durable, c.cfg.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * c.maxBatch))
	if err != nil {
		return fmt.Errorf("nats: pulling from consumer %s: %w", c.consumer.Durable, err)
	}
	// One goroutine reads the iterator so the loop below can wait on ctx too and take whatever
	// has arrived as one batch. It ends when the iterator is drained and closed.
	ch := make(chan next, c.maxBatch)
	go func() {
		defer close(ch)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			ch <- next{m, err}
		}
	}()
	var unacked []jetstream.Msg // the batch in hand, Nak'ed if Run stops before acking it
	defer func() {
		// Hand back what was pulled but not acked, for the next consumer to get at once.
		it.Drain()
		for _, m := range unacked {
			_ = m.Nak()
		}
		for n := range ch {
			if n.msg != nil {
				_ = n.msg.Nak()
			}
		}
		_ = nc.Flush()
	}()
	var pending error // an iterator error met while filling a batch, returned after it
	for pending == nil {
		unacked = unacked[:0]
		select {
		case <-ctx.Done():
			return nil
		case n, ok := <-ch:
			if !ok {
				return errors.New("nats: message iterator closed")
			}
			if n.err != nil {
				return fmt.Errorf("nats: reading consumer %s: %w", c.consumer.Durable, n.err)
			}
			unacked = append(unacked, n.msg)
		}
	fill:
		for len(unacked) < c.maxBatch {
			select {
			case n, ok := <-ch:
				if !ok {
					pending = errors.New("nats: message iterator closed")
					break fill
				}
				if n.err != nil {
					pending = fmt.Errorf("nats: reading consumer %s: %w", c.consumer.Durable, n.err)
					break fill
				}
				unacked = append(unacked, n.msg)
			default:
				break fill
			}
		}
		if err := c.handle(ctx, js, nc, h, unacked); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		unacked = unacked[:0]
	}
	return pending
}

// handle processes one batch and acks (or dead-letters and terminates) each message. On error the
// messages not yet acked are left to the caller.
func (c *consumer) handle(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, h broker.Handler, batch []jetstream.Msg) error {
	msgs := make([]broker.Message, len(batch))
	var lag uint64
	for i, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("nats: message on %s: %w", m.Subject(), err)
		}
		msgs[i] = broker.Message{ID: MessageID(md), Body: m.Data(), Headers: headers(m.Headers())}
		lag = md.NumPending
	}
	stop := c.keepAlive(batch)
	verdicts, err := h.Process(ctx, msgs)
	stop()
	if err != nil {
		return fmt.Errorf("nats: processing %d messages: %w", len(batch), err)
	}
	for i, v := range verdicts {
		m := batch[i]
		if !v.Rejected {
			if err := m.Ack(); err != nil {
				return fmt.Errorf("nats: ack of %s: %w", msgs[i].ID, err)
			}
			continue
		}
		if c.cfg.DeadLetterSubject != "" {
			if err := c.deadLetter(ctx, js, nc, m, msgs[i].ID, v.Reason); err != nil {
				return err
			}
		}
		reason := v.Reason
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		if err := m.TermWithReason(reason); err != nil {
			return fmt.Errorf("nats: terminating %s: %w", msgs[i].ID, err)
		}
	}
	h.SetLag(int64(lag))
	return nil
}

// keepAlive tells the server, every third of AckWait until stop is called, that batch is still
// being worked on, so a slow publish is not redelivered under the consumer.
func (c *consumer) keepAlive(batch []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.consumer.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range batch {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// deadLetter publishes a rejected message to the dead-letter subject: through JetStream, acked by
// the stream that captures the subject, or as a flushed plain message when no stream does.
func (c *consumer) deadLetter(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, m jetstream.Msg, id, reason string) error {
	out := nats.NewMsg(c.cfg.DeadLetterSubject)
	out.Data = m.Data()
	for k, vs := range m.Headers() {
		if k != HeaderError && k != HeaderMessageID && k != "Nats-Msg-Id" {
			out.Header[k] = vs
		}
	}
	out.Header.Set(HeaderError, reason)
	out.Header.Set(HeaderMessageID, id)
	// Ask whether a stream captures the subject rather than try a JetStream publish first: with a
	// plain subscriber on the subject (and no stream), that publish is delivered to the subscriber,
	// which never answers, so it would wait out the publish timeout and fail.
	// The plain path's flush refuses a context without a deadline, and no step here should hang.
	ctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
	defer cancel()
	_, err := js.StreamNameBySubject(ctx, c.cfg.DeadLetterSubject)
	switch {
	case err == nil:
		_, err = js.PublishMsg(ctx, out)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if err = nc.PublishMsg(out); err == nil {
			err = nc.FlushWithContext(ctx)
		}
	}
	if err != nil {
		return fmt.Errorf("nats: publishing %s to dead-letter subject %s: %w", id, c.cfg.DeadLetterSubject, err)
	}
	return nil
}

// deadLetterTimeout bounds publishing one dead letter; a failure fails the batch, which the
// broker redelivers.
const deadLetterTimeout = 10 * time.Second

// MessageID is a message's broker.Message ID: stream/stream sequence.
func MessageID(md *jetstream.MsgMetadata) string {
	return md.Stream + "/" + strconv.FormatUint(md.Sequence.Stream, 10)
}

// headers maps a message's headers; of repeated values the last wins.
func headers(h nats.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string]string, len(h))
	for k, vs := range h {
		if len(vs) > 0 {
			m[k] = vs[len(vs)-1]
		}
	}
	return m
}
