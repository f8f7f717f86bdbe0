package amqp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
)

// Driver defaults.
const (
	DefaultBatchWait   = 5 * time.Millisecond
	DefaultLagInterval = 5 * time.Second
)

// HeaderError is the header naming why Sluice rejected a message republished to the dead-letter
// exchange.
const HeaderError = broker.DeadLetterErrorKey

const (
	// dialTimeout bounds the TCP connect and the TLS and AMQP handshakes, before heartbeats run,
	// unless the URL's connection_timeout (milliseconds) says otherwise.
	dialTimeout = 30 * time.Second
	heartbeat   = 10 * time.Second
	// maxShortStr is AMQP's limit on queue, exchange and routing key names.
	maxShortStr = 255
	// maxErrorHeader caps the sluice-error header (a reason can quote a long field).
	maxErrorHeader = 1024
)

// Driver consumes RabbitMQ queues. The zero value is ready to use.
type Driver struct {
	// BatchWait is how long a batch waits for more messages after its first (default 5 ms).
	BatchWait time.Duration
	// LagInterval is how often the queue depth is read for the lag gauge (default 5 s).
	LagInterval time.Duration
	// Clock times the batches and the lag polls (default the wall clock).
	Clock clock.Clock
}

var _ broker.Driver = Driver{}

// Check validates an amqp source's section without connecting. Its errors never quote the URL,
// which holds the password.
func (Driver) Check(src *model.Source) error {
	if src.Broker == nil || src.Broker.AMQP == nil {
		return errors.New("broker.amqp: required for an amqp source")
	}
	a := src.Broker.AMQP
	if err := checkURL(a.URL, a.TLS); err != nil {
		return err
	}
	if a.Queue == "" {
		return errors.New("broker.amqp.queue: required")
	}
	for _, f := range []struct{ name, v string }{
		{"queue", a.Queue}, {"dead_letter_exchange", a.DeadLetterExchange}, {"dead_letter_routing_key", a.DeadLetterRoutingKey},
	} {
		if len(f.v) > maxShortStr {
			return fmt.Errorf("broker.amqp.%s: %d bytes, AMQP allows %d", f.name, len(f.v), maxShortStr)
		}
	}
	if a.DeadLetterRoutingKey != "" && a.DeadLetterExchange == "" {
		return errors.New("broker.amqp.dead_letter_routing_key: set without dead_letter_exchange")
	}
	if _, err := broker.TLSConfig(a.TLS); err != nil {
		return fmt.Errorf("broker.amqp.%w", err)
	}
	return nil
}

// uriTLSParams are the client's URL parameters for TLS. The file ones would make it read files on
// the Sluice node, and the driver always passes its own TLS settings, which the client then uses
// instead of all four: a source's TLS settings belong in its tls section.
var uriTLSParams = []string{"cacertfile", "certfile", "keyfile", "server_name_indication"}

