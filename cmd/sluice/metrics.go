package main

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sluice-gw/sluice/dispatcher"
)

// Metrics are written at scrape time from the packages' own counters (they expose snapshots, not a
// metrics library), plus a few histograms fed by hooks. Names are sluice_* with units in the name.
var (
	commitSeconds = metrics.NewPrometheusHistogramExt("sluice_raft_commit_seconds",
		metrics.ExponentialBuckets(0.0001, 2, 16))
	batchCommands = metrics.NewPrometheusHistogramExt("sluice_proposer_batch_commands",
		metrics.ExponentialBuckets(1, 2, 13))
)

func init() { metrics.ExposeMetadata(true) }

// observeCommit and observeBatch are the store's Stats hooks.
func observeCommit(d time.Duration) { commitSeconds.Update(d.Seconds()) }
func observeBatch(n int)            { batchCommands.Update(float64(n)) }

// eventsIngested counts acknowledged publishes by project and protocol.
func eventsIngested(projectID, protocol string) *metrics.Counter {
	return metrics.GetOrCreateCounter(fmt.Sprintf(`sluice_events_ingested_total{project=%q,protocol=%q}`, projectID, protocol))
}

// writeNodeMetrics writes the gauges and counters read from the node's parts.
func (n *node) writeNodeMetrics(w io.Writer) {
	st := n.store
	ws := st.WALStats()
	metrics.WriteCounterUint64(w, "sluice_wal_syncs_total", ws.Syncs)
	metrics.WriteCounterUint64(w, "sluice_wal_entries_total", ws.Entries)
	metrics.WriteCounterUint64(w, "sluice_wal_bytes_in_total", ws.BytesIn)
	metrics.WriteCounterUint64(w, "sluice_wal_bytes_stored_total", ws.BytesStored)
	ps := st.Stats()
	metrics.WriteCounterUint64(w, "sluice_raft_entries_proposed_total", ps.Batches.Load())
	metrics.WriteCounterUint64(w, "sluice_raft_commands_proposed_total", ps.Commands.Load())
	metrics.WriteGaugeUint64(w, "sluice_raft_applied_index", st.AppliedIndex())
	leader := uint64(0)
	if st.IsLeader() {
		leader = 1
	}
	metrics.WriteGaugeUint64(w, "sluice_raft_is_leader", leader)
	metrics.WriteGaugeUint64(w, "sluice_raft_peers", uint64(st.Peers()))
	q, qcap := st.Backlog()
	metrics.WriteGaugeUint64(w, "sluice_proposer_queued", uint64(q))
	metrics.WriteGaugeUint64(w, "sluice_proposer_queue_capacity", uint64(qcap))
	if free := st.DiskFree(); free >= 0 {
		metrics.WriteGaugeUint64(w, "sluice_data_disk_free_bytes", uint64(free))
	}
	disk, debt := st.StateDiskUsage()
	metrics.WriteGaugeUint64(w, "sluice_state_disk_bytes", disk)
	metrics.WriteGaugeUint64(w, "sluice_state_compaction_debt_bytes", debt)
	metrics.WriteGaugeUint64(w, "sluice_scheduler_pending", uint64(n.engine.Pending()))

	ds := n.engine.Dispatcher().Stats()
	metrics.WriteGaugeUint64(w, "sluice_dispatch_workers_busy", uint64(ds.WorkersBusy))
	metrics.WriteGaugeUint64(w, "sluice_dispatch_queued", uint64(ds.Queued))
	metrics.WriteGaugeUint64(w, "sluice_dispatch_in_flight", uint64(ds.InFlight))
	metrics.WriteCounterUint64(w, "sluice_dispatch_attempts_total", ds.Attempts)
	writeFamily(w, "sluice_dispatch_outcomes_total", "counter", []sample{
		{`outcome="success"`, float64(ds.Succeeded)}, {`outcome="retry"`, float64(ds.Retried)}, {`outcome="failed"`, float64(ds.Failed)},
	})
	queued := make([]sample, len(ds.Lanes))
	inflight := make([]sample, len(ds.Lanes))
	breaker := make([]sample, len(ds.Lanes))
	for i, l := range ds.Lanes {
		lbl := fmt.Sprintf("endpoint=%q", l.EndpointID)
		queued[i] = sample{lbl, float64(l.Queued)}
		inflight[i] = sample{lbl, float64(l.InFlight)}
		breaker[i] = sample{lbl, float64(l.Breaker)}
	}
	writeFamily(w, "sluice_lane_queued", "gauge", queued)
	writeFamily(w, "sluice_lane_in_flight", "gauge", inflight)
	writeFamily(w, "sluice_lane_breaker_state", "gauge", breaker)
	writeIngestMetrics(w, n.api.IngestStats())
	if b := n.brokers.Load(); b != nil {
		writeBrokerMetrics(w, b.Stats())
	}
}

// sample is one labelled series of a family written at scrape time.
type sample struct {
	labels string
	value  float64
}

// writeFamily writes a family's metadata once, then its series (the library's Write* helpers would
// repeat the TYPE line for every labelled series).
func writeFamily(w io.Writer, name, typ string, ss []sample) {
	if len(ss) == 0 {
		return
	}
	metrics.WriteMetadataIfNeeded(w, name, typ)
	for _, s := range ss {
		fmt.Fprintf(w, "%s{%s} %g\n", name, s.labels, s.value)
	}
}

func (n *node) metricsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	metrics.WritePrometheus(w, true)
	n.writeNodeMetrics(w)
}

var leaderChanges = metrics.NewCounter("sluice_raft_leader_changes_total")

// endpointSeries tracks the per-endpoint series so they go away with the endpoint (bounded
// cardinality). Guarded by its mutex; written from attempt goroutines and the FSM hook.
type endpointSeries struct {
	mu    sync.Mutex
	names map[string]map[string]struct{} // endpoint id -> series names
}

func (es *endpointSeries) add(eid, name string) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.names == nil {
		es.names = map[string]map[string]struct{}{}
	}
	m := es.names[eid]
	if m == nil {
		m = map[string]struct{}{}
		es.names[eid] = m
	}
	m[name] = struct{}{}
}

func (es *endpointSeries) drop(eid string) {
	es.mu.Lock()
	names := es.names[eid]
	delete(es.names, eid)
	es.mu.Unlock()
	for name := range names {
		metrics.UnregisterMetric(name)
	}
}

// observeResult counts a delivery attempt by project, endpoint and outcome and records its latency.
func (es *endpointSeries) observeResult(r dispatcher.Result) {
	outcome := string(r.Status)
	c := fmt.Sprintf(`sluice_deliveries_total{project=%q,endpoint=%q,outcome=%q}`, r.ProjectID, r.EndpointID, outcome)
	h := fmt.Sprintf(`sluice_attempt_duration_seconds{endpoint=%q}`, r.EndpointID)
	es.add(r.EndpointID, c)
	es.add(r.EndpointID, h)
	metrics.GetOrCreateCounter(c).Inc()
	metrics.GetOrCreatePrometheusHistogramExt(h, metrics.ExponentialBuckets(0.001, 2, 16)).Update(r.Attempt.Latency.Seconds())
}
