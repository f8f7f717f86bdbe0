// Package benchmarks owns Sluice's performance measurements: the Go benchmark BenchmarkPublishHTTP
// (`go test -bench . ./benchmarks/`) and, in its subpackages, the parts of the standard benchmark run
// (`make bench`): the sink that plays a customer's endpoint (sink, cmd/sink), the publish load generator
// over HTTP and TCP ingest (loadgen), the latency histogram (latency), the harness that runs the real binary and reads its
// /metrics (harness), and the runner that executes the scenarios and writes results/<date>.json and the
// table in docs/benchmarks.md (cmd/runner).
//
// Nothing here asserts speed: tests check behaviour only (the sink dedupes, the load generator stops at
// its bounds). Figures are reported next to a baseline measured in the same run, because the machines
// they run on are shared and their absolute throughput moves by tens of percent from minute to minute.
// docs/benchmarks.md explains every scenario and how to read the figures.
package benchmarks
