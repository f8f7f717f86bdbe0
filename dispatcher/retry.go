package dispatcher

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry strategies for RetryPolicy.Strategy.
const (
	// StrategyExponential waits Interval * 2^(n-1) after attempt n fails, with ±10% jitter.
	StrategyExponential = "exponential"
	// StrategyLinear waits Interval * n after attempt n fails (no jitter).
	StrategyLinear = "linear"
	// StrategyConstant waits Interval after every failed attempt (no jitter).
	StrategyConstant = "constant"
	// StrategySchedule waits Schedule[n-1] after attempt n fails (the last entry repeats), with ±10% jitter.
	StrategySchedule = "schedule"
)

// JitterFraction is the relative jitter applied to exponential and schedule backoffs: a backoff d becomes a
// uniformly random duration in [d*(1-JitterFraction), d*(1+JitterFraction)).
const JitterFraction = 0.1

// DefaultMaxAttempts is the attempt budget of a policy whose MaxAttempts is 0 (schedule policies default to
// len(Schedule)+1 instead).
const DefaultMaxAttempts = 8

// StandardWebhooksSchedule is the retry schedule recommended by Standard Webhooks: the first attempt is
// immediate, then retries follow after 5s, 5m, 30m, 2h, 5h, 10h and 10h: 8 attempts in all.
var StandardWebhooksSchedule = []time.Duration{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	10 * time.Hour,
}

// RetryPolicy says when a failed attempt is retried and when a delivery gives up. The zero value means
// "use Config.DefaultRetry".
type RetryPolicy struct {
	Strategy string // StrategyExponential, StrategyLinear, StrategyConstant or StrategySchedule
	// Interval is the base delay of the exponential, linear and constant strategies.
	Interval time.Duration
	// MaxAttempts is the total number of attempts, the first included: attempt MaxAttempts failing makes
	// the delivery "failed". 0 means len(Schedule)+1 for schedule policies and DefaultMaxAttempts otherwise.
	MaxAttempts int
	// Schedule lists the delay after each failed attempt for StrategySchedule; the last entry repeats.
	Schedule []time.Duration
	// MaxInterval caps a single backoff (after jitter); 0 means no cap.
	MaxInterval time.Duration
}

// StandardWebhooksRetry is the default policy: StandardWebhooksSchedule, 8 attempts, ±10% jitter.
func StandardWebhooksRetry() RetryPolicy {
	return RetryPolicy{
		Strategy:    StrategySchedule,
		MaxAttempts: len(StandardWebhooksSchedule) + 1,
		Schedule:    append([]time.Duration(nil), StandardWebhooksSchedule...),
	}
}

// IsZero reports whether p is the zero policy (meaning "use the default").
func (p RetryPolicy) IsZero() bool {
	return p.Strategy == "" && p.Interval == 0 && p.MaxAttempts == 0 && len(p.Schedule) == 0 && p.MaxInterval == 0
}

// Validate reports whether p is usable. The API layer should call it when an endpoint is written: at
// dispatch time an invalid endpoint policy silently falls back to Config.DefaultRetry.
func (p RetryPolicy) Validate() error {
	if p.MaxAttempts < 0 {
		return fmt.Errorf("%w: max attempts %d is negative", ErrBadRetryPolicy, p.MaxAttempts)
	}
	if p.MaxInterval < 0 {
		return fmt.Errorf("%w: max interval %v is negative", ErrBadRetryPolicy, p.MaxInterval)
	}
	switch p.Strategy {
	case StrategyExponential, StrategyLinear, StrategyConstant:
		if p.Interval <= 0 {
			return fmt.Errorf("%w: strategy %q needs a positive interval, got %v", ErrBadRetryPolicy, p.Strategy, p.Interval)
		}
	case StrategySchedule:
		if len(p.Schedule) == 0 {
			return fmt.Errorf("%w: strategy %q needs a non-empty schedule", ErrBadRetryPolicy, p.Strategy)
		}
		for i, d := range p.Schedule {
			if d < 0 {
				return fmt.Errorf("%w: schedule[%d] = %v is negative", ErrBadRetryPolicy, i, d)
			}
		}
	default:
		return fmt.Errorf("%w: unknown strategy %q", ErrBadRetryPolicy, p.Strategy)
	}
	return nil
}

// Attempts returns the total number of attempts p allows.
func (p RetryPolicy) Attempts() int {
	if p.MaxAttempts > 0 {
		return p.MaxAttempts
	}
	if p.Strategy == StrategySchedule && len(p.Schedule) > 0 {
		return len(p.Schedule) + 1
	}
	return DefaultMaxAttempts
}

// Backoff returns the delay after attempt n (1-based) failed. rnd returns a uniform float in [0, 1) and
// drives the jitter; nil means no jitter. p must be valid.
func (p RetryPolicy) Backoff(n int, rnd func() float64) time.Duration {
	if n < 1 {
		n = 1
	}
	var d time.Duration
	jitter := false
	switch p.Strategy {
	case StrategyExponential:
		d = p.Interval
		for i := 1; i < n && d < math.MaxInt64/2; i++ {
			d *= 2
		}
		if n > 1 && d >= math.MaxInt64/2 {
			d = math.MaxInt64 / 2 // saturate; MaxInterval caps it further
		}
		jitter = true
	case StrategyLinear:
		if p.Interval > 0 && time.Duration(n) > (math.MaxInt64/2)/p.Interval {
			d = math.MaxInt64 / 2
		} else {
			d = p.Interval * time.Duration(n)
		}
	case StrategyConstant:
		d = p.Interval
	case StrategySchedule:
		if len(p.Schedule) > 0 {
			d = p.Schedule[min(n, len(p.Schedule))-1]
		}
		jitter = true
	}
	if jitter && rnd != nil && d > 0 {
		f := float64(d) * (1 + JitterFraction*(2*rnd()-1))
		if f >= math.MaxInt64 {
			d = math.MaxInt64
		} else {
			d = time.Duration(f)
		}
	}
	if p.MaxInterval > 0 && d > p.MaxInterval {
		d = p.MaxInterval
	}
	return d
}

// outcome is the decision taken for one finished attempt.
type outcome struct {
	Status          Status
	NextAttemptAt   time.Time
	DisableEndpoint bool
}

// decide turns an attempt's HTTP status (0 when the request failed without a response) into the next step
// under policy p. attempt is the 1-based number of the attempt that just finished; now is when it finished.
// A Retry-After on a 429 or 503 is honoured, capped at maxRetryAfter, but never shortens the backoff.
func decide(p RetryPolicy, attempt, statusCode int, respHeader http.Header, now time.Time,
	maxRetryAfter time.Duration, rnd func() float64,
) outcome {
	switch {
	case statusCode >= 200 && statusCode < 300:
		return outcome{Status: StatusSuccess}
	case statusCode == http.StatusGone:
		return outcome{Status: StatusFailed, DisableEndpoint: true}
	case attempt >= p.Attempts():
		return outcome{Status: StatusFailed}
	}
	wait := p.Backoff(attempt, rnd)
	if statusCode == http.StatusTooManyRequests || statusCode == http.StatusServiceUnavailable {
		if ra, ok := parseRetryAfter(respHeader.Get("Retry-After"), now); ok {
			ra = min(ra, maxRetryAfter)
			wait = max(wait, ra)
		}
	}
	return outcome{Status: StatusRetry, NextAttemptAt: now.Add(wait)}
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date, relative to now. A date in the
// past yields 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return math.MaxInt64, true
			}
			return 0, false
		}
		if secs > uint64(math.MaxInt64/int64(time.Second)) {
			return math.MaxInt64, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
