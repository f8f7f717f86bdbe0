package dispatcher

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

// Config tunes a Dispatcher. The zero value of every field means its default (see DefaultConfig).
type Config struct {
	// Workers is the global budget of concurrent requests across all lanes (default 256).
	Workers int
	// MaxInFlightPerEndpoint caps concurrent requests to one endpoint (default 32). It is further capped at
	// Workers/MaxLaneShare (at least 1) so that one hung endpoint can hold at most that share of the worker
	// budget: with Workers 8 a lane gets at most 2 requests in flight whatever this says.
	MaxInFlightPerEndpoint int
	// Breaker tunes the per-lane circuit breaker (10 consecutive failures, 30s cooldown).
	Breaker BreakerConfig
	// DefaultRetry applies to endpoints whose Retry is zero or invalid (default StandardWebhooksRetry).
	DefaultRetry RetryPolicy
	// MaxRetryAfter caps an honoured Retry-After (default 1h).
	MaxRetryAfter time.Duration
	// UserAgent is the default User-Agent header (default "Sluice").
	UserAgent string
	// Signer signs each attempt (default HMACSigner).
	Signer Signer
	// Clock drives buckets, breakers, backoff and attempt timestamps (default clock.Real{}).
	Clock clock.Clock
	// Rand returns uniform floats in [0, 1) for retry jitter; it is called concurrently from attempt
	// goroutines (default math/rand/v2.Float64). Tests pass a constant: 0.5 means no jitter.
	Rand func() float64
	// LaneIdleTimeout is how long a lane with nothing queued or in flight is kept (with its bucket and
	// breaker state) before it is forgotten (default 5m).
	LaneIdleTimeout time.Duration
	// Logger receives load errors (default slog.Default()).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultWorkers                = 256
	DefaultMaxInFlightPerEndpoint = 32
	DefaultMaxRetryAfter          = time.Hour
	DefaultUserAgent              = "Sluice"
	DefaultTimeout                = 30 * time.Second
	DefaultLaneIdleTimeout        = 5 * time.Minute

	// MaxLaneShare bounds one lane's share of the worker budget: a lane never has more than
	// Workers/MaxLaneShare (at least 1) requests in flight, so a single hung endpoint leaves at least
	// three quarters of the budget to the others.
	MaxLaneShare = 4
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	var c Config
	c.ensureDefaults()
	return c
}

func (c *Config) ensureDefaults() {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxInFlightPerEndpoint == 0 {
		c.MaxInFlightPerEndpoint = DefaultMaxInFlightPerEndpoint
	}
	c.Breaker.ensureDefaults()
	if c.DefaultRetry.IsZero() {
		c.DefaultRetry = StandardWebhooksRetry()
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Signer == nil {
		c.Signer = HMACSigner{}
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.LaneIdleTimeout == 0 {
		c.LaneIdleTimeout = DefaultLaneIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field; zero fields are valid (they mean the default).
func (c Config) Validate() error {
	switch {
	case c.Workers < 0:
		return fmt.Errorf("%w: workers %d is negative", ErrBadConfig, c.Workers)
	case c.MaxInFlightPerEndpoint < 0:
		return fmt.Errorf("%w: max in-flight per endpoint %d is negative", ErrBadConfig, c.MaxInFlightPerEndpoint)
	case c.MaxRetryAfter < 0:
		return fmt.Errorf("%w: max retry-after %v is negative", ErrBadConfig, c.MaxRetryAfter)
	case c.LaneIdleTimeout < 0:
		return fmt.Errorf("%w: lane idle timeout %v is negative", ErrBadConfig, c.LaneIdleTimeout)
	}
	if err := c.Breaker.validate(); err != nil {
		return err
	}
	if !c.DefaultRetry.IsZero() {
		if err := c.DefaultRetry.Validate(); err != nil {
			return fmt.Errorf("%w: default retry: %w", ErrBadConfig, err)
		}
	}
	return nil
}

// laneInFlightCap is the effective per-lane in-flight cap (see MaxInFlightPerEndpoint).
func (c *Config) laneInFlightCap() int {
	return max(1, min(c.MaxInFlightPerEndpoint, c.Workers/MaxLaneShare))
}
