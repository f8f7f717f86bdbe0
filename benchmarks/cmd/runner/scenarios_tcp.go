package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/benchmarks/sink"
)

// ---- shared: an endpoint set-up and an end-to-end burst ----

// startTCPNode starts a node with TCP ingest and a plain sink, and creates a project with one endpoint
// on that sink (see setupEndpoint): the set-up of every TCP scenario.
func startTCPNode(sc *scenarioRun, name string, paused bool) (*harness.Sluice, *sinkProc, *harness.Project, string, error) {
	s, err := sc.startSluice(harness.Options{TCP: true})
	if err != nil {
		return nil, nil, nil, "", err
	}
	sk, err := startSink(sc, sinkSpec{})
	if err != nil {
		return nil, nil, nil, "", err
	}
	proj, eid, err := setupEndpoint(sc.r.ctx, s, sk, name, paused)
	return s, sk, proj, eid, err
}

// setupEndpoint creates a project on s and one endpoint on sk subscribed to eventType (paused when
// paused is set); it returns the project and the endpoint id.
func setupEndpoint(ctx context.Context, s *harness.Sluice, sk *sinkProc, name string, paused bool) (*harness.Project, string, error) {
	proj, err := s.Root().CreateProject(ctx, name)
	if err != nil {
		return nil, "", err
	}
	ep := harness.Endpoint{URL: sk.URL() + "/" + name, Name: name}
	if paused {
		ep.Status = "paused"
	}
	eid, err := proj.CreateEndpoint(ctx, ep)
	if err != nil {
		return nil, "", err
	}
	if _, err := proj.Subscribe(ctx, eid, eventType); err != nil {
		return nil, "", err
	}
	return proj, eid, nil
}

// burst is a fixed number of events published as fast as a publisher allows and then all delivered.
type burst struct {
	pub       *loadgen.Result
	delivered uint64
	complete  bool
	elapsed   time.Duration // first publish → last unique delivery
	perSecond float64
	duringPub float64 // unique deliveries per second while publishing
	st        sink.Stats
	delta     map[string]float64
	w         *window
}