func checkURL(raw string, t *model.BrokerTLS) error {
	if raw == "" {
		return errors.New("broker.amqp.url: required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return fmt.Errorf("broker.amqp.url: %w", err)
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Errorf("broker.amqp.url: scheme %q is not amqp or amqps", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("broker.amqp.url: no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("broker.amqp.url: port %q is not 1..65535", p)
		}
	}
	for _, k := range uriTLSParams {
		if u.Query().Has(k) {
			return fmt.Errorf("broker.amqp.url: the %s parameter is not supported; TLS settings go in broker.amqp.tls", k)
		}
	}
	if _, err := amqp091.ParseURI(raw); err != nil {
		return fmt.Errorf("broker.amqp.url: %w", err)
	}
	if t != nil && t.Enabled && u.Scheme != "amqps" {
		return errors.New("broker.amqp.tls: enabled, but the url's scheme is amqp (use amqps://)")
	}
	return nil
}

// Open returns src's consumer; Run connects.
func (d Driver) Open(src *model.Source, log *slog.Logger) (broker.Consumer, error) {
	if err := d.Check(src); err != nil {
		return nil, err
	}
	c := &consumer{src: src, cfg: *src.Broker.AMQP, log: log, batchWait: d.BatchWait, lagInterval: d.LagInterval, clock: d.Clock, prefetch: broker.Workers(src)}
	if c.batchWait <= 0 {
		c.batchWait = DefaultBatchWait
	}
	if c.lagInterval <= 0 {
		c.lagInterval = DefaultLagInterval
	}
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.cfg.DeadLetterRoutingKey == "" {
		c.cfg.DeadLetterRoutingKey = c.cfg.Queue
	}
	u, _ := url.Parse(c.cfg.URL)                // Check parsed it
	c.addr, c.tls = u.Host, u.Scheme == "amqps" // url.Parse lowercases the scheme
	return c, nil
}

// consumer is one source's Run; a Run uses one connection, closed when it returns.
type consumer struct {
	src         *model.Source
	cfg         model.AMQPSource // DeadLetterRoutingKey defaulted
	addr        string           // host:port, for errors (the URL holds the password)
	tls         bool             // amqps
	log         *slog.Logger
	batchWait   time.Duration
	lagInterval time.Duration
	clock       clock.Clock
	prefetch    int
}

// errStopped ends Run with nil: ctx ended while a batch was in hand, which stays unacknowledged.
var errStopped = errors.New("amqp: stopped")

func (c *consumer) Run(ctx context.Context, h broker.Handler) error {
	err := c.run(ctx, h)
	if ctx.Err() != nil || errors.Is(err, errStopped) {
		return nil
	}
	return err
}

func (c *consumer) run(ctx context.Context, h broker.Handler) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("amqp: connect to %s: %w", c.addr, err)
	}
	lagCtx, stopLag := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopLag()
		// Closing the connection hands every unacknowledged delivery back to the queue, and ends
		// a lag poll blocked on the server.
		_ = conn.Close()
		wg.Wait()
	}()
	w := watch{conn: conn.NotifyClose(make(chan *amqp091.Error, 1)), lag: make(chan error, 1)}

	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", err)
	}
	w.ch = ch.NotifyClose(make(chan *amqp091.Error, 1))
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		return fmt.Errorf("amqp: qos prefetch %d: %w", c.prefetch, err)
	}
	var dl *deadLetterer
	if c.cfg.DeadLetterExchange != "" {
		if dl, err = openDeadLetterer(conn, c.cfg.DeadLetterExchange, c.cfg.DeadLetterRoutingKey); err != nil {
			return err
		}
		w.dl = dl.closed
	}
	// The lag channel's first passive declare also says plainly when the queue does not exist.
	lagCh, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open lag channel: %w", err)
	}
	q, err := lagCh.QueueDeclarePassive(c.cfg.Queue, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp: queue %q: %w", c.cfg.Queue, err)
	}
	h.SetLag(int64(q.Messages))
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pollLag(lagCtx, lagCh, h, w.lag)
	}()

	deliveries, err := ch.Consume(c.cfg.Queue, broker.DefaultGroup(c.src), false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp: consume queue %q: %w", c.cfg.Queue, err)
	}
	b := batcher{conn: nonce(), ch: ch, dl: dl, log: c.log}
	for {
		batch, err := c.collect(ctx, deliveries, &w)
		if err != nil {
			return err
		}
		if err := b.handle(ctx, h, batch); err != nil {
			return err
		}
	}
}

func (c *consumer) dial(ctx context.Context) (*amqp091.Connection, error) {
	tlsCfg, err := broker.TLSConfig(c.cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("broker.amqp.%w", err)
	}
	if tlsCfg == nil && c.tls {
		// Without this the client builds its TLS settings from the URL's file parameters.
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	timeout := dialTimeout
	if uri, err := amqp091.ParseURI(c.cfg.URL); err == nil && uri.ConnectionTimeout > 0 {
		timeout = time.Duration(uri.ConnectionTimeout) * time.Millisecond
	}
	props := amqp091.NewConnectionProperties()
	props.SetClientConnectionName("sluice source " + c.src.UID)
	var stop func() bool
	cfg := amqp091.Config{
		TLSClientConfig: tlsCfg,
		Heartbeat:       heartbeat,
		Properties:      props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Heartbeats start after the handshake; until then a deadline bounds a silent server
			// (the client clears it once the connection is open), and ctx ending cuts it short.
			if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
				nc.Close()
				return nil, err
			}
			stop = context.AfterFunc(ctx, func() { nc.Close() })
			return nc, nil
		},
	}
	conn, err := amqp091.DialConfig(c.cfg.URL, cfg)
	if stop != nil {
		stop()
	}
	return conn, err
}

// watch holds what ends a Run besides ctx.
type watch struct {
	conn, ch, dl <-chan *amqp091.Error // NotifyClose of the connection and channels; dl nil without one
	lag          chan error            // the lag poll's failure
}

