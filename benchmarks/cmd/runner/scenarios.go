package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/latency"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/benchmarks/sink"
)

// scenario is one named measurement. run adds Cases to sc; it may start sluice processes and sinks
// through sc, which stops them when run returns.
type scenario struct {
	name          string
	about         string
	needsUpstream bool // measure the upstream ceiling first even when not selected
	run           func(r *runner, sc *scenarioRun) error
}

// scenarios run in this order. To add one: write a func(*runner, *scenarioRun) error and list it here.
var scenarios = []scenario{
	{"upstream", "loadgen -> sink directly, 1 KiB JSON: the raw HTTP ceiling of this machine (the baseline)", false, runUpstream},
	{"ingest-http", "acknowledged HTTP publishes/s at 1, 16 and 64 clients to a paused endpoint; fsyncs/event, commands/entry", true, runIngestHTTP},
	{"ingest-tcp", "acknowledged TCP publishes/s (connections × depth in flight) to a paused endpoint, next to ingest-http at 64 clients on the same node", false, runIngestTCP},
	{"egress", "a backlog fanned out to 1, 100 (and 10,000) paused endpoints, then activated: delivered/s at the sink", true, runEgress},
	{"slow-endpoint", "one endpoint answering after 100 ms: delivered/s against the lane's in-flight cap (32 / 0.1 s)", false, runSlowEndpoint},
	{"failing-endpoint", "one endpoint failing 50% of first attempts (linear retry, 1 s): time until all are delivered", false, runFailingEndpoint},
	{"e2e-tcp", "a burst published over TCP (and over HTTP) as fast as it goes, all delivered: delivered/s as a ratio to upstream", true, runE2ETCP},
	{"e2e-fixed-rate", "open-loop publishes at a fixed rate to one endpoint: publish-to-delivery latency, rate sustained", false, runE2E},
	{"noisy-neighbour", "100 healthy endpoints plus one that never answers (http_timeout 5 s): healthy delivered/s", false, runNoisyNeighbour},
	{"backlog-growth", "e2e at a fixed rate and a TCP burst with an empty store, then again after storing as many events as fit", false, runBacklogGrowth},
	{"scheduler-scale", "deliveries pending retry (up to 1M as time allows): restart to wheel rebuilt, peak RSS", false, runSchedulerScale},
	{"cluster", "three nodes (127.0.0.1-3, --join) next to one: TCP publish and e2e throughput; kill -9 of the leader under publishing", false, runCluster},
	{"broker-ingest", "bursts produced to Kafka (kfake) and NATS JetStream (embedded), consumed by broker sources, all delivered: delivered/s beside the same burst over HTTP", false, runBrokerIngest},
}

const eventType = "bench.event"

func bearer(key string) http.Header {
	return http.Header{"Authorization": {"Bearer " + key}, "Content-Type": {"application/json"}}
}

// ---- measurement windows over /metrics and the process's CPU ----

var deltaSeries = []string{
	"sluice_wal_syncs_total",
	"sluice_wal_entries_total",
	"sluice_wal_bytes_in_total",
	"sluice_wal_bytes_stored_total",
	"sluice_raft_entries_proposed_total",
	"sluice_raft_commands_proposed_total",
	"sluice_events_ingested_total",
	"sluice_dispatch_attempts_total",
	`sluice_dispatch_outcomes_total{outcome="success"}`,
	`sluice_dispatch_outcomes_total{outcome="retry"}`,
	`sluice_dispatch_outcomes_total{outcome="failed"}`,
}

type window struct {
	ps   procSet
	m0   []harness.Metrics
	cpu0 cpuSample
	use  CPUUse
	// Set by end: CPU seconds of the Sluice nodes and of the sinks, and the largest node's peak RSS
	// since begin.
	sluiceCPU, sinkCPU float64
	peakRSS            uint64
}

// begin starts a measurement of s (nil for none) and the given sinks.
func begin(ctx context.Context, s *harness.Sluice, sinks ...*sinkProc) (*window, error) {
	ps := procSet{sinks: sinks}
	if s != nil {
		ps.sluices = []*harness.Sluice{s}
	}
	return beginSet(ctx, ps)
}

