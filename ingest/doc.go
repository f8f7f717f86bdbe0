// Package ingest is Sluice's TCP ingest server: high-volume publishers keep a connection open and
// pipeline length-prefixed frames (docs/tcp-protocol.md, byte layouts in package wire) instead of
// paying an HTTP request per event. It owns the listener, authentication of a connection by API
// key, per-connection and global in-flight limits (backpressure), timeouts, and the mapping of
// publish outcomes to ACK / NACK frames. It does not store anything: every publish goes through
// Publisher.Publish (api.Server.Publish), the same path as HTTP, so TCP and HTTP events share the
// proposer's Raft batches, and an ACK is written only after Publish returned, that is after the
// event was committed and applied.
//
// # Threading model
//
//   - gnet event loops (Config.EventLoops, default one per CPU). A connection belongs to one loop for
//     its whole life; OnOpen, OnTraffic and OnClose for it run on that loop, which owns the
//     connection's inbound buffer, its auth state (authed, root, project) and all synchronous writes
//     (AUTH_OK, PONG, ERROR). A loop never blocks: it parses headers, takes in-flight slots, copies a
//     publish payload and hands it to a goroutine. Authenticate (a map lookup) is the only call out.
//   - Publish goroutines, one job per PUBLISH and per PUBLISH_BATCH (per item when the Publisher is
//     not a BatchPublisher), each item holding one in-flight slot, at most Config.MaxInFlight at
//     once. A job decompresses, decodes and validates the JSON, calls Publisher.Publish (a batch:
//     BatchPublisher.PublishAll, its items proposed together and waited for by the one goroutine),
//     queues each ACK or NACK with gnet's AsyncWrite
//     (concurrency-safe; the bytes are written on the loop), then releases its slot. Releasing a slot
//     wakes (gnet Conn.Wake) loops that paused a connection for want of one. A goroutine that
//     finishes a job waits up to 10 s for the next before exiting, so steady load reuses goroutines
//     (and their grown stacks) instead of starting one per publish. Server.work counts jobs,
//     Server.workers goroutines.
//   - The reaper goroutine, on the injected clock, asks loops to close connections past AuthTimeout
//     (not authenticated) or IdleTimeout (no frame while nothing is in flight) by setting conn.killed
//     and waking the loop, which writes the ERROR and closes.
//   - gnet's own goroutines (its engine, the acceptor) run inside gnet.Run, which Start launches in
//     one goroutine; Stop returns only after gnet.Run has returned, the reaper has exited and every
//     publish goroutine has finished.
//
// # Backpressure and bounded memory
//
// gnet cannot stop reading a socket: whenever it is readable, gnet reads it and appends what
// OnTraffic did not consume to the connection's inbound buffer. So "pausing" a connection means not
// consuming: when a frame would take the connection past MaxInFlightPerConn, or all connections past
// MaxInFlight, OnTraffic leaves it (and everything after it) in gnet's buffer and returns; a
// released slot wakes the loop, which resumes where it stopped. Because the kernel keeps
// delivering, the buffer of a paused connection is capped: past MaxBufferedBytes the connection gets
// ERROR overloaded and is closed rather than buffering without bound. A client that keeps within the
// max_in_flight AUTH_OK announces never reaches the per-connection cap; when the global cap is what
// pauses it, it reaches MaxBufferedBytes only if its window times its frame size exceeds it.
// Replies are bounded the same way: a connection whose unread replies exceed MaxOutboundBytes is
// closed. Frames other than PUBLISH and PUBLISH_BATCH are at most wire.MaxControlPayload bytes, so
// an unauthenticated connection can hold at most that much until AuthTimeout; MaxConns caps
// connections.
//
// # Stopping
//
// Stop stops consuming frames, waits up to DrainTimeout for in-flight publishes to finish and be
// acknowledged (then cancels the rest, which are NACKed timeout), sends ERROR shutting_down on every
// connection, and stops gnet. Clients resend what was not acknowledged, with its idempotency key.
//
// There is no TLS (gnet has none); see Config.
package ingest