// closed names why the deliveries stopped: the connection's or a channel's close error, or a
// cancelled consumer.
func (w *watch) closed() error {
	for _, c := range []struct {
		what string
		ch   <-chan *amqp091.Error
	}{{"connection", w.conn}, {"channel", w.ch}} {
		select {
		case e, ok := <-c.ch:
			if ok && e != nil {
				return fmt.Errorf("amqp: %s closed: %w", c.what, e)
			}
		default:
		}
	}
	return errors.New("amqp: the server cancelled the consumer or closed its channel (queue deleted?)")
}

// collect waits for a first delivery, then takes what arrives within batchWait, up to prefetch
// messages (RabbitMQ sends no more than that unacknowledged anyway).
func (c *consumer) collect(ctx context.Context, deliveries <-chan amqp091.Delivery, w *watch) ([]amqp091.Delivery, error) {
	var batch []amqp091.Delivery
	select {
	case d, ok := <-deliveries:
		if !ok {
			return nil, w.closed()
		}
		batch = append(batch, d)
	case <-ctx.Done():
		return nil, errStopped
	case e := <-w.conn:
		return nil, fmt.Errorf("amqp: connection closed: %w", closeErr(e))
	case e := <-w.ch:
		return nil, fmt.Errorf("amqp: channel closed: %w", closeErr(e))
	case e := <-w.dl:
		return nil, fmt.Errorf("amqp: dead-letter channel closed: %w", closeErr(e))
	case err := <-w.lag:
		return nil, err
	}
	t := c.clock.NewTimer(c.batchWait)
	defer t.Stop()
	for len(batch) < c.prefetch {
		select {
		case d, ok := <-deliveries:
			if !ok {
				// The channel is gone and its delivery tags with it: nothing here can be acked.
				return nil, w.closed()
			}
			batch = append(batch, d)
		case <-t.C():
			return batch, nil
		case <-ctx.Done():
			return nil, errStopped
		}
	}
	return batch, nil
}

// closeErr makes a NotifyClose value an error; a closed listener (nil) is a graceful close.
func closeErr(e *amqp091.Error) error {
	if e == nil {
		return errors.New("closed by the client")
	}
	return e
}

func (c *consumer) pollLag(ctx context.Context, ch *amqp091.Channel, h broker.Handler, errc chan<- error) {
	t := c.clock.NewTimer(c.lagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		q, err := ch.QueueDeclarePassive(c.cfg.Queue, false, false, false, false, nil)
		if err != nil {
			if ctx.Err() == nil {
				errc <- fmt.Errorf("amqp: queue %q depth: %w", c.cfg.Queue, err)
			}
			return
		}
		h.SetLag(int64(q.Messages))
		t.Reset(c.lagInterval)
	}
}

// batcher processes and settles batches on one consuming channel.
type batcher struct {
	conn string // this connection's nonce, for ids of messages without message-id
	ch   *amqp091.Channel
	dl   *deadLetterer // nil: rejected messages are nacked without requeue
	log  *slog.Logger
}

// message turns a delivery into the Handler's message.
func (b *batcher) message(d *amqp091.Delivery) broker.Message {
	id := d.MessageId
	if id == "" {
		// Unique to this delivery, so two messages never share an idempotency key; a redelivery
		// gets a new one (at-least-once, see doc.go).
		id = "delivery:" + b.conn + ":" + strconv.FormatUint(d.DeliveryTag, 10)
	}
	return broker.Message{ID: id, Body: d.Body, Headers: headers(d.Headers)}
}

// handle processes batch and settles every message in it, or none when it fails.
func (b *batcher) handle(ctx context.Context, h broker.Handler, batch []amqp091.Delivery) error {
	msgs := make([]broker.Message, len(batch))
	for i := range batch {
		msgs[i] = b.message(&batch[i])
	}
	verdicts, err := h.Process(ctx, msgs)
	if err != nil {
		if ctx.Err() != nil {
			return errStopped
		}
		return fmt.Errorf("amqp: process: %w", err)
	}
	if len(verdicts) != len(batch) {
		return fmt.Errorf("amqp: BUG: %d verdicts for %d messages", len(verdicts), len(batch))
	}
	// One multiple ack at the highest tag to ack settles the batch: earlier batches are settled,
	// later deliveries have higher tags, and the nacks below go out before it on the channel.
	var ackTag uint64
	for i, v := range verdicts {
		d := &batch[i]
		if !v.Rejected {
			ackTag = max(ackTag, d.DeliveryTag)
			continue
		}
		if b.dl != nil {
			routed, err := b.dl.publish(ctx, d, v.Reason)
			if err != nil {
				if ctx.Err() != nil {
					return errStopped
				}
				return fmt.Errorf("amqp: dead-letter message %q: %w", msgs[i].ID, err)
			}
			if routed {
				ackTag = max(ackTag, d.DeliveryTag)
				continue
			}
			b.log.Warn("amqp: dead-letter exchange has no route for the message; rejecting it to the queue's own dead-letter exchange instead",
				"exchange", b.dl.exchange, "routing_key", b.dl.key, "message", msgs[i].ID)
		}
		if err := b.ch.Nack(d.DeliveryTag, false, false); err != nil {
			return fmt.Errorf("amqp: nack message %q: %w", msgs[i].ID, err)
		}
	}
	if ackTag > 0 {
		if err := b.ch.Ack(ackTag, true); err != nil {
			return fmt.Errorf("amqp: ack through delivery %d: %w", ackTag, err)
		}
	}
	return nil
}

