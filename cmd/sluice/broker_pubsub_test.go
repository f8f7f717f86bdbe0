package main

import (
	"testing"

	"github.com/sluice-gw/sluice/ingest/broker/pubsub/pubsubtest"
	"github.com/sluice-gw/sluice/model"
)

// TestPubSubSource runs the shared broker scenario against the official Pub/Sub fake (pstest)
// served from this test process, which Sluice reaches as an emulator. The messages the killed
// process held come back once their ack deadline (10 s, the minimum) runs out.
func TestPubSubSource(t *testing.T) {
	srv := pubsubtest.Start(t)
	srv.CreateTopic(t, "orders")
	srv.CreateTopic(t, "orders-dead")
	srv.CreateSubscription(t, "orders", "orders-sluice")
	runBrokerSourceTest(t, brokerPeer{
		typ: model.SourcePubSub,
		section: func(cfg *model.BrokerConfig) {
			cfg.PubSub = srv.Section("orders-sluice", "orders-dead")
		},
		produce: func(t *testing.T, msgs []peerMessage) {
			for _, m := range msgs {
				srv.Publish("orders", m.Body, m.Headers)
			}
		},
		deadLetters: func(t *testing.T) [][]byte {
			var out [][]byte
			for _, m := range srv.Published("orders-dead") {
				out = append(out, m.Data)
			}
			return out
		},
	}, 600)
}
