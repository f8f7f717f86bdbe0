package dispatcher

import (
	"fmt"
	"time"
)

// BreakerConfig tunes the per-lane circuit breaker. Zero fields mean the defaults.
type BreakerConfig struct {
	// FailureThreshold is the number of consecutive failed attempts that opens the breaker (default 10).
	FailureThreshold int
	// Cooldown is how long an open breaker waits before letting one probe through (default 30s).
	Cooldown time.Duration
}

// Breaker defaults.
const (
	DefaultFailureThreshold = 10
	DefaultCooldown         = 30 * time.Second
)

func (c *BreakerConfig) ensureDefaults() {
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.Cooldown == 0 {
		c.Cooldown = DefaultCooldown
	}
}

func (c BreakerConfig) validate() error {
	if c.FailureThreshold < 0 {
		return fmt.Errorf("%w: breaker failure threshold %d is negative", ErrBadConfig, c.FailureThreshold)
	}
	if c.Cooldown < 0 {
		return fmt.Errorf("%w: breaker cooldown %v is negative", ErrBadConfig, c.Cooldown)
	}
	return nil
}

// BreakerState is the state of a lane's circuit breaker.
type BreakerState uint8

const (
	// BreakerClosed: requests flow; consecutive failures are counted.
	BreakerClosed BreakerState = iota
	// BreakerOpen: nothing is sent until the cooldown ends; queued deliveries wait.
	BreakerOpen
	// BreakerHalfOpen: the cooldown has ended; exactly one probe is (or may be) in flight.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", uint8(s))
}

// breaker is a consecutive-failure circuit breaker. It is a pure state machine over the times it is given:
// it never reads a clock and is not safe for concurrent use (the lane guards it with lane.mu).
//
//	closed --FailureThreshold consecutive failures--> open(until = now+Cooldown)
//	open   --begin at or after until--> half-open (the caller's request is the probe)
//	half-open --probe succeeds--> closed;  --probe fails--> open(until = now+Cooldown)
//
// Results of non-probe requests that finish while the breaker is open or half-open were started before it
// opened: they are ignored.
type breaker struct {
	cfg      BreakerConfig
	state    BreakerState
	failures int       // consecutive failures while closed
	until    time.Time // end of the cooldown while open
}

func newBreaker(cfg BreakerConfig) breaker {
	cfg.ensureDefaults()
	return breaker{cfg: cfg}
}

// ready reports whether a request could start at now without changing state. When it cannot, wait > 0 is
// how long until the cooldown ends, and wait == 0 means "until the probe in flight finishes".
func (b *breaker) ready(now time.Time) (wait time.Duration, ok bool) {
	switch b.state {
	case BreakerOpen:
		if now.Before(b.until) {
			return b.until.Sub(now), false
		}
		return 0, true
	case BreakerHalfOpen:
		return 0, false
	}
	return 0, true
}

// begin admits a request starting at now. probe is true when the request is the half-open probe; its
// result must be reported with probe set.
func (b *breaker) begin(now time.Time) (probe, ok bool) {
	switch b.state {
	case BreakerOpen:
		if now.Before(b.until) {
			return false, false
		}
		b.state = BreakerHalfOpen
		return true, true
	case BreakerHalfOpen:
		return false, false
	}
	return false, true
}

// done records the result of a request admitted by begin.
func (b *breaker) done(now time.Time, success, probe bool) {
	if probe {
		if b.state != BreakerHalfOpen {
			return
		}
		if success {
			b.state, b.failures = BreakerClosed, 0
		} else {
			b.state, b.until = BreakerOpen, now.Add(b.cfg.Cooldown)
		}
		return
	}
	if b.state != BreakerClosed {
		return
	}
	if success {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.cfg.FailureThreshold {
		b.state, b.until, b.failures = BreakerOpen, now.Add(b.cfg.Cooldown), 0
	}
}

// abort returns an admitted request that never produced a verdict (dispatcher shutting down, request not
// built): a probe's slot is handed back so the next request becomes the probe.
func (b *breaker) abort(now time.Time, probe bool) {
	if probe && b.state == BreakerHalfOpen {
		b.state, b.until = BreakerOpen, now
	}
}

// stateAt reports the state as an observer sees it at now: an open breaker whose cooldown has ended is
// half-open (it admits a probe).
func (b *breaker) stateAt(now time.Time) BreakerState {
	if b.state == BreakerOpen && !now.Before(b.until) {
		return BreakerHalfOpen
	}
	return b.state
}

// idle reports whether forgetting this breaker loses nothing: it is closed with no failure streak, or its
// cooldown ended more than linger ago.
func (b *breaker) idle(now time.Time, linger time.Duration) bool {
	switch b.state {
	case BreakerClosed:
		return b.failures == 0
	case BreakerOpen:
		return !now.Before(b.until.Add(linger))
	}
	return false
}
