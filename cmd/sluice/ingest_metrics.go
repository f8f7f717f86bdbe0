package main

import (
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sluice-gw/sluice/api"
)

// writeIngestMetrics writes the incoming sources' counters: requests by source and outcome
// (accepted, duplicate, verify_failed, rejected, failed) and requests to unknown ingest URLs.
func writeIngestMetrics(w io.Writer, st api.IngestStats) {
	metrics.WriteCounterUint64(w, "sluice_ingest_unknown_source_total", st.UnknownMask)
	ss := make([]sample, 0, 5*len(st.Sources))
	for _, s := range st.Sources {
		lbl := func(outcome string) string {
			return fmt.Sprintf("project=%q,source=%q,outcome=%q", s.ProjectID, s.SourceID, outcome)
		}
		ss = append(ss,
			sample{lbl("accepted"), float64(s.Accepted)},
			sample{lbl("duplicate"), float64(s.Duplicates)},
			sample{lbl("verify_failed"), float64(s.VerifyFailed)},
			sample{lbl("rejected"), float64(s.Rejected)},
			sample{lbl("failed"), float64(s.Failed)})
	}
	writeFamily(w, "sluice_ingest_requests_total", "counter", ss)
}
