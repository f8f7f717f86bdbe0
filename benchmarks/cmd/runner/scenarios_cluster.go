package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/ingest/client"
)

// serverInfo is the part of GET /api/v1/cluster the runner reads.
type serverInfo struct {
	ID     string `json:"id"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
	Live   bool   `json:"live"`
}

func clusterServers(ctx context.Context, s *harness.Sluice) ([]serverInfo, error) {
	var out []serverInfo
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := s.Root().Do(ctx, http.MethodGet, "/api/v1/cluster", nil, &out)
	return out, err
}

// startNodes starts a node per options concurrently and registers them with the scenario.
func (sc *scenarioRun) startNodes(opts []harness.Options) ([]*harness.Sluice, error) {
	nodes := make([]*harness.Sluice, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.Bin, o.KeepData = sc.r.opts.bin, sc.r.opts.keepData
			o.Pprof = o.Pprof || sc.r.opts.profile
			nodes[i], errs[i] = harness.Start(sc.r.ctx, o)
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			sc.sluices = append(sc.sluices, n)
		}
	}
	return nodes, errors.Join(errs...)
}

// clusterMeasure is one deployment's publish and e2e figures.
type clusterMeasure struct{ ingest, e2e *Case }

func runCluster(r *runner, sc *scenarioRun) error {
	ctx := r.ctx
	key := "sk_bench_cluster_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	sk, err := startSink(sc, sinkSpec{TrackEvents: true})
	if err != nil {
		return err
	}
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	nodeOpts := func(i int, join string) harness.Options {
		return harness.Options{Host: hosts[i], TCP: true, NodeID: fmt.Sprintf("n%d", i+1), EgressIPs: hosts[i], RootKey: key, Join: join}
	}

	// One node, same flags.
	single, err := sc.startSluice(nodeOpts(0, ""))
	if err != nil {
		return err
	}
	one, err := r.clusterMeasure(sc, []*harness.Sluice{single}, single, sk, "1 node")
	if err != nil {
		return fmt.Errorf("single node: %w", err)
	}
	sc.stopSluice(single)

	// Three nodes: n1 bootstraps, n2 and n3 --join it.
	t0 := time.Now()
	n1, err := sc.startSluice(nodeOpts(0, ""))
	if err != nil {
		return err
	}
	rest, err := sc.startNodes([]harness.Options{nodeOpts(1, n1.HTTPAddr), nodeOpts(2, n1.HTTPAddr)})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	nodes := append([]*harness.Sluice{n1}, rest...)
	var leader *harness.Sluice
	if err := waitUntil(ctx, 30*time.Second, func() bool {
		srvs, err := clusterServers(ctx, n1)
		if err != nil {
			return false
		}
		voters, live := 0, 0
		for _, s := range srvs {
			if s.Voter {
				voters++
			}
			if s.Live {
				live++
			}
			if s.Leader {
				leader = nodeByID(nodes, s.ID)
			}
		}
		return voters == 3 && live == 3 && leader != nil
	}); err != nil {
		return fmt.Errorf("three live voters with a leader: %w", err)
	}
	formed := time.Since(t0)
	three, err := r.clusterMeasure(sc, nodes, leader, sk, "3 nodes")
	if err != nil {
		return fmt.Errorf("three nodes: %w", err)
	}
	three.ingest.setBaseline("1 node, same run", one.ingest.Value)
	three.e2e.setBaseline("1 node, same run", one.e2e.Value)
	three.ingest.also("cluster formed in", round(formed.Seconds(), 1), " s")
	for _, c := range []*Case{one.ingest, three.ingest, one.e2e, three.e2e} {
		sc.add(c)
	}
	if err := r.failover(sc, nodes, sk); err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	sc.note("three nodes on one 2-core machine: 127.0.0.1, .2 and .3, each with its own --egress-ips, n2 and n3 started with "+
		"--join n1; every write is fsynced by two of three processes sharing one disk and the same cores, so the ratio to one node "+
		"is a floor for real deployments (separate machines). Publishing goes over TCP (%d connections × %d in flight) to the leader; "+
		"the endpoint is delivered by whichever node rendezvous hashing gives it. The single node runs first with the same flags",
		r.plan.E2ETCP.Conns, r.plan.E2ETCP.Depth)
	return nil
}

func nodeByID(nodes []*harness.Sluice, id string) *harness.Sluice {
	for _, n := range nodes {
		if n.NodeID == id {
			return n
		}
	}
	return nil
}

func waitUntil(ctx context.Context, limit time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v", limit)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// clusterMeasure publishes over TCP to the leader: first to a paused endpoint for the ingest rate, then
// a burst to an active one for the end-to-end rate.
func (r *runner) clusterMeasure(sc *scenarioRun, nodes []*harness.Sluice, leader *harness.Sluice, sk *sinkProc, label string) (*clusterMeasure, error) {
	ctx := r.ctx
	projP, paused, err := setupEndpoint(ctx, leader, sk, "bench-cluster-paused", true)
	if err != nil {
		return nil, err
	}
	proj, active, err := setupEndpoint(ctx, leader, sk, "bench-cluster", false)
	if err != nil {
		return nil, err
	}
	r.clusterProj, r.clusterEndpoint = proj, active
	ps := procSet{sluices: nodes, sinks: []*sinkProc{sk}}
	shape := r.plan.E2ETCP
	tcfg := loadgen.TCPConfig{Addr: leader.TCPAddr, Key: projP.API.Key, Conns: shape.Conns, Depth: shape.Depth, EndpointID: paused,
		EventType: eventType, Data: loadgen.Data(r.plan.Payload), Duration: r.plan.Warmup, MaxRequests: 50_000}
	if _, err := loadgen.RunTCP(ctx, tcfg); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	w, err := beginSet(ctx, ps)
	if err != nil {
		return nil, err
	}
	sc.profile(leader, label+" ingest, leader", int(r.plan.ClusterIngestDur.Seconds()*0.6))
	tcfg.Duration, tcfg.MaxRequests = r.plan.ClusterIngestDur, r.plan.TCPMax
	res, err := loadgen.RunTCP(ctx, tcfg)
	if err != nil {
		return nil, err
	}
	d, err := w.end(ctx)
	if err != nil {
		return nil, err
	}
	ing := &Case{Name: label + ": TCP publish to the leader", Figure: "acked publishes/s", Value: round(res.PerSecond, 0),
		LatencyKind: "ack", Latency: &res.Latency, Load: res, Complete: res.Errors == 0, MetricsDelta: d}
	w.cost(ing, float64(res.OK))
	ing.also("fsyncs/event (all nodes)", round(d["sluice_wal_syncs_total"]/float64(max(res.OK, 1)), 3), "")
	ing.also("cmds/entry", round(d["sluice_raft_commands_proposed_total"]/d["sluice_raft_entries_proposed_total"], 1), "")

	b, err := r.e2eBurst(ps, sk, r.tcpPublisher(leader.TCPAddr, proj.API.Key, active, shape, r.plan.ClusterE2EEvents))
	if err != nil {
		return nil, err
	}
	e2e := burstCase(label+": TCP e2e burst", b)
	return &clusterMeasure{ingest: ing, e2e: e2e}, nil
}

// ack is one acknowledged publish of the failover run.
type ack struct {
	event      string
	sent, done time.Time
}

// failover publishes to all three nodes, kills the leader with SIGKILL, and measures how long until
// publishes are acknowledged again and whether every acknowledged event is delivered.
func (r *runner) failover(sc *scenarioRun, nodes []*harness.Sluice, sk *sinkProc) error {
	ctx := r.ctx
	proj, eid := r.clusterProj, r.clusterEndpoint
	// Start from a quiet cluster: every earlier delivery's result committed, so that nothing but this
	// run's own work can be delivered again.
	for _, n := range nodes {
		if err := waitIdle(ctx, n, 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w", n.NodeID, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := sk.Reset(); err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	clients := make([]*client.Client, len(nodes))
	for i, n := range nodes {
		// A follower learns the project key through the log: retry until it has it.
		err := waitUntil(ctx, 5*time.Second, func() bool {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			cl, err := client.Dial(dctx, n.TCPAddr, client.Options{Key: proj.API.Key, MaxInFlight: r.plan.FailoverDepth,
				Name: "bench-failover", Logger: quiet, MaxBackoff: time.Second})
			clients[i] = cl
			return err == nil
		})
		if err != nil {
			return fmt.Errorf("dial %s: %w", n.NodeID, err)
		}
	}
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	var (
		mu       sync.Mutex
		acks     []ack
		errs     []time.Time
		dead     = make([]atomic.Bool, len(nodes))
		stop     atomic.Bool
		wg       sync.WaitGroup
		dataBuf  = loadgen.Data(r.plan.Payload)
		firstErr string
	)
	for i, cl := range clients {
		for range r.plan.FailoverDepth {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := &client.Request{EndpointID: eid, EventType: eventType, Data: slices.Clone(dataBuf)}
				for !stop.Load() && !dead[i].Load() && ctx.Err() == nil {
					sent := time.Now()
					loadgen.Stamp(req.Data, sent)
					pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					a, err := cl.Publish(pctx, req)
					cancel()
					done := time.Now()
					mu.Lock()
					if err == nil {
						acks = append(acks, ack{a.EventID, sent, done})
					} else if !dead[i].Load() {
						errs = append(errs, done)
						if firstErr == "" {
							firstErr = err.Error()
						}
					}
					mu.Unlock()
					if err != nil && !dead[i].Load() {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}()
		}
	}
	time.Sleep(r.plan.FailoverBefore)
	var leaderIdx = -1
	for _, n := range nodes {
		if srvs, err := clusterServers(ctx, n); err == nil {
			for _, s := range srvs {
				if s.Leader {
					leaderIdx = slices.IndexFunc(nodes, func(x *harness.Sluice) bool { return x.NodeID == s.ID })
				}
			}
			break
		}
	}
	if leaderIdx < 0 {
		stop.Store(true)
		wg.Wait()
		return errors.New("no leader to kill")
	}
	victim := nodes[leaderIdx]
	mu.Lock()
	ackedBefore := len(acks)
	mu.Unlock()
	kill := time.Now()
	dead[leaderIdx].Store(true)
	victim.Kill()
	clients[leaderIdx].Close() // its unanswered publishes end with ErrClosed; their goroutines stop
	// A new leader among the survivors.
	var elected time.Duration
	waitUntil(ctx, 30*time.Second, func() bool {
		for i, n := range nodes {
			if i == leaderIdx {
				continue
			}
			if srvs, err := clusterServers(ctx, n); err == nil {
				for _, s := range srvs {
					if s.Leader && s.ID != victim.NodeID {
						elected = time.Since(kill)
						return true
					}
				}
			}
		}
		return false
	})
	time.Sleep(max(0, r.plan.FailoverAfter-time.Since(kill)))
	stop.Store(true)
	wg.Wait()
	for i, c := range clients {
		if i != leaderIdx {
			c.Close()
		}
	}

	mu.Lock()
	all := append([]ack(nil), acks...)
	errTimes := append([]time.Time(nil), errs...)
	mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].done.Before(all[j].done) })
	// Publishes acknowledged again: the first ACK of a publish sent after the kill.
	var firstNew time.Duration = -1
	for _, a := range all {
		if a.sent.After(kill) && (firstNew < 0 || a.done.Sub(kill) < firstNew) {
			firstNew = a.done.Sub(kill)
		}
	}
	// The longest stretch without any ACK around the kill.
	var gap time.Duration
	prev := kill
	for _, a := range all {
		if a.done.Before(kill) {
			continue
		}
		gap = max(gap, a.done.Sub(prev))
		prev = a.done
		if a.done.Sub(kill) > 10*time.Second {
			break
		}
	}
	var lastErr time.Duration
	for _, t := range errTimes {
		if t.After(kill) {
			lastErr = max(lastErr, t.Sub(kill))
		}
	}
	unique := map[string]bool{}
	for _, a := range all {
		unique[a.event] = true
	}
	// Every acknowledged event delivered (the endpoint may have moved to another node after the lease).
	var missing int
	deadline := time.Now().Add(r.plan.DrainTimeout)
	for {
		got, err := sk.EventIDs()
		if err == nil {
			missing = 0
			for id := range unique {
				if !got[id] {
					missing++
				}
			}
			if missing == 0 {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	deliveredAll := time.Since(kill)
	st := sk.Stats()
	cs := &Case{Name: fmt.Sprintf("leader %s kill -9 under publishing to all nodes", victim.NodeID), Figure: "ms until publishes are acknowledged again",
		Value: round(float64(firstNew.Milliseconds()), 0), Complete: firstNew >= 0 && missing == 0, Sink: &st}
	if firstNew < 0 {
		cs.Value = -1
		sc.note("failover: no publish sent after the kill was acknowledged within %v", r.plan.FailoverAfter)
	}
	cs.also("new leader seen after", float64(elected.Milliseconds()), " ms")
	cs.also("longest gap without an ACK", float64(gap.Milliseconds()), " ms")
	cs.also("last failed publish after", float64(lastErr.Milliseconds()), " ms")
	cs.also("failed publishes", float64(len(errTimes)), "")
	if firstErr != "" {
		sc.note("failover: first failed publish: %s", firstErr)
	}
	cs.also("publishes acked before the kill", float64(ackedBefore), "")
	cs.also("after", float64(len(all)-ackedBefore), "")
	cs.also("acked events not delivered", float64(missing), "")
	cs.also("duplicate deliveries", float64(st.Duplicates), "")
	cs.also("deliveries beyond acked events", float64(int64(st.Unique)-int64(len(unique))), "")
	cs.also("all delivered by", round(deliveredAll.Seconds(), 1), " s after the kill")
	sc.add(cs)
	sc.note("failover: %d TCP publishers in flight per node (the Go client, idempotency keys, resending on reconnect and on retryable NACKs); "+
		"after %v the leader gets SIGKILL and its publishers stop (their unanswered publishes have an unknown outcome). "+
		"\"Acknowledged again\" is the first ACK of a publish sent after the kill; the endpoint's deliveries move to a survivor "+
		"after the 5 s liveness lease if the dead node owned it. Duplicates are deliveries the sink answered 2xx twice (same delivery id)",
		r.plan.FailoverDepth, r.plan.FailoverBefore)
	return nil
}