// beginSet starts a measurement over several nodes: metrics deltas are summed over them.
func beginSet(ctx context.Context, ps procSet) (*window, error) {
	w := &window{ps: ps}
	for _, s := range ps.sluices {
		m, err := s.Scrape(ctx)
		if err != nil {
			return nil, err
		}
		w.m0 = append(w.m0, m)
		s.ResetPeakRSS()
	}
	w.cpu0 = sampleCPU(ps)
	return w, nil
}

// end returns the deltas of deltaSeries (summed over the nodes still running) plus "cpu_seconds"
// (the nodes' user+sys time) and "sink_cpu_seconds", and keeps the machine's CPU split in w.use.
func (w *window) end(ctx context.Context) (map[string]float64, error) {
	c := sampleCPU(w.ps)
	w.use = w.cpu0.until(c)
	w.sluiceCPU = max(0, (c.sluice - w.cpu0.sluice).Seconds())
	w.sinkCPU = max(0, (c.sink - w.cpu0.sink).Seconds())
	d := map[string]float64{"cpu_seconds": w.sluiceCPU, "sink_cpu_seconds": w.sinkCPU}
	for i, s := range w.ps.sluices {
		if !s.Running() {
			continue
		}
		w.peakRSS = max(w.peakRSS, s.PeakRSS())
		m, err := s.Scrape(ctx)
		if err != nil {
			return nil, err
		}
		for _, name := range deltaSeries {
			d[name] += w.m0[i].Delta(m, name)
		}
	}
	return d, nil
}

// cost fills the case's per-row cost from the window: CPU per 1,000 of events, peak RSS, the split.
func (w *window) cost(c *Case, events float64) {
	c.CPU = &w.use
	if events <= 0 {
		return
	}
	c.CostEvents = events
	if len(w.ps.sluices) > 0 {
		v := round(w.sluiceCPU*1000/events, 3)
		c.SluiceCPUPer1k = &v
	}
	if len(w.ps.sinks) > 0 {
		v := round(w.sinkCPU*1000/events, 3)
		c.SinkCPUPer1k = &v
	}
	if w.peakRSS > 0 {
		c.PeakRSSMB = round(float64(w.peakRSS)/(1<<20), 0)
	}
}

