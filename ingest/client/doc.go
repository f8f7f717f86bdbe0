// Package client is the Go client of Sluice's TCP ingest protocol (docs/tcp-protocol.md). It owns
// one connection at a time to one node: authentication, pipelining within the window the server
// announces, coalescing queued publishes into PUBLISH_BATCH frames, optional S2 compression,
// reconnecting with exponential backoff on an injectable clock, and resending every publish that was
// not answered when a connection died.
//
// Resending is safe because every publish carries an idempotency key: the caller's, or one the
// client generates before the first send and keeps for every resend. A publish the server had
// already committed is answered with the original event id and Ack.Duplicate set, so the store holds
// each event once however often it was sent. Retryable NACKs (overloaded, unavailable, timeout,
// internal, shutting_down) are resent the same way after a backoff, up to Options.MaxRetries.
//
// Goroutines: Dial starts one run goroutine, which owns the connection's lifecycle and is its only
// writer, and one reader goroutine per connection, which resolves futures from ACK and NACK frames.
// Publish and PublishAsync may be called from any number of goroutines. Close stops both and fails
// whatever is still unanswered with ErrClosed.
package client
