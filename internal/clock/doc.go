// Package clock is the injectable time source shared by the scheduler, the dispatcher's token buckets,
// circuit breakers and backoff. Logic never calls time.Now directly: it takes a Clock, production passes
// Real, tests pass a *Fake and move time with Advance (timers fire only inside Advance or Set).
package clock
