package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

// wait bounds every blocking step of a test in real time; nothing sleeps, it only caps a hang.
const wait = 10 * time.Second

// runWheel starts Run on a wheel with a fake clock whose batches arrive on the returned channel.
func runWheel(t *testing.T, cfg Config) (*Wheel[string], *clock.Fake, <-chan []string, func() error) {
	t.Helper()
	fc := clock.NewFake(start)
	cfg.Clock = fc
	batches := make(chan []string, 100)
	w := New(cfg, func(due []string) { batches <- due })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
			return nil
		}
	})
	t.Cleanup(func() { _ = stop() })
	return w, fc, batches, stop
}

func recv(t *testing.T, batches <-chan []string) []string {
	t.Helper()
	select {
	case b := <-batches:
		return b
	case <-time.After(wait):
		t.Fatal("no batch fired")
		return nil
	}
}

func park(t *testing.T, fc *clock.Fake) {
	t.Helper()
	if !fc.WaitTimers(1, wait) {
		t.Fatal("Run never parked on the clock")
	}
}

func TestRunFiresBatches(t *testing.T) {
	w, fc, batches, stop := runWheel(t, Config{})
	w.Schedule("b", start.Add(10*ms))
	w.Schedule("a", start.Add(10*ms-1))
	w.Schedule("c", start.Add(25*ms))
	park(t, fc)

	fc.Advance(10*ms - 1) // short of the tick boundary: no timer may fire
	fc.Advance(1)
	got := recv(t, batches)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first batch %v, want [a b]", got)
	}
	park(t, fc) // Run re-armed for c
	fc.Advance(15 * ms)
	if got := recv(t, batches); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("second batch %v, want [c]", got)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if n := fc.Timers(); n != 0 {
		t.Fatalf("%d timers left armed after Run returned", n)
	}
	select {
	case b := <-batches:
		t.Fatalf("unexpected batch %v", b)
	default:
	}
}

// TestRunBatchesEverythingDue checks that keys due at different ticks, all passed by one clock step,
// reach fire as a single slice in due order.
func TestRunBatchesEverythingDue(t *testing.T) {
	w, fc, batches, _ := runWheel(t, Config{})
	var want []string
	for i := range 1000 {
		k := fmt.Sprintf("k%04d", i)
		want = append(want, k)
		w.Schedule(k, start.Add(time.Duration(i+1)*time.Second))
	}
	park(t, fc)
	fc.Advance(time.Hour)
	got := recv(t, batches)
	if !slices.Equal(got, want) {
		t.Fatalf("batch of %d keys, not the %d due keys in order", len(got), len(want))
	}
	if w.Len() != 0 {
		t.Fatalf("Len() = %d after the batch", w.Len())
	}
}

func TestRunEarlierScheduleWakesIt(t *testing.T) {
	w, fc, batches, _ := runWheel(t, Config{})
	w.Schedule("late", start.Add(time.Hour))
	park(t, fc)
	// Run sleeps until the hour's slot; only the wake channel can get "soon" fired at 5 ms. Advancing
	// before Run has re-armed its timer for 5 ms could let it read the old time and then arm 5 ms
	// past the advance (a failure seen once under -race): wait for that timer first.
	w.Schedule("soon", start.Add(5*ms))
	if !fc.WaitTimerBy(start.Add(5*ms), wait) {
		t.Fatal("Run did not re-arm its timer for the earlier key")
	}
	fc.Advance(5 * ms)
	if got := recv(t, batches); !slices.Equal(got, []string{"soon"}) {
		t.Fatalf("batch %v, want [soon]", got)
	}
	park(t, fc)
	fc.Advance(time.Hour)
	if got := recv(t, batches); !slices.Equal(got, []string{"late"}) {
		t.Fatalf("batch %v, want [late]", got)
	}
}

// TestRunPastScheduleWakesIdle: an idle Run holds no timer, and a key already due wakes it at once.
func TestRunPastScheduleWakesIdle(t *testing.T) {
	w, fc, batches, _ := runWheel(t, Config{})
	fc.Advance(time.Minute)
	w.Schedule("overdue", start)
	if got := recv(t, batches); !slices.Equal(got, []string{"overdue"}) {
		t.Fatalf("batch %v, want [overdue]", got)
	}
}

