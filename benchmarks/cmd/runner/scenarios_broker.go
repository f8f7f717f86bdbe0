package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
)

// ---- broker-ingest ----

// runBrokerIngest measures events per second from Kafka and from NATS JetStream into delivered
// webhooks, each beside an HTTP burst of the same size on the same node immediately before it. The
// brokers (franz-go's kfake cluster and an embedded nats-server) run inside the runner, as the load
// generator does: they take CPU from the same 2 cores as the HTTP load generator would.
func runBrokerIngest(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	s, sk, proj, eid, err := startTCPNode(sc, "bench-broker", false)
	if err != nil {
		return err
	}
	ps := procSet{sluices: []*harness.Sluice{s}, sinks: []*sinkProc{sk}}

	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"))
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	sc.onClose(kc.Close)
	kprod, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		return err
	}
	sc.onClose(kprod.Close)

	storeDir, err := os.MkdirTemp("", "sgwbench-nats-")
	if err != nil {
		return err
	}
	sc.onClose(func() { os.RemoveAll(storeDir) })
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats-server did not start")
	}
	sc.onClose(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	sc.onClose(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}}); err != nil {
		return fmt.Errorf("stream: %w", err)
	}

	for _, src := range []map[string]any{
		{"kafka": map[string]any{"brokers": kc.ListenAddrs(), "topics": []string{"bench"}}},
		{"nats": map[string]any{"urls": []string{ns.ClientURL()}, "stream": "BENCH"}},
	} {
		src["event_type"], src["endpoint_id"] = eventType, eid
		typ := "kafka"
		if src["nats"] != nil {
			typ = "nats"
		}
		body := map[string]any{"name": "bench-" + typ, "type": typ, "broker": src}
		if err := proj.API.Do(ctx, "POST", "/api/v1/projects/"+proj.ID+"/sources", body, nil); err != nil {
			return fmt.Errorf("creating the %s source: %w", typ, err)
		}
	}

	kafkaPub := func(n int) func(context.Context) (*loadgen.Result, error) {
		return func(ctx context.Context) (*loadgen.Result, error) {
			var failed atomic.Uint64
			var firstErr atomic.Pointer[string]
			start := time.Now()
			for range n {
				data := loadgen.Data(r.plan.Payload)
				loadgen.Stamp(data, time.Now())
				kprod.Produce(ctx, &kgo.Record{Topic: "bench", Value: data}, func(_ *kgo.Record, err error) {
					if err != nil {
						failed.Add(1)
						msg := err.Error()
						firstErr.CompareAndSwap(nil, &msg)
					}
				})
			}
			if err := kprod.Flush(ctx); err != nil {
				return nil, err
			}
			return brokerResult(n, failed.Load(), firstErr.Load(), time.Since(start)), nil
		}
	}
	natsPub := func(n int) func(context.Context) (*loadgen.Result, error) {
		return func(ctx context.Context) (*loadgen.Result, error) {
			start := time.Now()
			futs := make([]jetstream.PubAckFuture, 0, n)
			for range n {
				data := loadgen.Data(r.plan.Payload)
				loadgen.Stamp(data, time.Now())
				// A loaded machine can keep 4,096 publishes unacknowledged for longer than the
				// stall wait; the burst then waits for the server rather than failing.
				f, err := js.PublishAsync("bench.event", data, jetstream.WithStallWait(30*time.Second))
				if err != nil {
					return nil, err
				}
				futs = append(futs, f)
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return nil, fmt.Errorf("JetStream did not acknowledge %d publishes within a minute", js.PublishAsyncPending())
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			var failed uint64
			var firstErr *string
			for _, f := range futs {
				select {
				case err := <-f.Err():
					failed++
					if firstErr == nil {
						msg := err.Error()
						firstErr = &msg
					}
				default:
				}
			}
			return brokerResult(n, failed, firstErr, time.Since(start)), nil
		}
	}

	n := r.plan.E2EEvents
	warm := max(500, n/20)
	for name, pub := range map[string]func(context.Context) (*loadgen.Result, error){
		"HTTP": r.httpPublisher(proj, eid, 64, warm), "Kafka": kafkaPub(warm), "NATS": natsPub(warm),
	} {
		if _, err := r.e2eBurst(ps, sk, pub); err != nil {
			return fmt.Errorf("%s warm-up: %w", name, err)
		}
	}
	cases := []struct {
		name string
		pub  func(context.Context) (*loadgen.Result, error)
	}{
		{fmt.Sprintf("Kafka (kfake, 4 partitions), %d events", n), kafkaPub(n)},
		{fmt.Sprintf("NATS JetStream (embedded), %d events", n), natsPub(n)},
	}
	for i, c := range cases {
		// The same-run baseline: the same burst over HTTP (64 clients) on this node, just before.
		hb, err := r.e2eBurst(ps, sk, r.httpPublisher(proj, eid, 64, n))
		if err != nil {
			return err
		}
		hc := burstCase(fmt.Sprintf("HTTP 64 clients, %d events (baseline of the next row)", n), hb)
		sc.add(hc)
		if i == 0 {
			sc.profile(s, "kafka", 4)
		}
		b, err := r.e2eBurst(ps, sk, c.pub)
		if err != nil {
			return err
		}
		cs := burstCase(c.name, b)
		cs.setBaseline("HTTP 64 clients, same burst, just before", hb.perSecond)
		sc.add(cs)
	}
	sc.note("a burst of %d events produced to the broker as fast as its client goes (Kafka: async produce with 1 ms linger; "+
		"NATS: async JetStream publishes, 4,096 pending) while Sluice's consumer (default 64 publish workers) turns each message "+
		"into an event for one active endpoint; delivered/s = events / (first produce → last unique delivery at the sink), and "+
		"publish-to-delivery latency is from the produce. Each broker row's baseline is the same burst over HTTP (64 clients) on "+
		"the same node immediately before it. The brokers run inside the runner process on the same 2 cores, so their CPU is not "+
		"in Sluice's cost columns but competes with it, as the HTTP load generator's does", n)
	return nil
}

// brokerResult describes a produce burst in the load generator's terms.
func brokerResult(n int, failed uint64, firstErr *string, took time.Duration) *loadgen.Result {
	res := &loadgen.Result{Mode: "broker", Sent: uint64(n), OK: uint64(n) - failed, Errors: failed, StoppedBy: "count",
		ElapsedS: took.Seconds()}
	res.PerSecond = float64(res.OK) / max(took.Seconds(), 1e-9)
	if firstErr != nil {
		res.FirstError = *firstErr
	}
	return res
}
