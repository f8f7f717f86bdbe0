// Command runner owns the standard benchmark run: it starts the real bin/sluice (a fresh process and
// data directory per scenario, free 127.0.0.1 ports, a known --root-key; three of them on 127.0.0.1-3
// for the cluster scenario), sets up projects, endpoints and subscriptions through the REST API, drives
// load with benchmarks/loadgen (HTTP, or TCP ingest through ingest/client) into benchmarks/sink, scrapes
// /metrics before and after each measurement, stops the process with SIGTERM, and writes
//
//   - benchmarks/results/<YYYY-MM-DD>[-quick][-partial][-profile].json: every figure, its same-run
//     baseline and ratio, the target where it has one, CPU per 1,000 events for Sluice and for
//     the sink, Sluice's peak RSS, the commit, the latency summaries, the /metrics deltas and the
//     machine's load;
//   - the table between <!-- results:start --> and <!-- results:end --> in docs/benchmarks.md (full
//     standard runs only, unless -update-docs=yes).
//
// The sink runs in a child process (this binary re-executed with -sink-child) so that its CPU time is
// measured apart from the load generator's; scheduler-scale also re-executes it with -wheel-child to
// measure the timing wheel alone at 1M entries.
//
// Usage (from the module root, after `make build`):
//
//	go run ./benchmarks/cmd/runner                              # standard run, about 7-8 minutes
//	go run ./benchmarks/cmd/runner -quick                       # smoke run, about 1.5 minutes
//	go run ./benchmarks/cmd/runner -scenarios ingest-tcp,e2e-tcp
//	go run ./benchmarks/cmd/runner -profile -scenarios backlog-growth   # with CPU profiles of the server
//	go run ./benchmarks/cmd/runner -list
//
// Adding a scenario is one function with the signature of scenario.run plus one entry in the scenarios
// table (scenarios.go); baselines it needs (upstream, egress-100) are measured on demand and memoised.
package main
