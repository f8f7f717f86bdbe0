package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers. Implementations are safe for concurrent use.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends the time on C() once d has elapsed on this clock.
	NewTimer(d time.Duration) Timer
}

// Timer is the subset of *time.Timer that logic needs; see time.Timer for the semantics of Stop and Reset.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time { return time.Now() }

func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// Fake is a manually advanced clock for deterministic tests. Timers fire, in deadline order, only inside
// Advance or Set. Its channels are buffered (capacity 1) so a fire never blocks the test goroutine.
type Fake struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers []*fakeTimer
	// changed is closed and replaced whenever a timer is created or stopped, so WaitTimers can block
	// without polling.
	changed chan struct{}
}

// NewFake returns a Fake clock set to start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{clock: f, c: make(chan time.Time, 1)}
	t.armLocked(f.now.Add(d))
	return t
}

// Advance moves the clock forward by d, firing every timer whose deadline is reached.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.Set(target)
}

// Set moves the clock to t (never backwards), firing due timers in deadline order.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Before(f.now) {
		return
	}
	sort.SliceStable(f.timers, func(i, j int) bool { return f.timers[i].when.Before(f.timers[j].when) })
	keep := f.timers[:0]
	for _, tm := range f.timers {
		if !tm.when.After(t) {
			tm.armed = false
			select {
			case tm.c <- tm.when:
			default:
			}
			continue
		}
		keep = append(keep, tm)
	}
	for i := len(keep); i < len(f.timers); i++ {
		f.timers[i] = nil
	}
	f.timers = keep
	f.now = t
	f.notifyLocked()
}

// Timers reports how many timers are armed: tests use it to know a goroutine is parked on the clock.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitTimers blocks until at least n timers are armed or deadline passes (real time); it reports
// whether the count was reached. It lets a test wait for a goroutine to park without sleeping.
func (f *Fake) WaitTimers(n int, deadline time.Duration) bool {
	return f.waitUntil(deadline, func() bool { return len(f.timers) >= n })
}

// WaitTimerBy blocks until a timer due at or before t is armed, or deadline passes (real time); it
// reports whether one was. A test that has just changed what a goroutine waits for uses it to know
// the goroutine has re-armed its timer, so that an Advance cannot fall between the goroutine reading
// the time and arming its timer from that reading (the timer would then be set past the advance).
func (f *Fake) WaitTimerBy(t time.Time, deadline time.Duration) bool {
	return f.waitUntil(deadline, func() bool {
		for _, tm := range f.timers {
			if !tm.when.After(t) {
				return true
			}
		}
		return false
	})
}

// waitUntil blocks until cond, evaluated under f.mu each time the timers change, holds, or deadline
// passes (real time).
func (f *Fake) waitUntil(deadline time.Duration, cond func() bool) bool {
	end := time.NewTimer(deadline)
	defer end.Stop()
	for {
		f.mu.Lock()
		ok := cond()
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-end.C:
			return false
		}
	}
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTimer struct {
	clock *Fake
	c     chan time.Time
	// Guarded by clock.mu.
	when  time.Time
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	return t.disarmLocked()
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.disarmLocked()
	t.armLocked(t.clock.now.Add(d))
	return was
}

func (t *fakeTimer) armLocked(when time.Time) {
	f := t.clock
	t.when = when
	if !when.After(f.now) {
		select {
		case t.c <- when:
		default:
		}
		f.notifyLocked()
		return
	}
	t.armed = true
	f.timers = append(f.timers, t)
	f.notifyLocked()
}

func (t *fakeTimer) disarmLocked() bool {
	if !t.armed {
		return false
	}
	t.armed = false
	f := t.clock
	for i, x := range f.timers {
		if x == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			break
		}
	}
	f.notifyLocked()
	return true
}