// headers flattens AMQP header values to strings. Nested tables and arrays (x-death, for one) are
// left out: no Sluice header takes them.
func headers(t amqp091.Table) map[string]string {
	if len(t) == 0 {
		return nil
	}
	out := make(map[string]string, len(t))
	for k, v := range t {
		switch v := v.(type) {
		case string:
			out[k] = v
		case []byte:
			out[k] = string(v)
		case time.Time:
			out[k] = v.UTC().Format(time.RFC3339)
		case nil:
			out[k] = ""
		case amqp091.Table, []any:
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}

// nonce is a random id for one connection.
func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// deadLetterer republishes rejected messages to the dead-letter exchange on a channel in confirm
// mode, one at a time: dead letters are rare, and one in flight makes a basic.return
// unambiguous.
type deadLetterer struct {
	ch       *amqp091.Channel
	exchange string
	key      string
	returns  chan amqp091.Return
	closed   <-chan *amqp091.Error
}

func openDeadLetterer(conn *amqp091.Connection, exchange, key string) (*deadLetterer, error) {
	// A passive declare of a missing exchange closes its channel, so it gets one of its own.
	probe, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel: %w", err)
	}
	if err := probe.ExchangeDeclarePassive(exchange, amqp091.ExchangeDirect, false, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("amqp: dead-letter exchange %q: %w", exchange, err)
	}
	_ = probe.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open dead-letter channel: %w", err)
	}
	d := &deadLetterer{
		ch: ch, exchange: exchange, key: key,
		closed: ch.NotifyClose(make(chan *amqp091.Error, 1)),
		// Room for the one return a publish can cause, so the client's reader never waits on it.
		returns: ch.NotifyReturn(make(chan amqp091.Return, 1)),
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("amqp: confirm mode on the dead-letter channel: %w", err)
	}
	return d, nil
}

// publish sends m to the dead-letter exchange and waits for RabbitMQ's confirm. routed is false
// when RabbitMQ returned it as unroutable (no queue bound for the key).
func (d *deadLetterer) publish(ctx context.Context, m *amqp091.Delivery, reason string) (routed bool, err error) {
	hdr := make(amqp091.Table, len(m.Headers)+1)
	for k, v := range m.Headers {
		hdr[k] = v
	}
	if len(reason) > maxErrorHeader {
		reason = reason[:maxErrorHeader]
	}
	hdr[HeaderError] = reason
	// Persistent, so a durable dead-letter queue keeps it across a broker restart; no Expiration
	// (the dead letter would expire) and no UserId (RabbitMQ refuses one that is not ours).
	p := amqp091.Publishing{
		Headers: hdr, ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
		DeliveryMode: amqp091.Persistent, Priority: m.Priority, CorrelationId: m.CorrelationId,
		ReplyTo: m.ReplyTo, MessageId: m.MessageId, Timestamp: m.Timestamp, Type: m.Type, AppId: m.AppId,
		Body: m.Body,
	}
	conf, err := d.ch.PublishWithDeferredConfirmWithContext(ctx, d.exchange, d.key, true, false, p)
	if err != nil {
		return false, fmt.Errorf("publish to exchange %q: %w", d.exchange, err)
	}
	acked, err := conf.WaitContext(ctx)
	if err != nil {
		return false, err
	}
	if !acked {
		return false, fmt.Errorf("exchange %q: RabbitMQ did not confirm the publish (nack or channel closed)", d.exchange)
	}
	// RabbitMQ sends basic.return before the confirm, and the client hands it over before it
	// resolves the confirm, so a return for this publish is already here.
	select {
	case _, ok := <-d.returns:
		return !ok, nil
	default:
		return true, nil
	}
}
