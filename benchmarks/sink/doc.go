// Package sink owns the webhook receiver the benchmarks deliver to: an HTTP server on 127.0.0.1 that
// plays a customer's endpoint and counts what Sluice (or the load generator, for the upstream baseline)
// sends it.
//
// Behaviour, fixed per Server by Config:
//
//   - answer 200 at once (the default), after Config.Delay, or never (Config.Hang: the request is held
//     until Close, so the sender's own timeout is what ends it);
//   - fail a share of first attempts (Config.FailFirstShare) with Config.FailStatus: the decision is
//     made once per X-Sluice-Delivery-Id, so the retry of a failed delivery succeeds. Failures are evenly
//     spaced over new ids by default (every 2nd id at 0.5); Config.FailRandom picks ids by a hash
//     instead, which gives runs of consecutive failures like a real flaky receiver.
//
// What it measures (Stats): requests, unique deliveries (the first 2xx answer per delivery id),
// duplicates (2xx answers to an id already answered 2xx: at-least-once made visible), injected
// failures, connections opened (connection churn shows up here), the times of the first and last unique
// delivery, and publish-to-delivery latency: when the body carries a "sent_ns" field (Unix nanoseconds,
// written by the load generator just before it publishes) the sink records now-sent_ns for each
// unique delivery. Requests without X-Sluice-Delivery-Id (the load generator posting directly) count
// each request as unique.
//
// Control routes, not counted: GET /_stats (the Stats as JSON), GET /_unique (the unique count as a
// number), POST /_reset (Reset), GET /_events (the event ids of unique deliveries, with
// Config.TrackEvents). They let the runner drive a sink in a process of its own, so that the sink's
// CPU time is measured apart from the load generator's. Every other method and path is a delivery.
package sink
