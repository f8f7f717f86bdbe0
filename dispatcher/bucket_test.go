package dispatcher

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// TestBucket runs token-bucket scenarios over a Fake clock. Each step moves the clock to at (an offset from
// t0) and calls take once per entry of waits, expecting that wait (0 = token taken).
func TestBucket(t *testing.T) {
	type step struct {
		at    time.Duration
		waits []time.Duration
		// reconfigure, when rate != 0 or per != 0, is applied before the takes.
		rate int
		per  time.Duration
	}
	const ms = time.Millisecond
	zeros := func(n int, then ...time.Duration) []time.Duration {
		return append(make([]time.Duration, n), then...)
	}
	tests := []struct {
		name  string
		rate  int
		per   time.Duration
		steps []step
	}{
		{"unlimited", 0, 0, []step{{at: 0, waits: zeros(1000)}}},
		{"5 per second: burst then 200ms spacing", 5, time.Second, []step{
			{at: 0, waits: zeros(5, 200*ms, 200*ms)},
			{at: 100 * ms, waits: []time.Duration{100 * ms}},
			{at: 200 * ms, waits: zeros(1, 200*ms)},
			{at: time.Second, waits: zeros(4, 200*ms)},
			{at: 2 * time.Second, waits: zeros(5, 200*ms)},
		}},
		{"idle time refills only up to the burst", 2, time.Second, []step{
			{at: 0, waits: zeros(2, 500*ms)},
			{at: time.Hour, waits: zeros(2, 500*ms)},
		}},
		{"per 0 means 1s", 4, 0, []step{
			{at: 0, waits: zeros(4, 250*ms)},
		}},
		{"1 per minute", 1, time.Minute, []step{
			{at: 0, waits: zeros(1, time.Minute)},
			{at: 30 * time.Second, waits: []time.Duration{30 * time.Second}},
			{at: time.Minute, waits: zeros(1, time.Minute)},
		}},
		{"raising the rate keeps the debt, spaces at the new interval", 2, time.Second, []step{
			{at: 0, waits: zeros(2, 500*ms)},
			// tat is t0+1s; at 10/s (100ms interval, 1s window) the next token is allowed at t0+100ms.
			{at: 0, rate: 10, per: time.Second, waits: []time.Duration{100 * ms}},
			{at: 100 * ms, waits: zeros(1, 100*ms)},
		}},
		{"limited to unlimited to limited starts a fresh burst", 1, time.Hour, []step{
			{at: 0, waits: zeros(1, time.Hour)},
			{at: time.Second, rate: -1, waits: zeros(10)},
			{at: 2 * time.Second, rate: 1, per: time.Hour, waits: zeros(1, time.Hour)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			var b bucket
			b.configure(tc.rate, tc.per, clk.Now())
			for i, s := range tc.steps {
				clk.Set(t0.Add(s.at))
				now := clk.Now()
				switch {
				case s.rate < 0:
					b.configure(0, 0, now)
				case s.rate > 0:
					b.configure(s.rate, s.per, now)
				}
				for j, want := range s.waits {
					if got := b.take(now); got != want {
						t.Fatalf("step %d (at %v) take %d: wait %v, want %v", i, s.at, j, got, want)
					}
				}
			}
		})
	}
}

func TestBucketRefund(t *testing.T) {
	clk := clock.NewFake(t0)
	var b bucket
	b.configure(2, time.Second, clk.Now())
	for i := 0; i < 2; i++ {
		if w := b.take(clk.Now()); w != 0 {
			t.Fatalf("take %d: wait %v", i, w)
		}
	}
	if w := b.take(clk.Now()); w != 500*time.Millisecond {
		t.Fatalf("third take: wait %v, want 500ms", w)
	}
	b.refund()
	if w := b.take(clk.Now()); w != 0 {
		t.Fatalf("after refund: wait %v, want 0", w)
	}
}
