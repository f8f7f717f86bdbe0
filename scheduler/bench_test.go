package scheduler

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

// The benchmarks compare the wheel with the two naive baselines a dispatcher could use instead: one
// time.AfterFunc per delivery (plus a map to cancel by key) and a container/heap priority queue (plus a
// map to move and cancel by key). Every implementation takes a mutex per call, as all three must to be
// shared by the ingest and dispatch goroutines. Setup runs once per size thanks to b.Loop, so
//
//	go test -run '^$' -bench . -benchtime=1x ./scheduler/
//
// finishes in well under a minute; drop -benchtime for stable figures.

var sizes = []int{1e4, 1e5, 1e6}

// timerQueue is what the benchmarks drive; at is an offset from start (a delay for AfterFunc).
type timerQueue interface {
	Schedule(key uint64, at time.Duration)
	Cancel(key uint64) bool
	// Advance fires everything due by now and returns how many fired.
	Advance(now time.Duration) int
	Close()
}

type wheelQueue struct{ w *Wheel[uint64] }

func newWheelQueue() timerQueue {
	return wheelQueue{New[uint64](Config{Clock: clock.NewFake(start)}, nil)}
}
func (q wheelQueue) Schedule(k uint64, at time.Duration) { q.w.Schedule(k, start.Add(at)) }
func (q wheelQueue) Cancel(k uint64) bool                { return q.w.Cancel(k) }
func (q wheelQueue) Advance(now time.Duration) int       { return len(q.w.AdvanceTo(start.Add(now))) }
func (q wheelQueue) Close()                              {}

// heapQueue is the binary-heap baseline: O(log n) schedule, move and cancel.
type heapQueue struct {
	mu    sync.Mutex // guards h and index
	h     timerHeap
	index map[uint64]*heapItem
}

type heapItem struct {
	key uint64
	at  time.Duration
	idx int
}

type timerHeap []*heapItem

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *timerHeap) Push(x any)        { it := x.(*heapItem); it.idx = len(*h); *h = append(*h, it) }
func (h *timerHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

func newHeapQueue() timerQueue { return &heapQueue{index: map[uint64]*heapItem{}} }

func (q *heapQueue) Schedule(k uint64, at time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.index[k]; ok {
		it.at = at
		heap.Fix(&q.h, it.idx)
		return
	}
	it := &heapItem{key: k, at: at}
	q.index[k] = it
	heap.Push(&q.h, it)
}

func (q *heapQueue) Cancel(k uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.index[k]
	if ok {
		heap.Remove(&q.h, it.idx)
		delete(q.index, k)
	}
	return ok
}

func (q *heapQueue) Advance(now time.Duration) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var due []uint64
	for len(q.h) > 0 && q.h[0].at <= now {
		it := heap.Pop(&q.h).(*heapItem)
		delete(q.index, it.key)
		due = append(due, it.key)
	}
	return len(due)
}

func (q *heapQueue) Close() {}

// afterFuncQueue is the runtime-timer baseline: one time.AfterFunc per key, whose callback knows its
// key, and a map to cancel by key. Its timers run on the real clock, so Advance does not apply.
type afterFuncQueue struct {
	mu sync.Mutex // guards m
	m  map[uint64]*time.Timer
}

func newAfterFuncQueue() timerQueue { return &afterFuncQueue{m: map[uint64]*time.Timer{}} }

func (q *afterFuncQueue) Schedule(k uint64, d time.Duration) {
	t := time.AfterFunc(d, func() { q.Cancel(k) })
	q.mu.Lock()
	old := q.m[k]
	q.m[k] = t
	q.mu.Unlock()
	if old != nil {
		old.Stop()
	}
}

func (q *afterFuncQueue) Cancel(k uint64) bool {
	q.mu.Lock()
	t, ok := q.m[k]
	delete(q.m, k)
	q.mu.Unlock()
	return ok && t.Stop()
}

func (q *afterFuncQueue) Advance(time.Duration) int { panic("BUG: AfterFunc timers cannot be stepped") }

func (q *afterFuncQueue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, t := range q.m {
		t.Stop()
		delete(q.m, k)
	}
}

var impls = []struct {
	name string
	make func() timerQueue
}{
	{"wheel", newWheelQueue},
	{"heap", newHeapQueue},
	{"afterfunc", newAfterFuncQueue},
}

// offsets are pre-drawn so the timed loops measure the queues, not the random generator.
func offsets(n int, lo, hi time.Duration) []time.Duration {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	return out
}

// BenchmarkScheduleCancel measures one Schedule plus one Cancel of a fresh key while n other timers,
// due between 1 minute and 10 hours out, are pending. It also reports the heap bytes each pending
// timer costs (B/timer) and how long one forced GC takes with them live (GC-ms).
func BenchmarkScheduleCancel(b *testing.B) {
	for _, impl := range impls {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/n=%d", impl.name, n), func(b *testing.B) {
				at := offsets(1<<16, time.Minute, 10*time.Hour)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				q := impl.make()
				defer q.Close()
				for i := range n {
					q.Schedule(uint64(i), at[i&(len(at)-1)])
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perTimer := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				gcStart := time.Now()
				runtime.GC()
				gcMS := float64(time.Since(gcStart).Microseconds()) / 1000

				i := 0
				for b.Loop() {
					k := uint64(n + i&1023)
					q.Schedule(k, at[i&(len(at)-1)])
					q.Cancel(k)
					i++
				}
				// After the loop: b.Loop's first call resets the timer, which drops reported metrics.
				b.ReportMetric(perTimer, "B/timer")
				b.ReportMetric(gcMS, "GC-ms")
			})
		}
	}
}

// BenchmarkReschedule moves an existing timer to a new deadline among n pending ones: what every
// failed attempt does to its delivery.
func BenchmarkReschedule(b *testing.B) {
	for _, impl := range impls[:2] {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/n=%d", impl.name, n), func(b *testing.B) {
				at := offsets(1<<16, time.Minute, 10*time.Hour)
				q := impl.make()
				for i := range n {
					q.Schedule(uint64(i), at[i&(len(at)-1)])
				}
				i := 0
				for b.Loop() {
					q.Schedule(uint64((i*7919)%n), at[(i+12345)&(len(at)-1)])
					i++
				}
			})
		}
	}
}

// BenchmarkScheduleFireAll schedules n timers spread over 10 s and steps the clock through them a
// millisecond at a time, collecting every one; one op is all n timers, ns/timer the per-timer cost.
// The AfterFunc baseline schedules n timers due within 1 ms of real time and waits until all fired.
func BenchmarkScheduleFireAll(b *testing.B) {
	const span = 10 * time.Second
	for _, impl := range impls {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/n=%d", impl.name, n), func(b *testing.B) {
				if impl.name == "afterfunc" {
					benchAfterFuncFireAll(b, n)
					return
				}
				at := offsets(n, 0, span)
				for b.Loop() {
					q := impl.make()
					for i, d := range at {
						q.Schedule(uint64(i), d)
					}
					fired := 0
					for now := time.Duration(0); now <= span; now += time.Millisecond {
						fired += q.Advance(now)
					}
					if fired != n {
						b.Fatalf("fired %d of %d", fired, n)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/timer")
			})
		}
	}
}

func benchAfterFuncFireAll(b *testing.B, n int) {
	at := offsets(n, 0, time.Millisecond)
	for b.Loop() {
		var left atomic.Int64
		left.Store(int64(n))
		done := make(chan struct{})
		fire := func() {
			if left.Add(-1) == 0 {
				close(done)
			}
		}
		for _, d := range at {
			time.AfterFunc(d, fire)
		}
		<-done
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/timer")
}
