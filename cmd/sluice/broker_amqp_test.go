package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/sluice-gw/sluice/model"
)

// TestBrokerSourceAMQP runs the shared broker scenario against the RabbitMQ server .ci/run
// starts ($SLUICE_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/), with the source's
// dead-letter exchange taking the malformed message.
func TestBrokerSourceAMQP(t *testing.T) {
	if why := os.Getenv("SLUICE_TEST_AMQP_UNAVAILABLE"); why != "" {
		t.Skipf("RabbitMQ test skipped: %s", why)
	}
	url := os.Getenv("SLUICE_TEST_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp091.Dial(url)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no RabbitMQ in CI: .ci/run installs and starts Debian's rabbitmq-server: %v", err)
		}
		t.Skipf("RabbitMQ test skipped: cannot connect ($SLUICE_TEST_AMQP_URL, default 127.0.0.1:5672; .ci/run installs and starts one): %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	prefix := "sluice-proc-test-" + hex.EncodeToString(b[:])
	queue, dlq, dlx := prefix+"-in", prefix+"-dlq", prefix+"-dlx"
	for _, q := range []string{queue, dlq} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatalf("declare %s: %v", q, err)
		}
	}
	if err := ch.ExchangeDeclare(dlx, amqp091.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch.QueueDelete(queue, false, false, false)
		ch.QueueDelete(dlq, false, false, false)
		ch.ExchangeDelete(dlx, false, false)
	})

	var (
		mu   sync.Mutex // guards dead (the peer's funcs run on the test goroutine, but keep it honest)
		dead [][]byte
	)
	runBrokerSourceTest(t, brokerPeer{
		typ: model.SourceAMQP,
		section: func(cfg *model.BrokerConfig) {
			cfg.AMQP = &model.AMQPSource{URL: url, Queue: queue, DeadLetterExchange: dlx}
		},
		produce: func(t *testing.T, msgs []peerMessage) {
			confs := make([]*amqp091.DeferredConfirmation, 0, len(msgs))
			for _, m := range msgs {
				var hdr amqp091.Table
				if len(m.Headers) > 0 {
					hdr = amqp091.Table{}
					for k, v := range m.Headers {
						hdr[k] = v
					}
				}
				c, err := ch.PublishWithDeferredConfirm("", queue, true, false, amqp091.Publishing{
					MessageId: m.ID, Headers: hdr, Body: m.Body, DeliveryMode: amqp091.Persistent,
				})
				if err != nil {
					t.Fatalf("publish %s: %v", m.ID, err)
				}
				confs = append(confs, c)
			}
			for i, c := range confs {
				if !c.Wait() {
					t.Fatalf("publish %s not confirmed", msgs[i].ID)
				}
			}
		},
		deadLetters: func(t *testing.T) [][]byte {
			mu.Lock()
			defer mu.Unlock()
			for range 1000 { // the scenario dead-letters one message
				d, ok, err := ch.Get(dlq, true)
				if err != nil {
					t.Fatalf("get %s: %v", dlq, err)
				}
				if !ok {
					return dead
				}
				dead = append(dead, d.Body)
			}
			return dead
		},
	}, 500)
}
