package amqp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/ingest/broker/brokertest"
	"github.com/sluice-gw/sluice/model"
)

// These tests run against a real RabbitMQ: $SLUICE_TEST_AMQP_URL, by default the server .ci/run
// starts on 127.0.0.1:5672 (guest/guest). Each test declares queues and exchanges of its own and
// deletes them when it ends.

func testURL() string {
	if u := os.Getenv("SLUICE_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// redact hides a URL's password in test output.
func redact(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "$SLUICE_TEST_AMQP_URL"
	}
	return pu.Redacted()
}

// rabbit is a test's admin connection: it declares, publishes and inspects.
type rabbit struct {
	t    testing.TB
	url  string
	conn *amqp091.Connection
	ch   *amqp091.Channel
	name string // unique prefix of this test's queues and exchanges
}

func newRabbit(t testing.TB) *rabbit {
	t.Helper()
	if why := os.Getenv("SLUICE_TEST_AMQP_UNAVAILABLE"); why != "" {
		t.Skipf("RabbitMQ test skipped: %s", why)
	}
	u := testURL()
	conn, err := amqp091.Dial(u)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no RabbitMQ in CI at %s: .ci/run installs and starts Debian's rabbitmq-server: %v", redact(u), err)
		}
		t.Skipf("RabbitMQ test skipped: cannot connect to %s ($SLUICE_TEST_AMQP_URL; .ci/run installs and starts one): %v", redact(u), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	r := &rabbit{t: t, url: u, conn: conn, ch: ch, name: "sluice-test-" + nonce()}
	t.Cleanup(func() { conn.Close() })
	return r
}

// queue declares a queue of this test, deleted at cleanup.
func (r *rabbit) queue(suffix string, args amqp091.Table) string {
	r.t.Helper()
	name := r.name + "-" + suffix
	if _, err := r.ch.QueueDeclare(name, false, false, false, false, args); err != nil {
		r.t.Fatalf("declare queue %s: %v", name, err)
	}
	r.t.Cleanup(func() {
		// A fresh channel: the test may have broken r.ch.
		if ch, err := r.conn.Channel(); err == nil {
			ch.QueueDelete(name, false, false, false)
			ch.Close()
		}
	})
	return name
}

// exchange declares a fanout exchange of this test, bound to the queues given, deleted at cleanup.
func (r *rabbit) exchange(suffix string, queues ...string) string {
	r.t.Helper()
	name := r.name + "-" + suffix
	if err := r.ch.ExchangeDeclare(name, amqp091.ExchangeFanout, false, false, false, false, nil); err != nil {
		r.t.Fatalf("declare exchange %s: %v", name, err)
	}
	for _, q := range queues {
		if err := r.ch.QueueBind(q, "", name, false, nil); err != nil {
			r.t.Fatalf("bind %s to %s: %v", q, name, err)
		}
	}
	r.t.Cleanup(func() {
		if ch, err := r.conn.Channel(); err == nil {
			ch.ExchangeDelete(name, false, false)
			ch.Close()
		}
	})
	return name
}

func (r *rabbit) publish(queue string, msgs ...amqp091.Publishing) {
	r.t.Helper()
	confs := make([]*amqp091.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		c, err := r.ch.PublishWithDeferredConfirm("", queue, true, false, m)
		if err != nil {
			r.t.Fatal(err)
		}
		confs = append(confs, c)
	}
	for _, c := range confs {
		if !c.Wait() {
			r.t.Fatalf("publish to %s not confirmed", queue)
		}
	}
}

// depth is a queue's ready message count.
func (r *rabbit) depth(queue string) int {
	r.t.Helper()
	q, err := r.ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		r.t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// drain takes every message waiting in queue.
func (r *rabbit) drain(queue string) []amqp091.Delivery {
	r.t.Helper()
	var out []amqp091.Delivery
	for range 10000 {
		d, ok, err := r.ch.Get(queue, true)
		if err != nil {
			r.t.Fatalf("get %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
	r.t.Fatalf("queue %s does not drain", queue)
	return nil
}

func source(url, queue string, workers int, mod func(a *model.AMQPSource)) *model.Source {
	a := &model.AMQPSource{URL: url, Queue: queue}
	if mod != nil {
		mod(a)
	}
	return &model.Source{UID: "src-" + nonce(), ProjectID: "p1", Type: model.SourceAMQP,
		Broker: &model.BrokerConfig{Workers: workers, EventType: "t", AMQP: a}}
}

// fakeHandler rejects bodies containing "bad" and accepts the rest, recording what it saw.
type fakeHandler struct {
	// block, when set, is called at the start of Process; an error from it is Process's.
	block func(ctx context.Context, msgs []broker.Message) error

	mu      sync.Mutex // guards seen and batches
	seen    map[string]broker.Message
	batches []int
	lag     atomic.Int64
}

func newFakeHandler() *fakeHandler {
	h := &fakeHandler{seen: map[string]broker.Message{}}
	h.lag.Store(-2)
	return h
}

func (h *fakeHandler) Process(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error) {
	if h.block != nil {
		if err := h.block(ctx, msgs); err != nil {
			return nil, err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batches = append(h.batches, len(msgs))
	out := make([]broker.Verdict, len(msgs))
	for i, m := range msgs {
		h.seen[m.ID] = m
		if strings.Contains(string(m.Body), "bad") {
			out[i] = broker.Verdict{Rejected: true, Reason: "body: bad"}
		}
	}
	return out, nil
}

func (h *fakeHandler) SetLag(n int64) { h.lag.Store(n) }

func (h *fakeHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, d Driver, src *model.Source, h broker.Handler) *running {
	t.Helper()
	c, err := d.Open(src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx, h) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the Run and returns what it returned.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func TestCheck(t *testing.T) {
	const good = "amqp://u:secretpw@127.0.0.1:5672/vh"
	tlsOn := &model.BrokerTLS{Enabled: true}
	cases := []struct {
		name string
		src  *model.Source
		want string // substring of the error; "" for valid
	}{
		{"valid", source(good, "q", 0, nil), ""},
		{"valid amqps with tls", source("amqps://u:p@rabbit.example:5671/", "q", 0, func(a *model.AMQPSource) { a.TLS = tlsOn }), ""},
		{"valid amqps without tls section", source("amqps://rabbit.example/", "q", 0, nil), ""},
		{"valid dead-letter exchange and key", source(good, "q", 0, func(a *model.AMQPSource) { a.DeadLetterExchange, a.DeadLetterRoutingKey = "dlx", "k" }), ""},
		{"no section", &model.Source{Type: model.SourceAMQP, Broker: &model.BrokerConfig{}}, "broker.amqp: required"},
		{"no url", source("", "q", 0, nil), "broker.amqp.url: required"},
		{"bad scheme", source("http://127.0.0.1/", "q", 0, nil), `scheme "http"`},
		{"no host", source("amqp:///vh", "q", 0, nil), "no host"},
		{"bad port", source("amqp://127.0.0.1:99999/", "q", 0, nil), "port"},
		{"unparsable url hides the password", source("amqp://u:secretpw@127.0.0.1:x y/", "q", 0, nil), "broker.amqp.url"},
		{"file parameters", source("amqps://127.0.0.1/?cacertfile=/etc/passwd", "q", 0, nil), "cacertfile"},
		{"sni parameter", source("amqps://127.0.0.1/?server_name_indication=x", "q", 0, nil), "broker.amqp.tls"},
		{"valid client parameters", source("amqp://127.0.0.1/?heartbeat=5&connection_timeout=2000", "q", 0, nil), ""},
		{"bad heartbeat", source("amqp://127.0.0.1/?heartbeat=x", "q", 0, nil), "broker.amqp.url"},
		{"tls on plain amqp", source(good, "q", 0, func(a *model.AMQPSource) { a.TLS = tlsOn }), "use amqps://"},
		{"bad ca", source("amqps://127.0.0.1/", "q", 0, func(a *model.AMQPSource) {
			a.TLS = &model.BrokerTLS{Enabled: true, CAPEM: "nope"}
		}), "broker.amqp.tls.ca_pem"},
		{"no queue", source(good, "", 0, nil), "broker.amqp.queue: required"},
		{"long queue", source(good, strings.Repeat("q", 256), 0, nil), "broker.amqp.queue: 256 bytes"},
		{"long exchange", source(good, "q", 0, func(a *model.AMQPSource) { a.DeadLetterExchange = strings.Repeat("x", 300) }), "dead_letter_exchange: 300 bytes"},
		{"key without exchange", source(good, "q", 0, func(a *model.AMQPSource) { a.DeadLetterRoutingKey = "k" }), "without dead_letter_exchange"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Driver{}.Check(tc.src)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Check passed, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Check: %v, want %q in it", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("Check error quotes the password: %v", err)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got := headers(amqp091.Table{
		"sluice-event-type": "a.b", "bytes": []byte("raw"), "n": int32(7), "ok": true, "at": at,
		"nil": nil, "x-death": []any{amqp091.Table{"count": int64(1)}}, "nested": amqp091.Table{"a": "b"},
	})
	want := map[string]string{"sluice-event-type": "a.b", "bytes": "raw", "n": "7", "ok": "true", "at": "2026-01-02T03:04:05Z", "nil": ""}
	if len(got) != len(want) {
		t.Fatalf("headers = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("headers[%q] = %q, want %q", k, got[k], v)
		}
	}
	if headers(nil) != nil {
		t.Errorf("headers(nil) is not nil")
	}
}

// TestConsume: every message reaches Process, rejected ones land at the dead-letter destination
// with the reason, and the queue is empty once Run stops, so every message was settled. The cases
// cover the source's dead-letter exchange, the queue's own x-dead-letter-exchange, and the
// fallback to it when the source's exchange cannot route the message.
func TestConsume(t *testing.T) {
	cases := []struct {
		name string
		// setup declares the consumed queue and returns it, the source settings and the queue
		// that must receive the rejected messages.
		setup     func(r *rabbit) (queue string, mod func(*model.AMQPSource), dlq string)
		errHeader bool // the dead letter carries sluice-error (republished by Sluice, not by RabbitMQ)
	}{
		{"source dead-letter exchange", func(r *rabbit) (string, func(*model.AMQPSource), string) {
			dlq := r.queue("dlq", nil)
			dlx := r.exchange("dlx", dlq)
			return r.queue("in", nil), func(a *model.AMQPSource) { a.DeadLetterExchange = dlx }, dlq
		}, true},
		{"queue x-dead-letter-exchange", func(r *rabbit) (string, func(*model.AMQPSource), string) {
			dlq := r.queue("dlq", nil)
			dlx := r.exchange("dlx", dlq)
			return r.queue("in", amqp091.Table{"x-dead-letter-exchange": dlx}), nil, dlq
		}, false},
		{"unroutable source exchange falls back to the queue's", func(r *rabbit) (string, func(*model.AMQPSource), string) {
			dlq := r.queue("dlq", nil)
			dlx := r.exchange("dlx", dlq)
			nowhere := r.exchange("nowhere")
			return r.queue("in", amqp091.Table{"x-dead-letter-exchange": dlx}), func(a *model.AMQPSource) { a.DeadLetterExchange = nowhere }, dlq
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRabbit(t)
			queue, mod, dlq := tc.setup(r)
			const n, workers = 60, 8
			var msgs []amqp091.Publishing
			for i := range n {
				p := amqp91(fmt.Sprintf(`{"i":%d}`, i), fmt.Sprintf("m-%d", i))
				if i%10 == 3 {
					p.Body = fmt.Appendf(nil, "bad %d", i)
				}
				if i == 7 {
					p.MessageId = ""
				}
				msgs = append(msgs, p)
			}
			r.publish(queue, msgs...)

			h := newFakeHandler()
			run := start(t, Driver{}, source(r.url, queue, workers, mod), h)
			brokertest.WaitFor(t, "every message processed", func() bool { return h.count() == n })
			brokertest.WaitFor(t, "the rejected messages at the dead-letter queue", func() bool { return r.depth(dlq) == n/10 })
			if err := run.stop(t); err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
			if d := r.depth(queue); d != 0 {
				t.Errorf("%d messages back in the queue after Run stopped: not all were acked", d)
			}
			h.mu.Lock()
			for _, b := range h.batches {
				if b > workers {
					t.Errorf("a batch of %d messages, more than the prefetch %d", b, workers)
				}
			}
			var anon []string
			for id := range h.seen {
				if strings.HasPrefix(id, "delivery:") {
					anon = append(anon, id)
				}
			}
			t.Logf("batches: %v", h.batches)
			h.mu.Unlock()
			if len(anon) != 1 {
				t.Errorf("ids of messages without message-id = %v, want one delivery: id", anon)
			}
			for _, d := range r.drain(dlq) {
				if !strings.HasPrefix(string(d.Body), "bad ") {
					t.Errorf("dead-letter queue holds %q", d.Body)
				}
				if got, _ := d.Headers[HeaderError].(string); tc.errHeader && got != "body: bad" {
					t.Errorf("dead letter %s has %s = %q, want the reason", d.MessageId, HeaderError, got)
				}
				if d.Headers["sluice-event-type"] != "x.y" {
					t.Errorf("dead letter %s lost its headers: %v", d.MessageId, d.Headers)
				}
			}
		})
	}
}

func amqp91(body, id string) amqp091.Publishing {
	return amqp091.Publishing{Body: []byte(body), MessageId: id, ContentType: "application/json",
		Headers: amqp091.Table{"sluice-event-type": "x.y"}}
}

// TestNoAckBeforeProcess: a batch whose Process ends with the context is not acked: the next
// Run gets the same messages again, marked redelivered, under the same ids.
func TestNoAckBeforeProcess(t *testing.T) {
	r := newRabbit(t)
	queue := r.queue("in", nil)
	const n, workers = 20, 4
	for i := range n {
		r.publish(queue, amqp91(fmt.Sprintf(`{"i":%d}`, i), fmt.Sprintf("m-%d", i)))
	}
	entered := make(chan []broker.Message, 1)
	h1 := newFakeHandler()
	h1.block = func(ctx context.Context, msgs []broker.Message) error {
		entered <- msgs
		<-ctx.Done()
		return ctx.Err()
	}
	run := start(t, Driver{}, source(r.url, queue, workers, nil), h1)
	var first []broker.Message
	select {
	case first = <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("Process was never called")
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if d := r.depth(queue); d != n {
		t.Fatalf("queue holds %d after a Process that failed, want all %d back", d, n)
	}

	h2 := newFakeHandler()
	start(t, Driver{}, source(r.url, queue, workers, nil), h2)
	brokertest.WaitFor(t, "every message processed", func() bool { return h2.count() == n })
	h2.mu.Lock()
	defer h2.mu.Unlock()
	for _, m := range first {
		if _, ok := h2.seen[m.ID]; !ok {
			t.Errorf("message %s of the failed batch did not come back under its id", m.ID)
		}
	}
}

// TestLag: the lag is the queue's ready count, which excludes the prefetch held unacked.
func TestLag(t *testing.T) {
	r := newRabbit(t)
	queue := r.queue("in", nil)
	const n, workers = 30, 5
	for i := range n {
		r.publish(queue, amqp91(fmt.Sprintf(`{"i":%d}`, i), fmt.Sprintf("m-%d", i)))
	}
	h := newFakeHandler()
	h.block = func(ctx context.Context, _ []broker.Message) error { <-ctx.Done(); return ctx.Err() }
	start(t, Driver{LagInterval: 10 * time.Millisecond}, source(r.url, queue, workers, nil), h)
	brokertest.WaitFor(t, fmt.Sprintf("lag %d", n-workers), func() bool { return h.lag.Load() == n-workers })
}

// TestRunErrors: Run returns an error, not nil, when it cannot do its job, so the Manager
// restarts it.
func TestRunErrors(t *testing.T) {
	r := newRabbit(t)
	cases := []struct {
		name string
		src  func() *model.Source
		want string
	}{
		{"missing queue", func() *model.Source { return source(r.url, r.name+"-absent", 1, nil) }, "NOT_FOUND"},
		{"missing dead-letter exchange", func() *model.Source {
			q := r.queue("in", nil)
			return source(r.url, q, 1, func(a *model.AMQPSource) { a.DeadLetterExchange = r.name + "-absent" })
		}, "dead-letter exchange"},
		{"refused connection", func() *model.Source {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			return source("amqp://guest:guest@"+addr+"/", "q", 1, nil)
		}, "connect to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := start(t, Driver{}, tc.src(), newFakeHandler())
			err := run.wait(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// proxy forwards TCP connections to RabbitMQ (terminating TLS first when tls is set) and can
// cut them all, as a network failure would.
type proxy struct {
	ln     net.Listener
	target string
	tls    *tls.Config

	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func newProxy(t *testing.T, target string, tlsCfg *tls.Config) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, tls: tlsCfg}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.tls != nil {
				c = tls.Server(c, p.tls)
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut(); wg.Wait() })
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// via returns u with its host replaced by the proxy's address and its scheme by scheme.
func (p *proxy) via(t *testing.T, u, scheme string) string {
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pu.Scheme, pu.Host = scheme, p.ln.Addr().String()
	return pu.String()
}

func rabbitAddr(t *testing.T, u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if pu.Port() == "" {
		return pu.Hostname() + ":5672"
	}
	return pu.Host
}

// TestConnectionLoss: when the connection drops, Run returns an error, and the unacked batch is
// redelivered to the next Run.
func TestConnectionLoss(t *testing.T) {
	r := newRabbit(t)
	queue := r.queue("in", nil)
	p := newProxy(t, rabbitAddr(t, r.url), nil)
	const n = 10
	for i := range n {
		r.publish(queue, amqp91(fmt.Sprintf(`{"i":%d}`, i), fmt.Sprintf("m-%d", i)))
	}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	h := newFakeHandler()
	h.block = func(ctx context.Context, _ []broker.Message) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	run := start(t, Driver{}, source(p.via(t, r.url, "amqp"), queue, 4, nil), h)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("Process was never called")
	}
	p.cut()
	close(release)
	err := run.wait(t)
	if err == nil {
		t.Fatal("Run returned nil after the connection dropped, want an error")
	}
	t.Logf("Run: %v", err)
	brokertest.WaitFor(t, "the unacked messages back in the queue", func() bool { return r.depth(queue) == n })
}

// TestTLS consumes through amqps:// with the source's CA, against a TLS-terminating proxy in
// front of RabbitMQ.
func TestTLS(t *testing.T) {
	r := newRabbit(t)
	queue := r.queue("in", nil)
	caPEM, cert := testCert(t, "rabbit.test")
	p := newProxy(t, rabbitAddr(t, r.url), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	r.publish(queue, amqp91(`{"i":1}`, "m-1"), amqp91(`{"i":2}`, "m-2"))
	h := newFakeHandler()
	src := source(p.via(t, r.url, "amqps"), queue, 4, func(a *model.AMQPSource) {
		a.TLS = &model.BrokerTLS{Enabled: true, CAPEM: caPEM, ServerName: "rabbit.test"}
	})
	start(t, Driver{}, src, h)
	brokertest.WaitFor(t, "both messages over TLS", func() bool { return h.count() == 2 })

	// amqps:// alone (any case) is verified TLS too, which the test certificate does not pass.
	err := start(t, Driver{}, source(strings.Replace(src.Broker.AMQP.URL, "amqps:", "AMQPS:", 1), queue, 4, nil), newFakeHandler()).wait(t)
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("Run with amqps:// and no tls section = %v, want a certificate verification error", err)
	}

	// The wrong server name fails the handshake: the CA really is checked.
	bad := source(src.Broker.AMQP.URL, queue, 4, func(a *model.AMQPSource) {
		a.TLS = &model.BrokerTLS{Enabled: true, CAPEM: caPEM, ServerName: "other.test"}
	})
	err = start(t, Driver{}, bad, newFakeHandler()).wait(t)
	var certErr x509.HostnameError
	if !errors.As(err, &certErr) {
		t.Fatalf("Run with the wrong server name = %v, want a certificate name error", err)
	}
}

// testCert returns a self-signed certificate for name, as PEM and as a tls.Certificate.
func testCert(t *testing.T, name string) (string, tls.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// FuzzCheckURL: Check never panics on a URL and never quotes its password.
func FuzzCheckURL(f *testing.F) {
	for _, s := range [][2]string{
		{"127.0.0.1:5672/vh", "secretpassword"}, {"host:x y/", "secretpassword"}, {"[::1", "p@ss:word/1"},
		{"h:99999", "hunter2hunter2"}, {"h/?heartbeat=x", "hunter2hunter2"}, {"", "%zz%zz%zz%zz"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, rest, pw string) {
		esc := url.PathEscape(pw)
		raw := "amqp://user:" + esc + "@" + rest
		err := checkURL(raw, nil)
		if err == nil || len(pw) < 8 || strings.Contains(rest, pw) || strings.Contains(rest, esc) {
			return
		}
		if msg := err.Error(); strings.Contains(msg, pw) || strings.Contains(msg, esc) {
			t.Fatalf("checkURL(%q) = %q quotes the password", raw, msg)
		}
	})
}

// BenchmarkConsume measures the driver and client per message against the real server, with a
// Handler that accepts at once: CPU time of this process per message (cpu-ns/op, the figure to
// compare; wall time depends on the shared machine and the server) and allocations.
func BenchmarkConsume(b *testing.B) {
	for _, workers := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			r := newRabbit(b)
			queue := r.queue("in", nil)
			msgs := make([]amqp091.Publishing, b.N)
			for i := range msgs {
				msgs[i] = amqp91(fmt.Sprintf(`{"i":%d}`, i), fmt.Sprintf("m-%d", i))
			}
			r.publish(queue, msgs...)
			h := newFakeHandler()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			run := start(b, Driver{}, source(r.url, queue, workers, nil), h)
			brokertest.WaitFor(b, "every message processed", func() bool { return h.count() == b.N })
			cpu := cpuTime(b) - cpu0
			b.StopTimer()
			run.stop(b)
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			h.mu.Lock()
			b.ReportMetric(float64(b.N)/float64(len(h.batches)), "msgs/batch")
			h.mu.Unlock()
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
