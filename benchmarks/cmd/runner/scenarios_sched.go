package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
)

// restartResult is one clean restart of a node: how long until the delivery engine rebuilt its wheel
// and the API was ready, and the memory it took. The log splits it: process start → raft's "starting
// election" is opening the store (replaying the state DB's WAL into its memtable, at most 64 MiB,
// whatever was written since the last flush) and the node's start; from there to "delivery engine
// active" is the election, the leader's barrier (applying what the log holds beyond the state) and the
// wheel rebuild from the due index, the part that grows with the pending count. ("leadership changed"
// can be logged after the rebuild, so it does not split it.)
type restartResult struct {
	active  time.Duration // process start → "delivery engine active" logged
	leader  time.Duration // process start → raft's "starting election" logged
	ready   time.Duration // process start → /readyz 200 and the API answering
	pending int           // the pending count that log line reports
	peakRSS uint64        // VmHWM of the new process after settling
	cpu     time.Duration // CPU of the new process until then
	stopped time.Duration // the SIGTERM shutdown before it
}

// restart stops s cleanly (SIGTERM) unless it is already stopped, starts it again on the same data
// and measures the start.
func restart(ctx context.Context, s *harness.Sluice, settle time.Duration) (*restartResult, error) {
	var took time.Duration
	if s.Running() {
		var clean bool
		if clean, took = s.Terminate(); !clean {
			return nil, fmt.Errorf("shutdown before the restart was not clean (took %v)", took)
		}
	}
	from := s.LogSize()
	t0 := time.Now()
	if err := s.Restart(); err != nil {
		return nil, err
	}
	line, at, err := s.WaitLog(ctx, "delivery engine active", from, 120*time.Second)
	if err != nil {
		return nil, err
	}
	out := &restartResult{active: at.Sub(t0), stopped: took}
	out.pending, _ = strconv.Atoi(harness.LogField(line, "pending"))
	if _, lat, err := s.WaitLog(ctx, "starting election", from, time.Second); err == nil && lat.Before(at) {
		out.leader = lat.Sub(t0)
	}
	if err := s.WaitReady(ctx, 120*time.Second); err != nil {
		return nil, err
	}
	out.ready = time.Since(t0)
	time.Sleep(settle)
	out.peakRSS, out.cpu = s.PeakRSS(), s.CPU()
	return out, nil
}

