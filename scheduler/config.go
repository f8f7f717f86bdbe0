package scheduler

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

// Defaults applied by New to zero fields of Config.
const (
	// DefaultTick is the wheel's resolution: deliveries are due to the millisecond, and a finer tick only
	// costs more wake-ups.
	DefaultTick = time.Millisecond
	// DefaultLevels of 64 slots cover 2^36 ticks (about 795 days at 1 ms) before the overflow list is
	// used, so every realistic retry (hours, weeks) stays in the O(1) part of the wheel.
	DefaultLevels = 6
	// MaxLevels keeps a level's span (64^level ticks) inside a uint64 with room for the slot arithmetic.
	MaxLevels = 10
)

var (
	// ErrInvalidConfig is wrapped by Config.Validate with the offending field.
	ErrInvalidConfig = errors.New("scheduler: invalid config")
	// ErrRunning is returned by Run when another Run is already driving the wheel: two drivers would
	// split batches between them and break the fire-order guarantee.
	ErrRunning = errors.New("scheduler: wheel already running")
	// ErrNoFire is returned by Run for a wheel made with a nil fire callback (such a wheel can only be
	// driven with AdvanceTo).
	ErrNoFire = errors.New("scheduler: Run needs a fire callback")
)

// Config tunes a Wheel. The zero value is valid and means every default.
type Config struct {
	// Tick is the resolution of the wheel: deadlines are rounded up to a multiple of Tick after the
	// wheel's creation. Zero means DefaultTick (1 ms).
	Tick time.Duration
	// Clock is the time source for New (tick 0 is Clock.Now() at New) and Run. Zero (nil) means
	// clock.Real{}; tests pass a *clock.Fake.
	Clock clock.Clock
	// Levels is the number of 64-slot levels; level l spans 64^(l+1) ticks. Deadlines further out than
	// the top level wait in an overflow list that is rescanned once per top-level rotation. Zero means
	// DefaultLevels (6); at most MaxLevels.
	Levels int
	// SizeHint pre-sizes the key index for this many timers, e.g. when a node rebuilds the wheel from the
	// due-time index after becoming responsible for dispatch. Zero means grow as needed.
	SizeHint int
}

// DefaultConfig returns the configuration New uses for a zero Config.
func DefaultConfig() Config {
	return Config{Tick: DefaultTick, Clock: clock.Real{}, Levels: DefaultLevels}
}

// Validate reports the first invalid field. New does not call it: New treats an invalid field like a
// zero one (the default), so call Validate where the config comes from users.
func (c Config) Validate() error {
	if c.Tick < 0 {
		return fmt.Errorf("%w: Tick %v is negative", ErrInvalidConfig, c.Tick)
	}
	if c.Levels < 0 || c.Levels > MaxLevels {
		return fmt.Errorf("%w: Levels %d not in [0, %d]", ErrInvalidConfig, c.Levels, MaxLevels)
	}
	if c.SizeHint < 0 {
		return fmt.Errorf("%w: SizeHint %d is negative", ErrInvalidConfig, c.SizeHint)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Tick <= 0 {
		c.Tick = d.Tick
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.Levels <= 0 || c.Levels > MaxLevels {
		c.Levels = d.Levels
	}
	if c.SizeHint < 0 {
		c.SizeHint = 0
	}
	return c
}
