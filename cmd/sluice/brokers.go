package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluice-gw/sluice/ingest/broker"
	amqpsrc "github.com/sluice-gw/sluice/ingest/broker/amqp"
	"github.com/sluice-gw/sluice/ingest/broker/kafka"
	"github.com/sluice-gw/sluice/ingest/broker/natsjs"
	"github.com/sluice-gw/sluice/ingest/broker/pubsub"
	"github.com/sluice-gw/sluice/ingest/broker/sqs"
	"github.com/sluice-gw/sluice/model"
)

// brokerRegistry is the broker drivers this binary has, by source type.
func brokerRegistry() broker.Registry {
	return broker.Registry{
		model.SourceKafka:  kafka.Driver{},
		model.SourceNATS:   natsjs.Driver{},
		model.SourceAMQP:   amqpsrc.Driver{},
		model.SourceSQS:    sqs.Driver{},
		model.SourcePubSub: pubsub.Driver{},
	}
}

// startBrokers runs the broker sources' consumers (on the leader only) until ctx ends; the
// returned function waits for them to stop.
func (n *node) startBrokers(ctx context.Context) (wait func()) {
	m := broker.NewManager(broker.Config{
		Registry:        n.registry,
		Sources:         n.store.BrokerSources,
		Leading:         func() bool { return n.store.IsLeader() && n.store.Ready() },
		Publisher:       n.api,
		MaxPublishBytes: int(n.cfg.MaxPayloadBytes),
		Logger:          n.log,
	})
	n.brokers.Store(m)
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	return func() { <-done }
}

// writeBrokerMetrics writes the broker sources' counters and gauges (docs/metrics.md).
func writeBrokerMetrics(w io.Writer, stats []broker.SourceStats) {
	var msgs, retries, restarts, running, lag []sample
	for _, s := range stats {
		base := fmt.Sprintf("project=%q,source=%q,type=%q", s.ProjectID, s.SourceID, s.Type)
		out := func(o string) string { return base + fmt.Sprintf(",outcome=%q", o) }
		msgs = append(msgs,
			sample{out("published"), float64(s.Published)},
			sample{out("duplicate"), float64(s.Duplicates)},
			sample{out("dead_lettered"), float64(s.DeadLettered)})
		retries = append(retries, sample{base, float64(s.Retries)})
		restarts = append(restarts, sample{base, float64(s.Restarts)})
		r := 0.0
		if s.Running {
			r = 1
		}
		running = append(running, sample{base, r})
		if s.Lag >= 0 {
			lag = append(lag, sample{base, float64(s.Lag)})
		}
	}
	writeFamily(w, "sluice_source_messages_total", "counter", msgs)
	writeFamily(w, "sluice_source_publish_retries_total", "counter", retries)
	writeFamily(w, "sluice_source_consumer_restarts_total", "counter", restarts)
	writeFamily(w, "sluice_source_consumer_running", "gauge", running)
	writeFamily(w, "sluice_source_lag", "gauge", lag)
}
