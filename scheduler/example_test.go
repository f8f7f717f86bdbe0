package scheduler_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/scheduler"
)

// Driving a wheel by hand, as unit tests do: deadlines round up to the tick, due keys come back in
// due order, and re-scheduling a key moves it.
func ExampleWheel_AdvanceTo() {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	w := scheduler.New[string](scheduler.Config{Clock: clock.NewFake(t0)}, nil)
	w.Schedule("dlv_b", t0.Add(2*time.Second))
	w.Schedule("dlv_a", t0.Add(1500*time.Microsecond)) // fires at the 2 ms tick, never before
	w.Schedule("dlv_c", t0.Add(time.Hour))
	w.Schedule("dlv_c", t0.Add(time.Second)) // moved, not duplicated

	fmt.Println(w.AdvanceTo(t0.Add(time.Millisecond)))
	fmt.Println(w.AdvanceTo(t0.Add(2 * time.Millisecond)))
	fmt.Println(w.AdvanceTo(t0.Add(time.Minute)), w.Len())
	// Output:
	// []
	// [dlv_a]
	// [dlv_c dlv_b] 0
}

// In production one goroutine runs the wheel on the real clock and hands batches to the dispatcher.
func ExampleWheel_Run() {
	clk := clock.Real{} // what the zero Config uses; the dispatcher passes its own Clock down
	batches := make(chan []string, 1)
	w := scheduler.New(scheduler.Config{Clock: clk}, func(due []string) { batches <- due })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	w.Schedule("dlv_1", clk.Now().Add(5*time.Millisecond))
	fmt.Println(<-batches)
	// Output: [dlv_1]
}
