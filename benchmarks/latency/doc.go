// Package latency owns the latency histogram every benchmark in this module reports from.
//
// A Histogram is HDR-like: log-linear buckets with 256 sub-buckets per power of two, so any recorded
// value is reported within 0.4% of itself (the bucket midpoint), from 1 ns to hours, in a fixed 115 KiB
// of counters. Record is lock-free (one atomic add per bucket plus min/max/sum), so the load generator's
// clients and the sink's handlers record into one Histogram concurrently; nothing is sampled or
// dropped, so p999 over 10k values is the 10th-slowest value, not an estimate from a reservoir.
//
// Percentiles are nearest-rank: P(q) is the smallest recorded value v such that at least ceil(q*count)
// values are <= v (reported as its bucket's midpoint, clamped to the exact min and max).
package latency
