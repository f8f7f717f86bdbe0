package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-gw/sluice/model"
)

// TestBrokerNATS runs the shared broker scenario against an embedded JetStream server, which
// lives in the test process and so outlives the kill -9 of Sluice.
func TestBrokerNATS(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, subject := range map[string]string{"ORDERS": "orders.>", "ORDERS_DEAD": "dead.orders"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			t.Fatal(err)
		}
	}

	runBrokerSourceTest(t, brokerPeer{
		typ: model.SourceNATS,
		section: func(cfg *model.BrokerConfig) {
			// A short AckWait brings back what was in flight at the kill well within the test.
			cfg.NATS = &model.NATSSource{URLs: []string{s.ClientURL()}, Stream: "ORDERS", Subject: "orders.created",
				DeadLetterSubject: "dead.orders", AckWait: 5}
		},
		produce: func(t *testing.T, msgs []peerMessage) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, m := range msgs {
				out := nats.NewMsg("orders.created")
				out.Data = m.Body
				for k, v := range m.Headers {
					out.Header.Set(k, v)
				}
				if _, err := js.PublishMsg(ctx, out); err != nil {
					t.Fatalf("publishing: %v", err)
				}
			}
		},
		deadLetters: func(t *testing.T) [][]byte {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := js.Stream(ctx, "ORDERS_DEAD")
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
				if m, err := st.GetMsg(ctx, seq); err == nil {
					out = append(out, m.Data)
				}
			}
			return out
		},
	}, 600)
}
