package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
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
	disk, debt := st.StateDiskUsage()
	metrics.WriteGaugeUint64(w, "sluice_state_disk_bytes", disk)
	metrics.WriteGaugeUint64(w, "sluice_state_compaction_debt_bytes", debt)
	metrics.WriteGaugeUint64(w, "sluice_scheduler_pending", uint64(n.engine.Pending()))

	ds := n.engine.Dispatcher().Stats()
	metrics.WriteGaugeUint64(w, "sluice_dispatch_workers_busy", uint64(ds.WorkersBusy))
	metrics.WriteGaugeUint64(w, "sluice_dispatch_queued", uint64(ds.Queued))
	metrics.WriteGaugeUint64(w, "sluice_dispatch_in_flight", uint64(ds.InFlight))
	metrics.WriteCounterUint64(w, "sluice_dispatch_attempts_total", ds.Attempts)
	for _, o := range []struct {
		name string
		v    uint64
	}{{"success", ds.Succeeded}, {"retry", ds.Retried}, {"failed", ds.Failed}} {
		metrics.WriteCounterUint64(w, fmt.Sprintf(`sluice_dispatch_outcomes_total{outcome=%q}`, o.name), o.v)
	}
	for _, l := range ds.Lanes {
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`sluice_lane_queued{endpoint=%q}`, l.EndpointID), uint64(l.Queued))
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`sluice_lane_in_flight{endpoint=%q}`, l.EndpointID), uint64(l.InFlight))
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`sluice_lane_breaker_state{endpoint=%q}`, l.EndpointID), uint64(l.Breaker))
	}
}

func (n *node) metricsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	metrics.WritePrometheus(w, true)
	n.writeNodeMetrics(w)
}
