// Package loadgen owns the publish load generator: N concurrent HTTP/1.1 keep-alive clients posting one
// body template, bounded by a request count and a duration (whichever comes first), in one of two modes:
//
//   - closed loop (Config.Rate 0): every client sends its next request as soon as the previous one is
//     answered, so the figure is the acknowledged rate the server sustains at that concurrency;
//   - open loop (Config.Rate > 0): a pacer schedules request i at start + i/Rate and up to Conns clients
//     take them in order. Latency is measured from the scheduled time, not the moment a client got to
//     it, so a stalled server is charged for the requests it delayed (no coordinated omission), and
//     Result.Achieved/Result.Target says whether the rate was sustained.
//
// Every request carries the current Unix time in nanoseconds in the body's "sent_ns" field (the template
// has a fixed-width placeholder that is overwritten in place, so the body is never re-encoded), which the
// sink turns into publish-to-delivery latency.
//
// Ack latency (send to a 2xx response read in full) goes into a latency.Histogram; non-2xx answers and
// transport errors are counted separately and never recorded as latency.
//
// RunTCP is the same for Sluice's TCP ingest, through the project's own Go client (ingest/client):
// Conns connections, each with Depth publishes in flight (Depth goroutines calling the blocking
// Publish, so latency is per publish, including the client's queueing and PUBLISH_BATCH coalescing),
// closed loop or paced, with an optional Before hook for caller-side flow control.
package loadgen
