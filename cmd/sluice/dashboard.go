package main

import "github.com/sluice-gw/sluice/dispatcher"

// observeResult feeds one attempt to the metrics and to the dashboard's per-minute series.
func (n *node) observeResult(r dispatcher.Result) {
	n.series.observeResult(r)
	n.deliveries.Observe(r.ProjectID, r.EndpointID, string(r.Status), r.Attempt.Latency, r.Attempt.StartedAt)
}
