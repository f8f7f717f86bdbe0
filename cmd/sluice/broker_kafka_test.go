package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gw/sluice/model"
)

// TestBrokerKafka runs the shared broker scenario against franz-go's in-process Kafka cluster,
// which lives in the test process and so outlives the kill -9 of Sluice.
func TestBrokerKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"), kfake.SeedTopics(1, "orders-dead"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)

	runBrokerSourceTest(t, brokerPeer{
		typ: model.SourceKafka,
		section: func(cfg *model.BrokerConfig) {
			cfg.Kafka = &model.KafkaSource{Brokers: addrs, Topics: []string{"orders"}, DeadLetterTopic: "orders-dead"}
		},
		produce: func(t *testing.T, msgs []peerMessage) {
			recs := make([]*kgo.Record, len(msgs))
			for i, m := range msgs {
				recs[i] = &kgo.Record{Topic: "orders", Value: m.Body}
				for k, v := range m.Headers {
					recs[i].Headers = append(recs[i].Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatalf("producing %d records: %v", len(recs), err)
			}
		},
		deadLetters: func(t *testing.T) [][]byte {
			cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("orders-dead"),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var out [][]byte
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				for _, r := range fs.Records() {
					out = append(out, r.Value)
				}
				if len(out) > 0 {
					break
				}
			}
			return out
		},
	}, 600)
}