// waitIdle waits (bounded) until the node has nothing scheduled, queued or in flight.
func waitIdle(ctx context.Context, s *harness.Sluice, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		m, err := s.Scrape(ctx)
		if err == nil && m.Sum("sluice_scheduler_pending") == 0 && m.Sum("sluice_dispatch_queued") == 0 && m.Sum("sluice_dispatch_in_flight") == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node not idle within %v", limit)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSeries waits (bounded) until series has grown by want since m0.
func waitSeries(ctx context.Context, s *harness.Sluice, m0 harness.Metrics, series string, want float64, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for ctx.Err() == nil {
		if m, err := s.Scrape(ctx); err == nil && m0.Delta(m, series) >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startSink(sc *scenarioRun, sp sinkSpec) (*sinkProc, error) {
	sk, err := startSinkProc(sp)
	if err != nil {
		return nil, err
	}
	sc.onClose(sk.Close)
	return sk, nil
}

// profile takes a CPU profile of s over the next secs seconds in the background (with -profile) and
// records its summary under label; stopAll waits for it.
func (sc *scenarioRun) profile(s *harness.Sluice, label string, secs int) {
	if !sc.r.opts.profile || s.OpsURL == "" {
		return
	}
	secs = max(secs, 1)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(sc.res.Name+"-"+label))
	file := filepath.Join(sc.r.profileDir, name+".pprof")
	sc.profiles.Add(1)
	go func() {
		defer sc.profiles.Done()
		ps := ProfileSummary{Case: label, File: filepath.ToSlash(file), Seconds: secs}
		if err := s.Profile(sc.r.ctx, secs, file); err != nil {
			ps.Error = err.Error()
		} else {
			ps.TopFlat, ps.TopCum = pprofTop(file)
		}
		sc.mu.Lock()
		sc.res.Profiles = append(sc.res.Profiles, ps)
		sc.mu.Unlock()
		if ps.Error != "" {
			logf("   profile %s failed: %s", label, ps.Error)
			return
		}
		logf("   profile %s: %s", label, file)
	}()
}

// pprofTop is `go tool pprof -top` of a profile, by flat and by cumulative time (15 lines each).
func pprofTop(file string) (flat, cum []string) {
	top := func(extra ...string) []string {
		out, err := exec.Command("go", append([]string{"tool", "pprof", "-top", "-nodecount=15"}, append(extra, file)...)...).Output()
		if err != nil {
			return []string{"go tool pprof: " + err.Error()}
		}
		var lines []string
		body := false
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "flat ") {
				body = true
				continue
			}
			if body && strings.TrimSpace(l) != "" {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			} else if !body && strings.HasPrefix(strings.TrimSpace(l), "Showing nodes") {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		return lines
	}
	return top(), top("-cum")
}

// ---- 1. upstream ----

func runUpstream(r *runner, sc *scenarioRun) error {
	for _, c := range r.plan.UpstreamConns {
		m, err := r.measureUpstream(c, r.plan.UpstreamDur)
		if err != nil {
			return err
		}
		if _, ok := r.upstream[c]; !ok {
			r.upstream[c] = m.res
		}
		res := m.res
		cs := &Case{Name: fmt.Sprintf("%d conns", c), Figure: "requests/s", Value: round(res.PerSecond, 0),
			LatencyKind: "ack", Latency: &res.Latency, Load: res, Complete: res.Errors == 0}
		m.w.cost(cs, float64(res.OK))
		cs.also("load generator CPU/req", round(res.ClientCPUPerReqUS, 1), " µs")
		sc.add(cs)
	}
	fs, err := fsyncProbe(r.plan.UpstreamDur)
	if err != nil {
		return err
	}
	sc.add(fs)
	sc.note("the load generator (in the runner) and the sink (a process of its own) share the machine's 2 cores, as the load " +
		"generator and Sluice do in ingest-http and Sluice and the sink do in egress; the body is the exact 1 KiB-data publish " +
		"body of ingest-http. ingest-http, ingest-tcp's HTTP comparison, egress and e2e-tcp re-measure this baseline right before their cases and use that one")
	return nil
}

type upstreamMeasure struct {
	res *loadgen.Result
	w   *window
}

func (r *runner) measureUpstream(conns int, dur time.Duration) (*upstreamMeasure, error) {
	sk, err := startSinkProc(sinkSpec{})
	if err != nil {
		return nil, err
	}
	defer sk.Close()
	cfg := loadgen.Config{URL: sk.URL() + "/upstream", Body: loadgen.PublishBody("01UPSTREAMBASELINE00000000", eventType, r.plan.Payload),
		Conns: conns, Duration: r.plan.Warmup / 2, MaxRequests: 1_000_000}
	if _, err := loadgen.Run(r.ctx, cfg); err != nil {
		return nil, err
	}
	cfg.Duration = dur
	w, err := begin(r.ctx, nil, sk)
	if err != nil {
		return nil, err
	}
	res, err := loadgen.Run(r.ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := w.end(r.ctx); err != nil {
		return nil, err
	}
	return &upstreamMeasure{res: res, w: w}, nil
}

// baselineNow measures the upstream rate at conns immediately before a case, so both see the same
// machine load.
func (r *runner) baselineNow(conns int) (*loadgen.Result, error) {
	m, err := r.measureUpstream(conns, r.plan.BaselineDur)
	if err != nil {
		return nil, err
	}
	return m.res, nil
}

// fsyncProbe times 4 KiB appends + fdatasync in the temp directory (where the data directories live):
// one synced write per event would cap ingest at its rate.
func fsyncProbe(dur time.Duration) (*Case, error) {
	f, err := os.CreateTemp("", "sgwbench-fsync-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	h := latency.New()
	start := time.Now()
	n := 0
	for time.Since(start) < dur && n < 200_000 {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		h.Record(time.Since(t))
		n++
	}
	sum := h.Summary()
	return &Case{Name: "fsync 4 KiB", Figure: "synced appends/s (one at a time)", Value: round(float64(n)/time.Since(start).Seconds(), 0),
		LatencyKind: "write+fdatasync", Latency: &sum, Complete: true}, nil
}

// ---- 2. ingest-http ----

func runIngestHTTP(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	s, err := sc.startSluice()
	if err != nil {
		return err
	}
	sk, err := startSink(sc, sinkSpec{})
	if err != nil {
		return err
	}
	proj, err := s.Root().CreateProject(ctx, "bench-ingest")
	if err != nil {
		return err
	}
	eid, err := proj.CreateEndpoint(ctx, harness.Endpoint{URL: sk.URL() + "/ingest", Name: "paused sink", Status: "paused"})
	if err != nil {
		return err
	}
	if _, err := proj.Subscribe(ctx, eid, eventType); err != nil {
		return err
	}
	cfg := loadgen.Config{URL: proj.EventsURL(""), Header: bearer(proj.API.Key), Body: loadgen.PublishBody(eid, eventType, r.plan.Payload),
		Conns: 16, Duration: r.plan.Warmup, MaxRequests: 50_000}
	if _, err := loadgen.Run(ctx, cfg); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for _, c := range r.plan.IngestClients {
		up, err := r.baselineNow(c)
		if err != nil {
			return err
		}
		w, err := begin(ctx, s, sk)
		if err != nil {
			return err
		}
		cfg.Conns, cfg.Duration, cfg.MaxRequests = c, r.plan.IngestDur, r.plan.IngestMax
		if c == r.plan.IngestClients[len(r.plan.IngestClients)-1] {
			sc.profile(s, fmt.Sprintf("%d clients", c), int(r.plan.IngestDur.Seconds()*0.6))
		}
		res, err := loadgen.Run(ctx, cfg)
		if err != nil {
			return err
		}
		d, err := w.end(ctx)
		if err != nil {
			return err
		}
		cs := &Case{Name: fmt.Sprintf("%d clients", c), Figure: "acked publishes/s", Value: round(res.PerSecond, 0),
			LatencyKind: "ack", Latency: &res.Latency, Load: res, Complete: res.Errors == 0, MetricsDelta: d}
		cs.setBaseline(fmt.Sprintf("upstream %d conns, just before", c), up.PerSecond)
		ev := float64(res.OK)
		w.cost(cs, ev)
		cs.also("fsyncs/event", round(d["sluice_wal_syncs_total"]/ev, 4), "")
		cs.also("cmds/entry", round(d["sluice_raft_commands_proposed_total"]/d["sluice_raft_entries_proposed_total"], 1), "")
		if res.Errors > 0 {
			cs.also("errors", float64(res.Errors), "")
			sc.note("%d clients: %d publishes failed, first: %s", c, res.Errors, res.FirstError)
		}
		if got := d["sluice_events_ingested_total"]; got != ev {
			sc.note("%d clients: sluice_events_ingested_total grew by %.0f but the load generator counted %.0f acknowledged publishes", c, got, ev)
		}
		sc.add(cs)
	}
	sc.note("the endpoint is paused so that delivery does not compete with ingest for the 2 cores: every publish still " +
		"writes its event, its delivery and the due-time index entry in the same Raft entry, and the dispatcher still " +
		"loads each delivery once and drops it (endpoint not active), so the storage work per event is that of real traffic")
	sc.note("fsyncs/event counts sluice_wal_syncs_total, i.e. synced Pebble commits on the Raft log; Pebble may merge " +
		"concurrent synced commits into one fdatasync, so the real fdatasync count is at most this")
	return nil
}

// ---- backlog drains: egress, slow, failing, noisy neighbour ----

type drainSpec struct {
	name      string
	endpoints int // healthy endpoints, all on one sink
	events    int // broadcast events; each goes to every endpoint
	sink      sinkSpec
	strategy  *harness.Strategy
	// hang adds endpoints on a sink that never answers, with http_timeout hangTimeout seconds.
	hang        int
	hangTimeout int
	// timeout bounds the wait for the last delivery (0: plan.DrainTimeout).
	timeout time.Duration
	// beforeMeasure, when set, runs once the backlog is published and the node is idle, just before
	// the endpoints are activated (for a baseline measured next to the case).
	beforeMeasure func() error
	// profile, when > 0, is the length in seconds of a CPU profile taken from activation (-profile).
	profile int
}

type drainResult struct {
	total      uint64
	delivered  uint64
	complete   bool
	setup      time.Duration // creating endpoints and subscriptions
	publish    *loadgen.Result
	activate   time.Duration // activating every endpoint
	elapsed    time.Duration // first activation to the last unique delivery
	perSecond  float64
	sink, hung sink.Stats
	delta      map[string]float64
	w          *window
}

func (r *runner) drain(sc *scenarioRun, spec drainSpec) (*drainResult, error) {
	ctx := r.ctx
	s, err := sc.startSluice()
	if err != nil {
		return nil, err
	}
	defer sc.stopSluice(s)
	sk, err := startSink(sc, spec.sink)
	if err != nil {
		return nil, err
	}
	var hangSink *sinkProc
	if spec.hang > 0 {
		if hangSink, err = startSink(sc, sinkSpec{Hang: true}); err != nil {
			return nil, err
		}
	}
	proj, err := s.Root().CreateProject(ctx, "bench-"+spec.name)
	if err != nil {
		return nil, err
	}
	out := &drainResult{total: uint64(spec.events * spec.endpoints)}
	t0 := time.Now()
	n := spec.endpoints + spec.hang
	ids := make([]string, n)
	err = harness.Parallel(n, 32, func(i int) error {
		e := harness.Endpoint{URL: fmt.Sprintf("%s/ep/%d", sk.URL(), i), Status: "paused", Strategy: spec.strategy}
		if i >= spec.endpoints {
			e.URL, e.HTTPTimeout = fmt.Sprintf("%s/hang/%d", hangSink.URL(), i), spec.hangTimeout
		}
		id, err := proj.CreateEndpoint(ctx, e)
		if err != nil {
			return err
		}
		ids[i] = id
		_, err = proj.Subscribe(ctx, id, "*")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create endpoints: %w", err)
	}
	out.setup = time.Since(t0)

	pub, err := loadgen.Run(ctx, loadgen.Config{URL: proj.EventsURL("/broadcast"), Header: bearer(proj.API.Key),
		Body: loadgen.PublishBody("", eventType, r.plan.Payload), Conns: min(16, spec.events), MaxRequests: spec.events, Duration: 2 * time.Minute})
	if err != nil {
		return nil, err
	}
	out.publish = pub
	if pub.OK != uint64(spec.events) {
		return nil, fmt.Errorf("published %d of %d backlog events (first error: %s)", pub.OK, spec.events, pub.FirstError)
	}
	// Deliveries to paused endpoints pass through the wheel and are dropped at load; let that settle so
	// the measurement starts from a quiet node.
	if err := waitIdle(ctx, s, 30*time.Second); err != nil {
		return nil, err
	}
	if spec.beforeMeasure != nil {
		if err := spec.beforeMeasure(); err != nil {
			return nil, err
		}
	}

	sinks := []*sinkProc{sk}
	if hangSink != nil {
		sinks = append(sinks, hangSink)
	}
	w, err := begin(ctx, s, sinks...)
	if err != nil {
		return nil, err
	}
	out.w = w
	if spec.profile > 0 {
		sc.profile(s, spec.name, spec.profile)
	}
	start := time.Now()
	// Hanging endpoints first, so they hold their lane's slots before the healthy ones start.
	order := append(ids[spec.endpoints:len(ids):len(ids)], ids[:spec.endpoints]...)
	if err := harness.Parallel(len(order), 32, func(i int) error { return proj.Activate(ctx, order[i]) }); err != nil {
		return nil, fmt.Errorf("activate: %w", err)
	}
	out.activate = time.Since(start)
	limit := r.plan.DrainTimeout
	if spec.timeout > 0 {
		limit = spec.timeout
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	out.delivered, err = sk.WaitUnique(wctx, out.total)
	cancel()
	out.complete = err == nil
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out.sink = sk.Stats()
	last := out.sink.LastAt
	if last.IsZero() || !out.complete {
		last = time.Now()
	}
	out.elapsed = last.Sub(start)
	out.perSecond = float64(out.delivered) / out.elapsed.Seconds()
	// Let the results reach the log before reading the counters.
	waitSeries(ctx, s, w.m0[0], `sluice_dispatch_outcomes_total{outcome="success"}`, float64(out.delivered), 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	if out.delta, err = w.end(ctx); err != nil {
		return nil, err
	}
	if hangSink != nil {
		out.hung = hangSink.Stats()
	}
	if !out.complete {
		sc.note("%s: only %d of %d deliveries arrived within %v (attempts %.0f, success %.0f, retry %.0f, failed %.0f)", spec.name,
			out.delivered, out.total, limit, out.delta["sluice_dispatch_attempts_total"], out.delta[`sluice_dispatch_outcomes_total{outcome="success"}`],
			out.delta[`sluice_dispatch_outcomes_total{outcome="retry"}`], out.delta[`sluice_dispatch_outcomes_total{outcome="failed"}`])
	}
	return out, nil
}

// drainCase turns a drain into a Case with the common secondary figures.
func drainCase(name string, d *drainResult) *Case {
	cs := &Case{Name: name, Figure: "delivered/s", Value: round(d.perSecond, 0), LatencyKind: "publish-to-delivery",
		Complete: d.complete, MetricsDelta: d.delta, Sink: &d.sink, Load: d.publish}
	n := float64(d.delivered)
	d.w.cost(cs, n)
	cs.also("deliveries", n, "")
	cs.also("fsyncs/delivery", round(d.delta["sluice_wal_syncs_total"]/n, 4), "")
	cs.also("deliveries/entry", round(n/d.delta["sluice_raft_entries_proposed_total"], 1), "")
	cs.also("sink conns opened", float64(d.sink.ConnsOpened), "")
	cs.also("peak open", float64(d.sink.ConnsPeak), "")
	if d.sink.Duplicates > 0 {
		cs.also("duplicates", float64(d.sink.Duplicates), "")
	}
	return cs
}

// ---- 3. egress ----

func runEgress(r *runner, sc *scenarioRun) error {
	const conns = 32 // one lane's in-flight cap; many lanes use up to --workers 256
	for _, ec := range r.plan.Egress {
		var up *loadgen.Result
		d, err := r.drain(sc, drainSpec{name: fmt.Sprintf("egress-%d", ec.Endpoints), endpoints: ec.Endpoints, events: ec.Events, timeout: ec.Timeout,
			// 1 s: the 1-endpoint drain of the standard run lasts about 2 s, and a profile still
			// running when its server stops is lost.
			beforeMeasure: func() (err error) { up, err = r.baselineNow(conns); return err }, profile: 1})
		if err != nil {
			return fmt.Errorf("%d endpoints: %w", ec.Endpoints, err)
		}
		cs := drainCase(fmt.Sprintf("%d endpoint(s) × %d events", ec.Endpoints, ec.Events), d)
		cs.setBaseline(fmt.Sprintf("upstream %d conns, just before", conns), up.PerSecond)
		cs.also("activation", round(d.activate.Seconds(), 2), " s")
		if ec.Endpoints == 1 {
			cs.atLeast("≥ 0.60 of upstream", 0.6, true)
		}
		if ec.Endpoints >= 1000 {
			cs.also("setup", round(d.setup.Seconds(), 1), " s")
		}
		sc.add(cs)
		if ec.Endpoints == 100 {
			r.egress100 = cs
		}
	}
	if len(r.plan.Egress) < 3 {
		sc.note("the 10,000-endpoint case is left out of -quick runs: setting up 10,000 endpoints and subscriptions takes about 7 s, " +
			"and draining even one broadcast to them about 40 s, because per-delivery cost grows with fan-out (see docs/benchmarks.md)")
	}
	sc.note("delivered/s is deliveries / (first activate call → last unique delivery at the sink); it includes the " +
		"activation calls, which for many endpoints overlap delivery. Publishing goes through /events/broadcast with one " +
		"\"*\" subscription per endpoint; the backlog is published while the endpoints are paused and the node is idle before activation")
	return nil
}

// ---- 4. slow endpoint ----

func runSlowEndpoint(r *runner, sc *scenarioRun) error {
	const delay = 100 * time.Millisecond
	const laneCap = 32 // dispatcher.DefaultMaxInFlightPerEndpoint (min with --workers 256 / 4)
	d, err := r.drain(sc, drainSpec{name: "slow", endpoints: 1, events: r.plan.SlowEvents, sink: sinkSpec{Delay: delay}, profile: 3})
	if err != nil {
		return err
	}
	cs := drainCase(fmt.Sprintf("1 endpoint, %v answers", delay), d)
	cs.setBaseline("lane cap 32 / 0.1 s", laneCap/delay.Seconds())
	cs.also("sink max in flight", float64(d.sink.MaxInFlight), "")
	sc.add(cs)
	return nil
}

// ---- 5. failing endpoint ----

func runFailingEndpoint(r *runner, sc *scenarioRun) error {
	strategy := &harness.Strategy{Type: "linear", Duration: 1, RetryCount: 3}
	n := r.plan.FailingEvents
	ctl, err := r.drain(sc, drainSpec{name: "failing-control", endpoints: 1, events: n, strategy: strategy})
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	d, err := r.drain(sc, drainSpec{name: "failing", endpoints: 1, events: n, strategy: strategy, sink: sinkSpec{FailFirstShare: 0.5, FailRandom: r.opts.failRandom}, profile: 1})
	if err != nil {
		return err
	}
	cs := drainCase(fmt.Sprintf("1 endpoint, %d events, 50%% first attempts fail", n), d)
	cs.Figure, cs.Value = "seconds until all delivered", round(d.elapsed.Seconds(), 2)
	// The fastest possible: the failure-free drain of the same backlog plus the one retry interval.
	cs.setBaseline("no-failure drain + 1 s retry wait", round(ctl.elapsed.Seconds(), 2)+1)
	cs.also("no-failure drain", round(ctl.elapsed.Seconds(), 2), " s")
	cs.also("attempts/delivery", round(float64(d.sink.Requests)/float64(d.delivered), 2), "")
	cs.also("injected failures", float64(d.sink.InjectedFailures), "")
	sc.add(cs)
	spacing := "failures are every second new delivery id, evenly spaced, so the circuit breaker (10 consecutive failures) is not what is measured"
	if r.opts.failRandom {
		spacing = "failing ids are picked by hash (-failing-random), so runs of 10+ consecutive failures can open the circuit breaker for its 30 s cooldown"
	}
	sc.note("the endpoint's strategy is {\"type\":\"linear\",\"duration\":1,\"retry_count\":3} so the second attempt comes "+
		"1 s after a failure (the default schedule waits 5 s, then 5 min); %s; ratio > 1 is time lost beyond the retry wait", spacing)
	return nil
}

// ---- 6. end-to-end at a fixed rate ----

func runE2E(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	s, err := sc.startSluice()
	if err != nil {
		return err
	}
	sk, err := startSink(sc, sinkSpec{})
	if err != nil {
		return err
	}
	proj, err := s.Root().CreateProject(ctx, "bench-e2e")
	if err != nil {
		return err
	}
	eid, err := proj.CreateEndpoint(ctx, harness.Endpoint{URL: sk.URL() + "/e2e"})
	if err != nil {
		return err
	}
	if _, err := proj.Subscribe(ctx, eid, eventType); err != nil {
		return err
	}
	base := loadgen.Config{URL: proj.EventsURL(""), Header: bearer(proj.API.Key), Body: loadgen.PublishBody(eid, eventType, r.plan.Payload), Conns: 256}
	ingestCeiling := r.ingestCeiling()
	type rateCase struct {
		rate          float64
		stretch, half bool
	}
	var rates []rateCase
	for _, x := range r.plan.E2ERates {
		rates = append(rates, rateCase{rate: x})
	}
	if r.e2eHTTP == 0 && r.opts.e2eHTTP > 0 {
		r.e2eHTTP = r.opts.e2eHTTP
		sc.note("the half-rate case halves %s/s given with -e2e-http-rate, not a rate e2e-tcp measured in this run", num(r.e2eHTTP))
	}
	if r.e2eHTTP > 0 {
		rates = append(rates, rateCase{rate: math.Round(r.e2eHTTP/2/10) * 10, half: true})
		sort.SliceStable(rates, func(i, j int) bool { return rates[i].rate < rates[j].rate })
	} else {
		sc.note("e2e-tcp did not run, so there is no sustainable rate to halve for the issue's p99 < 25 ms target")
	}
	for _, x := range r.plan.E2EStretch {
		rates = append(rates, rateCase{rate: x, stretch: true})
	}
	for _, rc := range rates {
		rate := rc.rate
		if rc.stretch && ingestCeiling > 0 && rate > ingestCeiling {
			sc.note("%s/s skipped: this run's closed-loop ingest ceiling (ingest-http, 64 clients) was %s/s, so an open-loop "+
				"run at that rate would only measure queueing", num(rate), num(ingestCeiling))
			continue
		}
		sk.Reset() // the previous rate's deliveries are all in: count the warm-up from zero
		warm := base
		warm.Rate, warm.Duration, warm.MaxRequests = rate, r.plan.Warmup, int(rate*r.plan.Warmup.Seconds())+1
		wres, err := loadgen.Run(ctx, warm)
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sk.WaitUnique(wctx, wres.OK)
		cancel()
		sk.Reset()

		w, err := begin(ctx, s, sk)
		if err != nil {
			return err
		}
		cfg := base
		cfg.Rate, cfg.Duration, cfg.MaxRequests = rate, r.plan.E2EDur, int(rate*r.plan.E2EDur.Seconds())
		if rc.half {
			sc.profile(s, "half rate", int(r.plan.E2EDur.Seconds()*0.6))
		}
		res, err := loadgen.Run(ctx, cfg)
		if err != nil {
			return err
		}
		wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		delivered, werr := sk.WaitUnique(wctx, res.OK)
		cancel()
		if werr != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		d, err := w.end(ctx)
		if err != nil {
			return err
		}
		st := sk.Stats()
		name := fmt.Sprintf("%s/s for %v", num(rate), r.plan.E2EDur)
		if rc.half {
			name = fmt.Sprintf("%s/s for %v (half of e2e-tcp's HTTP rate %s/s)", num(rate), r.plan.E2EDur, num(r.e2eHTTP))
		}
		cs := &Case{Name: name, Figure: "achieved publishes/s", Value: round(res.Achieved, 0),
			LatencyKind: "publish-to-delivery", Latency: &st.Latency, Complete: werr == nil && res.Errors == 0, Load: res, Sink: &st, MetricsDelta: d}
		w.cost(cs, float64(res.OK))
		cs.setBaseline("target", rate)
		cs.also("ack p50", res.Latency.P50MS, " ms")
		cs.also("ack p99", res.Latency.P99MS, " ms")
		cs.also("ack p999", res.Latency.P999MS, " ms")
		cs.also("ack p99 from actual send", res.ServiceLatency.P99MS, " ms")
		cs.also("delivered/acked", round(float64(delivered)/float64(res.OK), 4), "")
		cs.also("fsyncs/event", round(d["sluice_wal_syncs_total"]/float64(res.OK), 3), "")
		if res.Errors > 0 {
			cs.also("publish errors", float64(res.Errors), "")
		}
		if st.Duplicates > 0 {
			cs.also("duplicates", float64(st.Duplicates), "")
		}
		if rc.half {
			cs.atMost("p99 publish-to-delivery < 25 ms", st.Latency.P99MS, 25)
		}
		sc.add(cs)
	}
	sc.note("publish-to-delivery latency is sink receive time minus the sent_ns the load generator wrote just before "+
		"sending (same host clock); ack latency is measured from each request's scheduled time (open loop, no coordinated omission); "+
		"each rate is preceded by a %v warm-up at that rate whose deliveries are not counted", r.plan.Warmup)
	return nil
}

// ingestCeiling is the 64-client ingest figure of this run, 0 if ingest-http did not run.
func (r *runner) ingestCeiling() float64 {
	for _, s := range r.rep.Scenarios {
		if s.Name != "ingest-http" {
			continue
		}
		best := 0.0
		for _, c := range s.Cases {
			best = max(best, c.Value)
		}
		return best
	}
	return 0
}

// ---- 7. noisy neighbour ----

func runNoisyNeighbour(r *runner, sc *scenarioRun) error {
	var ec egressCase
	for _, c := range r.plan.Egress {
		if c.Endpoints == 100 {
			ec = c
		}
	}
	if ec.Endpoints == 0 {
		return errors.New("plan has no 100-endpoint egress case to compare with")
	}
	if r.egress100 == nil {
		d, err := r.drain(sc, drainSpec{name: "noisy-baseline", endpoints: 100, events: ec.Events})
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		r.egress100 = drainCase(fmt.Sprintf("baseline: 100 endpoints × %d events, no neighbour", ec.Events), d)
		sc.add(r.egress100)
		sc.note("egress did not run, so its 100-endpoint case was measured here as the baseline")
	}
	d, err := r.drain(sc, drainSpec{name: "noisy", endpoints: 100, events: ec.Events, hang: 1, hangTimeout: 5, profile: 3})
	if err != nil {
		return err
	}
	cs := drainCase(fmt.Sprintf("100 healthy × %d events + 1 hung", ec.Events), d)
	cs.Figure = "healthy delivered/s"
	cs.setBaseline("egress 100 endpoints", r.egress100.Value)
	cs.atLeast("≥ 0.90 of egress 100 endpoints", 0.9, true)
	cs.also("hung endpoint: requests held", float64(d.hung.Requests), "")
	cs.also("hung max in flight", float64(d.hung.MaxInFlight), "")
	sc.add(cs)
	sc.note("the hung endpoint (http_timeout 5 s, default retry schedule) is activated first so its lane holds its in-flight " +
		"slots before the healthy lanes start; it receives the same broadcast events")
	return nil
}
