// Package harness owns running the real Sluice binary for benchmarks and talking to it: starting
// `sluice serve` on free 127.0.0.1 ports with a temporary data directory and a known root key, waiting
// until it is ready and the key works, stopping it with SIGTERM (SIGKILL after a grace period) and
// removing its data; a small client for the REST API (projects, endpoints, subscriptions, pause and
// activate); scraping /metrics into name -> value maps so callers can take before/after deltas;
// reading the process's CPU time and peak RSS from /proc (and resetting the peak per measurement);
// the cluster and crash flags (a host of 127.0.0.x, --join, --node-id, --egress-ips, TCP ingest,
// pprof on a separate port), kill -9, a restart on the same data and ports, and waiting for a log line.
//
// It deliberately drives the binary rather than linking the server in: the figures then include
// everything a user's deployment pays (HTTP parsing, auth, JSON, the real flags and defaults).
//
// Temporary directories are named sgwbench-* and callers run a copy of the binary named sgw-server
// (see cmd/runner): on a checkout shared with other engineers, a `pkill sluice` or `pkill -f "sluice
// serve"` meant for their own servers then does not end a benchmark's server mid-measurement (which
// happened while this suite was written: servers exited with status 0, i.e. after a SIGTERM, mid-run).
package harness
