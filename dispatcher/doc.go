// Package dispatcher turns due deliveries into HTTP attempts and attempt results.
//
// # What it owns
//
// Everything between "this delivery is due now" and "here is the attempt's result and what should happen
// next". The scheduler's timing wheel calls Submit with Refs that are due; the dispatcher loads each job
// through a Loader just before sending, sends it through a Sender (*netpool.Pool), and hands a Result to
// Results: success, retry at NextAttemptAt, or failed (and DisableEndpoint on 410 Gone). It keeps no
// durable state: what is queued or in flight is lost on a crash and re-submitted from the store's due-time
// index, which is why delivery is at least once and every request carries a stable X-Sluice-Delivery-Id.
//
// # Lanes
//
// There is one lane per endpoint, created on the first Submit for it and forgotten on DropEndpoint or
// once it has been idle (nothing queued or in flight, breaker with nothing to remember) for
// Config.LaneIdleTimeout. A lane dropped with requests in flight still counts them as pending until
// they finish, so Submit never starts a second attempt of one in the endpoint's next lane (a paused
// and at once reactivated endpoint gets its pending deliveries back while they are out). A lane has
//
//   - a FIFO queue of Refs (a slice + the lane mutex, in the style of nats-server's ipQueue) and the set of
//     delivery ids queued or in flight, which makes Submit idempotent;
//   - a token bucket: Endpoint.RateLimit attempts per RateLimitDuration (1s when 0), burst = RateLimit,
//     configured from the most recently loaded Job of the endpoint (so a changed limit applies from the
//     next attempt); 0 is unlimited;
//   - an in-flight cap: Config.MaxInFlightPerEndpoint (32), itself capped at Workers/MaxLaneShare
//     (Workers/4, at least 1) so that one hung endpoint can never hold more than a quarter of the budget;
//   - a circuit breaker (below).
//
// All lanes share the global worker budget, Config.Workers (256): a semaphore slot is held by each request
// while it is out. A lane takes a slot only after its breaker, in-flight cap and bucket have all said yes,
// so a lane that waits on any of them holds nothing global, and a slow or dead endpoint delays no other
// endpoint beyond the slots its own in-flight requests hold (at most its cap, for at most its Timeout).
// Lanes waiting for a slot are served in arrival order (Go channel senders queue FIFO).
//
// The order of checks for the head of a lane's queue is: breaker admits; in-flight below the cap; a token
// (taken before the load once the bucket is configured, so a job is loaded only when it can go now);
// Load (ErrNotPending drops the ref silently, other errors drop it and are logged and counted); a global
// slot; then the ref is popped and its attempt goroutine started. A loaded job is forgotten if the breaker
// then makes the lane wait, so nothing is sent on a stale load.
//
// # Circuit breaker
//
// Per lane, counting consecutive failed attempts (any non-2xx, timeout or connection error):
//
//	closed    --Breaker.FailureThreshold (10) consecutive failures-->  open until now+Breaker.Cooldown (30s)
//	open      --cooldown over-->  half-open: exactly one probe request is let through
//	half-open --probe succeeds-->  closed
//	half-open --probe fails-->     open for another cooldown
//
// While the breaker is open, queued deliveries wait in the queue: they do not burn attempts. Results of
// requests started before the breaker opened are ignored by it. All times come from Config.Clock.
//
// # Retries
//
// After a failed attempt n, the Result says retry at now+backoff, or failed when n >= MaxAttempts:
//
//   - exponential: Interval * 2^(n-1), ±10% jitter
//   - linear: Interval * n;  constant: Interval
//   - schedule: Schedule[n-1] (the last entry repeats), ±10% jitter
//   - default (Config.DefaultRetry, and any endpoint whose Retry is zero or invalid): the Standard Webhooks
//     schedule, 8 attempts: immediately, then 5s, 5m, 30m, 2h, 5h, 10h, 10h after each failure.
//
// 2xx is success. 3xx (redirects are not followed), 4xx, 5xx, timeouts and connection errors are
// failures. 410 Gone is failed at once with DisableEndpoint. A 429 or 503 with Retry-After (delay-seconds or
// an HTTP-date, read against the Clock) retries at now+max(backoff, min(Retry-After, MaxRetryAfter (1h))).
//
// # Request contract
//
// POST Endpoint.URL with the body exactly as published (Job.Body, byte for byte) and these headers, built
// in this order, later ones replacing earlier ones of the same name:
//
//	Content-Type: application/json
//	User-Agent: Config.UserAgent ("Sluice")
//	the endpoint's custom headers, then the event's custom headers (these two may replace the defaults
//	above; custom X-Sluice-*, Webhook-* and transport headers such as Host or Content-Length are dropped)
//	the endpoint's authentication header (API key or basic auth; recorded as [redacted])
//	X-Sluice-Delivery-Id: <delivery id>   stable across retries: receivers dedupe on it
//	X-Sluice-Event-Id: <event id>
//	X-Sluice-Event-Type: <event type>
//	X-Sluice-Attempt: <n>                 1-based
//	the signature headers of the endpoint's scheme (the Signer, sign.go): simple
//	  (X-Sluice-Signature or the project's header: HMAC of the body, newest live secret), advanced
//	  (t=<unix>,v1=...,v2=... over "<t>,<body>", every live secret), standard (webhook-id = delivery id,
//	  webhook-timestamp, webhook-signature: v1,<base64> per live secret) or standard-ed25519 (v1a);
//	  omitted when the endpoint has no secret, and the attempt fails unsent when every secret expired
//
// The request's Timeout is Endpoint.Timeout (30s when 0), its egress pool Endpoint.EgressPool, and its
// netpool Key the endpoint id (a stable egress IP per endpoint). Attempt records the headers as sent
// (signature included), the response status, headers and capped body, latency, error text and egress IP;
// its ID is model.NewID(StartedAt).
//
// # Threading
//
//   - Run's goroutine only waits: it owns the lifetime. Cancelling its ctx stops every lane, cancels the
//     requests in flight (their attempts are not recorded: the deliveries stay due in the store), and Run
//     returns once every goroutine below has exited (Dispatcher.wg).
//   - One lane goroutine per lane with a non-empty queue (none for idle lanes, none per queued ref). Submit
//     starts it; it exits when the queue is empty, the lane is dropped or ctx is done. It alone pops the
//     queue, calls Loader.Load, waits on the bucket and breaker (Clock timers) and takes worker slots.
//   - One attempt goroutine per request in flight. It owns its worker slot until the Sender returns, then
//     calls Results.Record and updates the lane (in-flight count, breaker, dedupe set), waking the lane
//     goroutine only if it was waiting for exactly that (waitReason). It then parks for the next attempt
//     (of any lane) rather than exiting, so its grown stack is reused; parked ones exit when ctx is done.
//   - Dispatcher.mu guards the lane map and the run state; lane.mu guards everything in a lane (queue, dedupe
//     set, in-flight count, breaker, bucket). Lock order: Dispatcher.mu, then lane.mu. No lock is held
//     across Load, Sign, Do or Record, so Submit never waits on an endpoint. The breaker and bucket are pure
//     state machines over the times they are given (breaker.go, bucket.go).
package dispatcher
