package dispatcher

import "time"

// DefaultRateLimitDuration is the period of an endpoint rate limit whose RateLimitDuration is 0.
const DefaultRateLimitDuration = time.Second

// bucket is a token bucket of rate tokens per period with burst = rate, implemented as GCRA (a virtual
// scheduling time instead of a token count, so it is exact in integer nanoseconds). It is a pure state
// machine over the times it is given, not safe for concurrent use (the lane guards it with lane.mu).
//
// Each token "costs" interval = per/rate of virtual time; tat is the theoretical arrival time of the next
// token. A take at now succeeds when tat+interval-burst*interval <= now, that is when at most burst tokens'
// worth of virtual time lies ahead of now.
type bucket struct {
	rate     int           // tokens per per; <= 0 means unlimited
	per      time.Duration // period of rate
	interval time.Duration // per / rate
	tat      time.Time     // theoretical arrival time of the next token
}

// configure sets the limit to rate tokens per per (per 0 means DefaultRateLimitDuration; rate <= 0 means
// unlimited). Changing from unlimited starts with a full burst; other changes keep the debt already taken.
func (b *bucket) configure(rate int, per time.Duration, now time.Time) {
	if per <= 0 {
		per = DefaultRateLimitDuration
	}
	if rate <= 0 {
		*b = bucket{}
		return
	}
	if rate == b.rate && per == b.per {
		return
	}
	wasUnlimited := b.rate <= 0
	b.rate, b.per = rate, per
	b.interval = per / time.Duration(rate)
	if wasUnlimited || b.tat.IsZero() {
		b.tat = now
	}
}

// take takes one token at now. It returns 0 on success, or how long to wait before a token is available
// (nothing is taken then).
func (b *bucket) take(now time.Time) time.Duration {
	if b.rate <= 0 || b.interval <= 0 {
		return 0
	}
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(b.interval)
	allowAt := next.Add(-time.Duration(b.rate) * b.interval)
	if now.Before(allowAt) {
		return allowAt.Sub(now)
	}
	b.tat = next
	return 0
}

// refund gives back one token taken earlier and not used.
func (b *bucket) refund() {
	if b.rate > 0 {
		b.tat = b.tat.Add(-b.interval)
	}
}
