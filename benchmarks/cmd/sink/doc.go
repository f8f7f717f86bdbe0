// Command sink runs the benchmark sink (package benchmarks/sink) as a standalone webhook receiver on
// 127.0.0.1, for trying Sluice by hand or from another load tool:
//
//	go run ./benchmarks/cmd/sink -addr 127.0.0.1:9000 -delay 100ms
//	go run ./benchmarks/cmd/sink -fail-share 0.5          # fail half the first attempts with 500
//	go run ./benchmarks/cmd/sink -hang                     # never answer
//
// It prints its counters as one JSON line every -every (and once more on exit); GET /_stats answers the
// same JSON. Point a Sluice endpoint's url at http://<addr>/anything.
package main