func runSchedulerScale(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	// The breaker threshold is out of reach: results complete in a different order from the one the
	// sink saw the requests in (a lane has several attempts in flight), so with two in three failing a
	// lane meets runs of 10 failures in completion order, and an open breaker holds its queue for 30 s
	// instead of putting failed deliveries in the wheel, which is what this scenario builds.
	s, err := sc.startSluice(harness.Options{TCP: true, LogLevel: "info", Args: []string{"--breaker-failures", "1000000000"}})
	if err != nil {
		return err
	}
	// Most first attempts fail (500), evenly per endpoint; a failed delivery waits an hour for its retry.
	const failShare = 2.0 / 3
	sk, err := startSink(sc, sinkSpec{FailFirstShare: failShare, FailPerPath: true})
	if err != nil {
		return err
	}
	proj, err := s.Root().CreateProject(ctx, "bench-scheduler")
	if err != nil {
		return err
	}
	strategy := &harness.Strategy{Type: "linear", Duration: 3600, RetryCount: 3}
	fan := r.plan.SchedEndpoints
	err = harness.Parallel(fan, 8, func(i int) error {
		id, err := proj.CreateEndpoint(ctx, harness.Endpoint{URL: fmt.Sprintf("%s/ep/%d", sk.URL(), i), Strategy: strategy})
		if err != nil {
			return err
		}
		_, err = proj.Subscribe(ctx, id, eventType)
		return err
	})
	if err != nil {
		return err
	}
	// The same node with nothing pending: the zero point of the restart figures.
	zero, err := restart(ctx, s, time.Second)
	if err != nil {
		return fmt.Errorf("empty restart: %w", err)
	}

	// Build: broadcasts over TCP, each creating one delivery per endpoint. The publisher keeps at most
	// `window` deliveries not yet attempted, so that when it stops every delivery is either done or
	// waiting for its retry an hour away (none is due at the restart).
	const window = 4000
	events := int(float64(r.plan.SchedTarget)/failShare/float64(fan)) + 1
	w, err := begin(ctx, s, sk)
	if err != nil {
		return err
	}
	var allowed atomic.Int64
	allowed.Store(window / int64(fan))
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		for pollCtx.Err() == nil {
			allowed.Store((int64(sk.Stats().Requests) + window) / int64(fan))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	sc.profile(s, "build", int(min(5, r.plan.SchedBuild.Seconds()/3)))
	build, err := loadgen.RunTCP(ctx, loadgen.TCPConfig{Addr: s.TCPAddr, Key: proj.API.Key, Conns: 2, Depth: 128, EventType: eventType,
		Data: loadgen.Data(r.plan.Payload), MaxRequests: events, Duration: r.plan.SchedBuild,
		Before: func(ctx context.Context, i int64) error {
			for i >= allowed.Load() {
				if err := ctx.Err(); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
			return nil
		}})
	stopPoll()
	if err != nil {
		return err
	}
	deliveries := build.OK * uint64(fan)
	// Every first attempt made, its result applied, and every retry in the wheel.
	var wheel, done, retries float64
	m0 := w.m0[0]
	var last harness.Metrics
	err = waitUntil(ctx, 2*time.Minute, func() bool {
		m, err := s.Scrape(ctx)
		if err != nil {
			return false
		}
		last = m
		retries = m0.Delta(m, `sluice_dispatch_outcomes_total{outcome="retry"}`)
		done = m0.Delta(m, `sluice_dispatch_outcomes_total{outcome="success"}`) + retries + m0.Delta(m, `sluice_dispatch_outcomes_total{outcome="failed"}`)
		wheel = m.Sum("sluice_scheduler_pending")
		return done >= float64(deliveries) && m.Sum("sluice_dispatch_queued") == 0 && m.Sum("sluice_dispatch_in_flight") == 0
	})
	if err == nil {
		// Results reach the wheel once their Raft entry is applied.
		err = waitUntil(ctx, time.Minute, func() bool {
			m, err := s.Scrape(ctx)
			if err == nil {
				wheel = m.Sum("sluice_scheduler_pending")
			}
			return wheel >= retries
		})
	}
	if err != nil {
		// A lane whose circuit breaker opened anyway holds its queue for 30 s cooldowns: go on with
		// what is pending, and say so (those deliveries are due at once after the restart).
		sc.note("not every first attempt was made within the bound (%d deliveries, outcomes %.0f, retries %.0f, queued %.0f, in flight %.0f, wheel %.0f): "+
			"a circuit breaker opened (see the log); the restart also re-queues the unattempted ones",
			deliveries, done, retries, last.Sum("sluice_dispatch_queued"), last.Sum("sluice_dispatch_in_flight"), wheel)
	}
	d, err := w.end(ctx)
	if err != nil {
		return err
	}
	rssRunning := s.RSS()
	built := int(wheel)
	bc := &Case{Name: fmt.Sprintf("build: %s deliveries to %d endpoints", num(float64(deliveries)), fan),
		Figure: "pending retries created/s", Value: round(retries/w.use.ElapsedS, 0), LatencyKind: "ack", Latency: &build.Latency,
		Load: build, Complete: build.Errors == 0, MetricsDelta: d}
	w.cost(bc, float64(deliveries))
	bc.also("first attempts", d["sluice_dispatch_attempts_total"], "")
	bc.also("pending retry (wheel)", wheel, "")
	bc.also("in", round(w.use.ElapsedS, 1), " s")
	bc.also("RSS of the running node", round(float64(rssRunning)/(1<<20), 0), " MB")
	sc.add(bc)

	var stopTook time.Duration
	if built < r.plan.SchedTarget {
		var clean bool
		if clean, stopTook = s.Terminate(); !clean {
			return fmt.Errorf("stop before seeding was not clean (took %v)", stopTook)
		}
		if err := r.seedPendingRetries(sc, s, proj, fan, r.plan.SchedTarget-built); err != nil {
			return err
		}
	}

	b, err := restart(ctx, s, 2*time.Second)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	n := b.pending
	const target = 1_000_000
	scale := float64(target) / float64(max(n, 1))
	mb := func(v float64) float64 { return round(v/(1<<20), 0) }
	rebuild := b.active - b.leader
	label := num(float64(n))
	cost := func(c *Case) {
		c.CostEvents = float64(max(n, 1))
		v := round(b.cpu.Seconds()*1000/c.CostEvents, 4)
		c.SluiceCPUPer1k = &v
		c.PeakRSSMB = mb(float64(b.peakRSS))
	}
	tc := &Case{Name: fmt.Sprintf("restart with %s pending retry: wheel rebuilt", label), Figure: "s from process start to \"delivery engine active\"",
		Value: round(b.active.Seconds(), 2), Complete: true}
	tc.setBaseline("same node empty, same run", round(zero.active.Seconds(), 2))
	tc.also("of which store open and start (to the election)", round(b.leader.Seconds(), 2), " s")
	tc.also("election, barrier and wheel rebuild", round(rebuild.Seconds()*1000, 0), " ms")
	tc.also("/readyz and API ready after", round(b.ready.Seconds(), 2), " s")
	tc.also("SIGTERM shutdown before it", round(max(b.stopped, stopTook).Seconds(), 1), " s")
	// At 1M: the same store open and election, the rebuild scaled.
	t1M := b.leader.Seconds() + rebuild.Seconds()*scale
	tc.atMost("< 10 s at 1M pending", t1M, 10)
	if n < target {
		tc.Target.Extrapolated = true
		tc.also("projected to 1M", round(t1M, 1), " s")
	}
	cost(tc)
	sc.add(tc)
	// The wheel alone, in a child process, at this N and at 1M: what 1M pending add to the RSS.
	wn, err := measureWheel(n)
	if err != nil {
		return err
	}
	w1, err := measureWheel(target)
	if err != nil {
		return err
	}
	mc := &Case{Name: fmt.Sprintf("restart with %s pending retry: peak RSS", label), Figure: "MB (VmHWM of the restarted node)",
		Value: mb(float64(b.peakRSS)), Complete: true}
	mc.setBaseline("same node empty, same run", mb(float64(zero.peakRSS)))
	// At 1M: this node's peak plus what the wheel's further entries add (measured in the child).
	rss1M := (float64(b.peakRSS) + float64(w1.PeakRSS) - float64(wn.PeakRSS)) / (1 << 20)
	mc.atMost("< 300 MB at 1M pending", rss1M, 300)
	if n < target {
		mc.Target.Extrapolated = true
		mc.also("projected to 1M", round(rss1M, 0), " MB")
	}
	cost(mc)
	sc.add(mc)
	wc := &Case{Name: "the wheel alone, 1M pending (child process)", Figure: "MB peak RSS of the process",
		Value: mb(float64(w1.PeakRSS)), Complete: true, CostEvents: target}
	wc.setBaseline(fmt.Sprintf("same, %s pending", label), mb(float64(wn.PeakRSS)))
	wc.also("live heap per pending delivery", round(float64(w1.HeapLive)/target, 0), " B")
	wc.also("built in (fresh process, GC as the heap grows)", round(w1.ScheduleS, 2), " s")
	wc.also("process RSS before", mb(float64(w1.BaseRSS)), " MB")
	wc.PeakRSSMB = mb(float64(w1.PeakRSS))
	sc.add(wc)
	if n < r.plan.SchedTarget {
		sc.note("the restart found %d deliveries pending retry, not the %d asked for (the seeding's bound was %v). The 1M targets are "+
			"projected: time as the restart's store open and election plus its wheel rebuild scaled by %.1f; RSS as the restarted node's "+
			"peak plus what growing the wheel alone from this N to 1M adds to a process's peak RSS (the last row)",
			n, r.plan.SchedTarget, r.plan.SchedSeed, scale)
	}
	sc.note("the last row is the wheel alone in a child process: the same scheduler.Wheel[dispatcher.DueKey] the engine rebuilds, one " +
		"Schedule per pending delivery, its 20-byte key made by a dispatcher.KeyTable from the due index's bytes as ForEachDueKey " +
		"hands them out (no allocation per entry)")
	sc.note("deliveries pending retry are first built for at most %v by TCP broadcasts to %d endpoints whose sink fails %.0f%% of first attempts with 500 "+
		"(evenly per endpoint in arrival order, two in three; the node runs with --breaker-failures 1000000000, because a lane's results "+
		"complete out of that order and runs of 10 failures would open its circuit breaker, holding its queue for 30 s) under the "+
		"retry strategy {\"type\":\"linear\",\"duration\":3600}: a failed delivery waits an hour, in the timing wheel. The rest up to "+
		"%s is seeded with the node stopped (see the seed row). Then a "+
		"clean restart (SIGTERM, start on the same data): the figure is process start to the node's \"delivery engine active\" log "+
		"line (the wheel rebuilt from the due index; the line's pending count names the row), split at raft's \"starting election\" "+
		"into opening the store (Pebble's open of the Raft log and the state DB, which a clean stop left flushed) and "+
		"the node's start, then the election, the leader's barrier and the rebuild; peak RSS is the restarted process's VmHWM %v after that. The baseline is the same restart "+
		"of the same node before the build",
		r.plan.SchedBuild, fan, 100*failShare, num(float64(r.plan.SchedTarget)), 2*time.Second)
	return nil
}

// seedPendingRetries adds want deliveries pending retry to the stopped node's store, the way the build
// makes them but without the network: this process opens the node's data directory as the node,
// publishes broadcasts to the same fan endpoints with api.Server.Publish (one delivery per endpoint
// each, through the Raft log and the FSM), then records for every delivery due a failed first attempt
// (HTTP 500, the record copied from one of the build's real failed attempts) with its retry an hour
// out, as CmdResults batches of 1024: the commands the delivery engine proposes. The node is left
// stopped.
func (r *runner) seedPendingRetries(sc *scenarioRun, s *harness.Sluice, proj *harness.Project, fan, want int) error {
	ctx := r.ctx
	sd, err := openSeeder(ctx, s)
	if err != nil {
		return err
	}
	defer sd.close()
	tmpl := sd.failedAttemptTemplate(proj.ID)
	events := int64((want + fan - 1) / fan)
	logf("scheduler-scale: seeding %d events × %d endpoints through the store", events, fan)
	cpu0 := harness.ProcCPU(os.Getpid())
	// In chunks of ~100k deliveries, each published and then given its failed attempt before the next:
	// when the bound stops the seeding, it stops between chunks, so every seeded delivery is a retry an
	// hour out and none is due at the restart (which would then measure dispatching, not the wheel).
	chunk := int64(max(1, 100_000/fan))
	deadline := time.Now().Add(r.plan.SchedSeed)
	var pub, res seedStats
	pub.Complete = true
	for pub.N < events && time.Now().Before(deadline) {
		n := min(chunk, events-pub.N)
		p := sd.publish(ctx, proj.ID, eventType, loadgen.Data(r.plan.Payload), n, 64, 10*time.Minute)
		pub.N, pub.Elapsed = pub.N+p.N, pub.Elapsed+p.Elapsed
		if p.Err != nil {
			return p.Err
		}
		f := sd.failFirstAttempts(ctx, tmpl, time.Now().Add(time.Hour), r.plan.SchedBuild, 1024, 10*time.Minute)
		res.N, res.Elapsed = res.N+f.N, res.Elapsed+f.Elapsed
		if f.Err != nil {
			return f.Err
		}
		if !p.Complete || !f.Complete {
			pub.Complete = false
			break
		}
	}
	res.Complete = pub.Complete && pub.N >= events
	if !res.Complete {
		sc.note("seed: the %v bound stopped seeding after %d of %d events (%d failed first attempts recorded)", r.plan.SchedSeed, pub.N, events, res.N)
	}
	cpu := harness.ProcCPU(os.Getpid()) - cpu0
	if err := sd.close(); err != nil {
		return fmt.Errorf("close seeded store: %w", err)
	}
	took := pub.Elapsed + res.Elapsed
	c := &Case{Name: fmt.Sprintf("seed: %s deliveries pending retry through the store", num(float64(res.N))), Figure: "pending retries created/s",
		Value: round(float64(res.N)/took.Seconds(), 0), Complete: res.Complete, CostEvents: float64(res.N)}
	c.also("events published (broadcast)", float64(pub.N), "")
	c.also("publishing", round(pub.Elapsed.Seconds(), 1), " s")
	c.also("failed first attempts recorded", round(res.Elapsed.Seconds(), 1), " s")
	c.also("runner CPU per 1,000 (store, Raft, FSM in-process)", round(cpu.Seconds()*1000/float64(max(res.N, 1)), 3), " s")
	c.also("data dir", round(float64(dirSize(s.DataDir))/(1<<20), 0), " MB")
	sc.add(c)
	if tmpl.UID == "" {
		sc.note("seed: the build left no failed attempt to copy; the seeded attempt records have the same fields but made-up headers")
	}
	return nil
}