// TestRunDoesNotSpin: with one timer an hour away, stepping the clock a millisecond at a time must not
// wake Run, whose only timer is for the hour (or the slot that cascades towards it).
func TestRunDoesNotSpin(t *testing.T) {
	w, fc, batches, _ := runWheel(t, Config{})
	w.Schedule("k", start.Add(time.Hour))
	park(t, fc)
	before := w.loops.Load()
	for range 500 {
		fc.Advance(ms)
		park(t, fc) // had the step fired Run's timer, Run has looped and re-parked by now
	}
	if n := w.loops.Load() - before; n != 0 {
		t.Fatalf("Run woke %d times in 500 idle ticks", n)
	}
	// A timer an hour out cascades through a few levels on the way: a handful of wake-ups, not 3.6M.
	fc.Advance(time.Hour)
	if got := recv(t, batches); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("batch %v, want [k]", got)
	}
	if n := w.loops.Load() - before; n > 2*DefaultLevels {
		t.Fatalf("Run looped %d times to fire one timer", n)
	}
}

// TestRunFireMaySchedule: fire runs without the mutex, so it can reschedule (a retry) and cancel.
func TestRunFireMaySchedule(t *testing.T) {
	fc := clock.NewFake(start)
	batches := make(chan []string, 10)
	var w *Wheel[string]
	w = New(Config{Clock: fc}, func(due []string) {
		for _, k := range due {
			if k == "retry" {
				w.Schedule("retry-2", fc.Now().Add(time.Second))
				w.Cancel("other")
			}
		}
		batches <- due
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	w.Schedule("retry", start.Add(ms))
	w.Schedule("other", start.Add(2*time.Second))
	park(t, fc)
	fc.Advance(ms)
	recv(t, batches)
	if w.Len() != 1 {
		t.Fatalf("Len() = %d, want 1 (retry-2)", w.Len())
	}
	park(t, fc)
	fc.Advance(time.Second)
	if got := recv(t, batches); !slices.Equal(got, []string{"retry-2"}) {
		t.Fatalf("batch %v, want [retry-2]", got)
	}
}

func TestRunErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := New[int](Config{}, nil).Run(ctx); !errors.Is(err, ErrNoFire) {
		t.Fatalf("Run without fire: %v, want ErrNoFire", err)
	}
	fc := clock.NewFake(start)
	w := New(Config{Clock: fc}, func([]int) {})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	w.Schedule(1, start.Add(time.Hour))
	park(t, fc)
	if err := w.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
	// A stopped wheel can be driven again: a new leader term reuses it.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := w.Run(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after restart: %v", err)
	}
}

// TestRunConcurrent schedules, moves and cancels from many goroutines while Run fires: every key fires
// exactly once unless a Cancel reported removing it first. Meant for -race. Each key is first scheduled
// an hour out, further than the clock is driven in this test, so its move to the near future always
// replaces a pending timer and each key has exactly one life.
func TestRunConcurrent(t *testing.T) {
	fc := clock.NewFake(start)
	var mu sync.Mutex
	fired := map[int]int{}
	w := New(Config{Clock: fc}, func(due []int) {
		mu.Lock()
		for _, k := range due {
			fired[k]++
		}
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- w.Run(ctx) }()

	const workers, perWorker = 8, 2000
	var cancelled sync.Map
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := g*perWorker + i
				w.Schedule(k, fc.Now().Add(time.Hour))
				w.Schedule(k, fc.Now().Add(time.Duration(i%50-5)*ms)) // move it, sometimes into the past
				if i%5 == 0 && w.Cancel(k) {
					cancelled.Store(k, true)
				}
			}
		})
	}
	// Drive the clock while the workers run, then until everything has fired.
	end := time.Now().Add(wait)
	for {
		fc.Advance(ms)
		mu.Lock()
		n := len(fired)
		mu.Unlock()
		c := 0
		cancelled.Range(func(any, any) bool { c++; return true })
		if n+c == workers*perWorker && w.Len() == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("fired %d + cancelled %d of %d keys; %d pending", n, c, workers*perWorker, w.Len())
		}
	}
	wg.Wait()
	cancel()
	if err := <-runDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range fired {
		if n != 1 {
			t.Errorf("key %d fired %d times", k, n)
		}
		if _, ok := cancelled.Load(k); ok {
			t.Errorf("key %d fired after a successful Cancel", k)
		}
	}
}