// e2eBurst runs publish (which must publish to one active endpoint on sk) and waits until every
// acknowledged publish is delivered: delivered/s is the closed-loop end-to-end throughput, ingest and
// delivery competing for the same cores as they do in production.
func (r *runner) e2eBurst(ps procSet, sk *sinkProc, publish func(context.Context) (*loadgen.Result, error)) (*burst, error) {
	ctx := r.ctx
	if err := sk.Reset(); err != nil {
		return nil, err
	}
	w, err := beginSet(ctx, ps)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pub, err := publish(ctx)
	if err != nil {
		return nil, err
	}
	pubEnd := time.Now()
	atPubEnd := sk.Unique()
	wctx, cancel := context.WithTimeout(ctx, r.plan.DrainTimeout)
	delivered, werr := sk.WaitUnique(wctx, pub.OK)
	cancel()
	if werr != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	b := &burst{pub: pub, delivered: delivered, complete: werr == nil, st: sk.Stats(), w: w}
	last := b.st.LastAt
	if last.IsZero() || !b.complete {
		last = time.Now()
	}
	b.elapsed = last.Sub(start)
	b.perSecond = float64(delivered) / b.elapsed.Seconds()
	b.duringPub = float64(atPubEnd) / pubEnd.Sub(start).Seconds()
	time.Sleep(200 * time.Millisecond) // let the last results reach the log before the counters are read
	if b.delta, err = w.end(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func burstCase(name string, b *burst) *Case {
	cs := &Case{Name: name, Figure: "delivered/s (first publish → last delivery)", Value: round(b.perSecond, 0),
		LatencyKind: "publish-to-delivery", Latency: &b.st.Latency, Complete: b.complete && b.pub.Errors == 0,
		Load: b.pub, Sink: &b.st, MetricsDelta: b.delta}
	b.w.cost(cs, float64(b.delivered))
	cs.also("events", float64(b.pub.OK), "")
	cs.also("acked publishes/s", round(b.pub.PerSecond, 0), "")
	cs.also("delivered/s while publishing", round(b.duringPub, 0), "")
	cs.also("fsyncs/event", round(b.delta["sluice_wal_syncs_total"]/float64(max(b.pub.OK, 1)), 3), "")
	if b.pub.Errors > 0 {
		cs.also("publish errors", float64(b.pub.Errors), "")
	}
	if b.st.Duplicates > 0 {
		cs.also("duplicates", float64(b.st.Duplicates), "")
	}
	return cs
}

func (r *runner) tcpPublisher(addr, key, endpointID string, shape tcpCase, n int) func(context.Context) (*loadgen.Result, error) {
	return func(ctx context.Context) (*loadgen.Result, error) {
		return loadgen.RunTCP(ctx, loadgen.TCPConfig{Addr: addr, Key: key, Conns: shape.Conns, Depth: shape.Depth,
			EndpointID: endpointID, EventType: eventType, Data: loadgen.Data(r.plan.Payload), MaxRequests: n, Duration: 2 * time.Minute})
	}
}

func (r *runner) httpPublisher(proj *harness.Project, endpointID string, conns, n int) func(context.Context) (*loadgen.Result, error) {
	return func(ctx context.Context) (*loadgen.Result, error) {
		return loadgen.Run(ctx, loadgen.Config{URL: proj.EventsURL(""), Header: bearer(proj.API.Key),
			Body: loadgen.PublishBody(endpointID, eventType, r.plan.Payload), Conns: conns, MaxRequests: n, Duration: 2 * time.Minute})
	}
}

// dirSize is the bytes of regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// ---- ingest-tcp ----

func runIngestTCP(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	s, sk, proj, eid, err := startTCPNode(sc, "bench-ingest-tcp", true)
	if err != nil {
		return err
	}
	httpCfg := loadgen.Config{URL: proj.EventsURL(""), Header: bearer(proj.API.Key), Body: loadgen.PublishBody(eid, eventType, r.plan.Payload),
		Conns: 64, Duration: r.plan.Warmup, MaxRequests: 50_000}
	if _, err := loadgen.Run(ctx, httpCfg); err != nil {
		return fmt.Errorf("HTTP warm-up: %w", err)
	}
	tcfg := loadgen.TCPConfig{Addr: s.TCPAddr, Key: proj.API.Key, Conns: 4, Depth: 64, EndpointID: eid, EventType: eventType,
		Data: loadgen.Data(r.plan.Payload), Duration: r.plan.Warmup, MaxRequests: 100_000}
	if _, err := loadgen.RunTCP(ctx, tcfg); err != nil {
		return fmt.Errorf("TCP warm-up: %w", err)
	}
	biggest := 0
	for i, c := range r.plan.TCPCases {
		if c.Conns*c.Depth > r.plan.TCPCases[biggest].Conns*r.plan.TCPCases[biggest].Depth {
			biggest = i
		}
	}
	for i, c := range r.plan.TCPCases {
		// The same-run baseline: HTTP ingest at 64 clients on this node, immediately before.
		hc := httpCfg
		hc.Duration, hc.MaxRequests = r.plan.TCPBaselineDur, r.plan.IngestMax
		hres, err := loadgen.Run(ctx, hc)
		if err != nil {
			return err
		}
		w, err := begin(ctx, s, sk)
		if err != nil {
			return err
		}
		tc := tcfg
		tc.Conns, tc.Depth, tc.Duration, tc.MaxRequests = c.Conns, c.Depth, r.plan.TCPDur, r.plan.TCPMax
		if i == biggest {
			sc.profile(s, fmt.Sprintf("%d conns x depth %d", c.Conns, c.Depth), int(r.plan.TCPDur.Seconds()*0.6))
		}
		res, err := loadgen.RunTCP(ctx, tc)
		if err != nil {
			return err
		}
		d, err := w.end(ctx)
		if err != nil {
			return err
		}
		cs := &Case{Name: fmt.Sprintf("%d conns × depth %d", c.Conns, c.Depth), Figure: "acked publishes/s", Value: round(res.PerSecond, 0),
			LatencyKind: "ack", Latency: &res.Latency, Load: res, Complete: res.Errors == 0, MetricsDelta: d}
		cs.setBaseline("ingest-http 64 clients, same node, just before", hres.PerSecond)
		ev := float64(res.OK)
		w.cost(cs, ev)
		cs.also("fsyncs/event", round(d["sluice_wal_syncs_total"]/ev, 4), "")
		cs.also("cmds/entry", round(d["sluice_raft_commands_proposed_total"]/d["sluice_raft_entries_proposed_total"], 1), "")
		cs.also("load generator CPU/publish", round(res.ClientCPUPerReqUS, 1), " µs")
		if c.Conns*c.Depth >= 64 {
			cs.atLeast("≥ 3× ingest-http", 3, true)
		}
		if res.Errors > 0 {
			cs.also("errors", float64(res.Errors), "")
			sc.note("%s: %d publishes failed, first: %s", cs.Name, res.Errors, res.FirstError)
		}
		if got := d["sluice_events_ingested_total"]; got != ev {
			sc.note("%s: sluice_events_ingested_total grew by %.0f but the load generator counted %.0f acknowledged publishes", cs.Name, got, ev)
		}
		sc.add(cs)
	}
	sc.note("the project's Go client (ingest/client) publishes %d B of event data to one paused endpoint (as ingest-http); "+
		"depth d is d goroutines per connection each calling the blocking Publish, so ack latency is per publish and includes "+
		"the client's own queueing and PUBLISH_BATCH coalescing (up to 256 per frame). The client gives every publish an "+
		"idempotency key (docs/tcp-protocol.md §8), which the HTTP publishes do not carry: TCP events store one more index entry each", r.plan.Payload)
	sc.note("each case's baseline is ingest-http at 64 clients on the same node, measured for %v immediately before it; the issue's "+
		"≥ 3× target is marked on cases with at least 64 publishes in flight (the baseline's concurrency); depth 1 is the latency floor", r.plan.TCPBaselineDur)
	return nil
}

// ---- e2e-tcp ----

func runE2ETCP(r *runner, sc *scenarioRun) error {
	s, sk, proj, eid, err := startTCPNode(sc, "bench-e2e-tcp", false)
	if err != nil {
		return err
	}
	n := r.plan.E2EEvents
	if _, err := r.e2eBurst(procSet{sluices: []*harness.Sluice{s}, sinks: []*sinkProc{sk}}, sk,
		r.tcpPublisher(s.TCPAddr, proj.API.Key, eid, r.plan.E2ETCP, max(500, n/20))); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	shape := r.plan.E2ETCP
	cases := []struct {
		name    string
		pub     func(context.Context) (*loadgen.Result, error)
		target  float64
		profile bool
	}{
		{fmt.Sprintf("TCP %d conns × depth %d, %d events", shape.Conns, shape.Depth, n), r.tcpPublisher(s.TCPAddr, proj.API.Key, eid, shape, n), 0.45, true},
		{fmt.Sprintf("HTTP 64 clients, %d events", n), r.httpPublisher(proj, eid, 64, n), 0.30, false},
	}
	for _, c := range cases {
		up, err := r.baselineNow(32)
		if err != nil {
			return err
		}
		if c.profile {
			sc.profile(s, "tcp", 4)
		}
		b, err := r.e2eBurst(procSet{sluices: []*harness.Sluice{s}, sinks: []*sinkProc{sk}}, sk, c.pub)
		if err != nil {
			return err
		}
		cs := burstCase(c.name, b)
		cs.setBaseline("upstream 32 conns, just before", up.PerSecond)
		cs.atLeast(fmt.Sprintf("≥ %.2f of upstream", c.target), c.target, true)
		sc.add(cs)
		if c.target == 0.30 {
			r.e2eHTTP = b.perSecond
		}
	}
	sc.note("a burst of events published as fast as the publisher allows to one active endpoint, ingest and delivery competing for "+
		"the same cores; delivered/s = events / (first publish → last unique delivery at the sink). Publish-to-delivery latency "+
		"includes the time an event waited in the backlog the burst built. Baseline: upstream (load generator → sink) at 32 "+
		"connections, one lane's in-flight cap, measured immediately before. TCP uses %d connections × %d in flight", shape.Conns, shape.Depth)
	return nil
}

// ---- backlog-growth ----

func runBacklogGrowth(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	s, sk, proj, eid, err := startTCPNode(sc, "bench-backlog", false)
	if err != nil {
		return err
	}
	ps := procSet{sluices: []*harness.Sluice{s}, sinks: []*sinkProc{sk}}
	if _, err := r.e2eBurst(ps, sk, r.tcpPublisher(s.TCPAddr, proj.API.Key, eid, r.plan.E2ETCP, 500)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	var empty struct{ fixed, burst *Case }
	measure := func(stored int, label string) error {
		// Scenario 6's measurement: open-loop HTTP publishes at a fixed rate, publish-to-delivery latency.
		if err := sk.Reset(); err != nil {
			return err
		}
		w, err := begin(ctx, s, sk)
		if err != nil {
			return err
		}
		res, err := loadgen.Run(ctx, loadgen.Config{URL: proj.EventsURL(""), Header: bearer(proj.API.Key),
			Body: loadgen.PublishBody(eid, eventType, r.plan.Payload), Conns: 256, Rate: r.plan.BacklogRate,
			Duration: r.plan.BacklogDur, MaxRequests: int(r.plan.BacklogRate * r.plan.BacklogDur.Seconds())})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		delivered, werr := sk.WaitUnique(wctx, res.OK)
		cancel()
		d, err := w.end(ctx)
		if err != nil {
			return err
		}
		st := sk.Stats()
		fixed := &Case{Name: fmt.Sprintf("%s/s fixed rate, %s stored", num(r.plan.BacklogRate), label), Figure: "achieved publishes/s",
			Value: round(res.Achieved, 0), LatencyKind: "publish-to-delivery", Latency: &st.Latency, Complete: werr == nil && res.Errors == 0,
			Load: res, Sink: &st, MetricsDelta: d}
		w.cost(fixed, float64(delivered))
		fixed.also("ack p99", res.Latency.P99MS, " ms")
		fixed.also("delivered/acked", round(float64(delivered)/float64(max(res.OK, 1)), 4), "")
		if empty.fixed == nil {
			fixed.setBaseline("target", r.plan.BacklogRate)
			empty.fixed = fixed
		} else {
			fixed.setBaseline("same rate, empty store", empty.fixed.Value)
			if empty.fixed.Latency != nil && empty.fixed.Latency.P99MS > 0 {
				fixed.also("p99 vs empty store", round(st.Latency.P99MS/empty.fixed.Latency.P99MS, 2), "×")
			}
		}
		sc.add(fixed)
		// Throughput: a closed-loop burst over TCP, as e2e-tcp.
		if stored > 0 {
			sc.profile(s, "burst "+label+" stored", 3)
		}
		b, err := r.e2eBurst(ps, sk, r.tcpPublisher(s.TCPAddr, proj.API.Key, eid, r.plan.E2ETCP, r.plan.BacklogE2E))
		if err != nil {
			return err
		}
		bc := burstCase(fmt.Sprintf("e2e burst, TCP, %s stored", label), b)
		if empty.burst == nil {
			empty.burst = bc
		} else {
			bc.setBaseline("same burst, empty store", empty.burst.Value)
			bc.atLeast("≥ 0.90 of empty (issue: at 10M stored)", 0.9, true)
		}
		bc.also("data dir", round(float64(dirSize(s.DataDir))/(1<<20), 0), " MB")
		sc.add(bc)
		return nil
	}
	if err := measure(0, "0"); err != nil {
		return err
	}
	stored := 0
	for _, target := range r.plan.BacklogTargets {
		n, err := r.fillBacklog(sc, s, sk, proj, stored, target)
		if err != nil {
			return err
		}
		stored += n
		// The burst's warm-up, as for the empty store: the restarted process's first connections and
		// caches are not what is measured.
		if _, err := r.e2eBurst(ps, sk, r.tcpPublisher(s.TCPAddr, proj.API.Key, eid, r.plan.E2ETCP, 500)); err != nil {
			return fmt.Errorf("warm-up at %d stored: %w", stored, err)
		}
		if err := measure(stored, num(float64(stored))); err != nil {
			return err
		}
	}
	sc.note("one node: measured with an empty store, then after each fill to %s events stored, each measured after a clean restart "+
		"and a warm-up burst of 500 events, as the empty store was measured after its start. A fill publishes TCP broadcasts of an event "+
		"type no subscription matches (each stored with its 1 KiB data and idempotency key, creating no delivery: the store grows, the "+
		"delivery backlog does not) for at most %v, its row giving the ack rate at that store size; the rest is seeded with the node "+
		"stopped, by this process opening the node's data directory as the node and publishing the same events through api.Server.Publish "+
		"(the path TCP and HTTP ingest call: idempotency check, Raft log, FSM), then the node is restarted. The fixed-rate rows repeat "+
		"e2e-fixed-rate's measurement (HTTP, open loop, %s/s for %v); the burst rows (%d events over TCP, as e2e-tcp) carry the throughput "+
		"ratio the issue's target is about", targetsText(r.plan.BacklogTargets), r.plan.BacklogFill, num(r.plan.BacklogRate), r.plan.BacklogDur, r.plan.BacklogE2E)
	return nil
}

// storedType is the event type backlog-growth fills the store with: no subscription matches it.
const storedType = "bench.stored"

func targetsText(ts []int) string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = num(float64(t))
	}
	return strings.Join(out, " and ")
}

// fillBacklog grows the node's store from stored to target events of a type nothing subscribes to: TCP
// broadcasts for at most BacklogFill (a row: the ack rate at this store size), then the rest seeded
// through the stopped node's own store code (a row: the seeding rate), then a clean restart. It
// returns how many events it added.
func (r *runner) fillBacklog(sc *scenarioRun, s *harness.Sluice, sk *sinkProc, proj *harness.Project, stored, target int) (int, error) {
	ctx := r.ctx
	w, err := begin(ctx, s, sk)
	if err != nil {
		return 0, err
	}
	sc.profile(s, "fill", int(min(r.plan.BacklogFill.Seconds()/3, 5)))
	fill, err := loadgen.RunTCP(ctx, loadgen.TCPConfig{Addr: s.TCPAddr, Key: proj.API.Key, Conns: 4, Depth: 1024, EventType: storedType,
		Data: loadgen.Data(r.plan.Payload), MaxRequests: target - stored, Duration: r.plan.BacklogFill})
	if err != nil {
		return 0, err
	}
	d, err := w.end(ctx)
	if err != nil {
		return 0, err
	}
	added := int(fill.OK)
	fc := &Case{Name: fmt.Sprintf("store events over TCP, from %s stored (no deliveries)", num(float64(stored))), Figure: "acked publishes/s",
		Value: round(fill.PerSecond, 0), LatencyKind: "ack", Latency: &fill.Latency, Load: fill, Complete: fill.Errors == 0, MetricsDelta: d}
	w.cost(fc, float64(fill.OK))
	fc.also("stored", float64(fill.OK), " events")
	fc.also("in", round(fill.ElapsedS, 1), " s")
	fc.also("data dir", round(float64(dirSize(s.DataDir))/(1<<20), 0), " MB")
	sc.add(fc)
	if stored+added >= target {
		return added, nil
	}

	clean, took := s.Terminate()
	if !clean {
		return added, fmt.Errorf("stop before seeding was not clean (took %v)", took)
	}
	sd, err := openSeeder(ctx, s)
	if err != nil {
		return added, err
	}
	want := int64(target - stored - added)
	logf("backlog-growth: seeding %d events through the store", want)
	t0cpu := harness.ProcCPU(os.Getpid())
	seed := sd.publish(ctx, proj.ID, storedType, loadgen.Data(r.plan.Payload), want, 256, r.plan.BacklogSeed)
	cpu := harness.ProcCPU(os.Getpid()) - t0cpu
	if err := sd.close(); err != nil {
		return added, fmt.Errorf("close seeded store: %w", err)
	}
	added += int(seed.N)
	seedCase := &Case{Name: fmt.Sprintf("seed events through the store, to %s stored", num(float64(stored+added))), Figure: "events stored/s",
		Value: round(float64(seed.N)/seed.Elapsed.Seconds(), 0), Complete: seed.Complete && seed.Err == nil}
	seedCase.also("seeded", float64(seed.N), " events")
	seedCase.also("in", round(seed.Elapsed.Seconds(), 1), " s")
	seedCase.also("runner CPU per 1,000 (store, Raft, FSM in-process)", round(cpu.Seconds()*1000/float64(max(seed.N, 1)), 3), " s")
	seedCase.also("data dir", round(float64(dirSize(s.DataDir))/(1<<20), 0), " MB")
	sc.add(seedCase)
	if seed.Err != nil || !seed.Complete {
		sc.note("seeding to %d stopped after %d events (bound %v): %v", target, seed.N, r.plan.BacklogSeed, seed.Err)
	}
	if err := s.Restart(); err != nil {
		return added, err
	}
	if err := s.WaitReady(ctx, 5*time.Minute); err != nil {
		return added, fmt.Errorf("restart after seeding: %w", err)
	}
	return added, nil
}
