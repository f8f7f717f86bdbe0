// Command runner owns the standard benchmark run: it starts the real bin/sluice (a fresh process and
// data directory per scenario, free 127.0.0.1 ports, a known --root-key), sets up projects, endpoints
// and subscriptions through the REST API, drives load with benchmarks/loadgen into benchmarks/sink,
// scrapes /metrics before and after each measurement, stops the process with SIGTERM, and writes
//
//   - benchmarks/results/<YYYY-MM-DD>[-quick][-partial].json: every figure, its same-run baseline and
//     ratio, the latency summaries, the /metrics deltas and the machine's load;
//   - the table between <!-- results:start --> and <!-- results:end --> in docs/benchmarks.md (full
//     standard runs only, unless -update-docs=yes).
//
// Usage (from the module root, after `make build`):
//
//	go run ./benchmarks/cmd/runner                              # standard run, a few minutes
//	go run ./benchmarks/cmd/runner -quick                       # ~1 minute smoke run
//	go run ./benchmarks/cmd/runner -scenarios ingest-http,egress
//	go run ./benchmarks/cmd/runner -list
//
// Adding a scenario is one function with the signature of scenario.run plus one entry in the scenarios
// table (scenarios.go); baselines it needs (upstream, egress-100) are measured on demand and memoised.
package main
