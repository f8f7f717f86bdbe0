package main

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sluice-gw/sluice/ingest/broker/sqs/sqstest"
	"github.com/sluice-gw/sluice/model"
)

// TestSQSSource runs the shared broker scenario against goaws served from this test process (so
// kill -9 of Sluice leaves the queue and its in-flight messages behind), through the real AWS SDK
// with the query protocol goaws speaks. A 3 s visibility timeout brings the messages the killed
// process held back soon after the restart.
func TestSQSSource(t *testing.T) {
	srv := sqstest.Start(t)
	const visibility = 3
	queue := srv.CreateQueue(t, "sluice-orders", visibility)
	dlq := srv.CreateQueue(t, "sluice-orders-dlq", 1)
	runBrokerSourceTest(t, brokerPeer{
		typ: model.SourceSQS,
		section: func(cfg *model.BrokerConfig) {
			cfg.SQS = srv.Section(queue, dlq, visibility)
		},
		produce: func(t *testing.T, msgs []peerMessage) {
			for _, m := range msgs {
				srv.Send(t, queue, m.Body, m.Headers)
			}
		},
		deadLetters: func(t *testing.T) [][]byte {
			var out [][]byte
			for _, m := range srv.Receive(t, dlq) {
				out = append(out, []byte(aws.ToString(m.Body)))
			}
			return out
		},
	}, 600)
}
