package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

// lane is one endpoint's queue, token bucket, in-flight count and circuit breaker.
//
// A lane goroutine (run) exists only while the queue is non-empty: Submit starts it, it exits when the
// queue empties. It is the only code that pops the queue, loads jobs and starts attempts. Each attempt runs
// on an attempt goroutine (attempt, startAttempt), which reports back under mu and wakes the lane goroutine.
type lane struct {
	d    *Dispatcher
	id   string
	wake chan struct{} // 1-slot: an attempt finished that the parked lane waits for (see waitReason)
	done chan struct{} // closed by DropEndpoint

	// timer is owned by the running lane goroutine (there is at most one; running hands it over).
	timer clock.Timer

	mu         sync.Mutex // guards the fields below
	queue      []Ref      // FIFO; live part is queue[head:]
	head       int
	pending    map[string]struct{} // delivery ids queued or in flight: Submit's dedupe set
	inflight   int
	running    bool // a lane goroutine is live
	dropped    bool
	br         breaker
	bk         bucket
	bucketSet  bool       // bk has been configured from a loaded job
	waiting    waitReason // why the lane goroutine is parked (waitNone when it is not)
	lastActive time.Time  // last time the lane went idle or an attempt finished
}

func newLane(d *Dispatcher, id string, now time.Time) *lane {
	return &lane{
		d:          d,
		id:         id,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		pending:    make(map[string]struct{}),
		br:         newBreaker(d.cfg.Breaker),
		lastActive: now,
	}
}

func (l *lane) queuedLocked() int { return len(l.queue) - l.head }

// popLocked removes the head of the queue (the caller checked it is non-empty).
func (l *lane) popLocked() {
	l.queue[l.head] = Ref{}
	l.head++
	switch {
	case l.head == len(l.queue):
		l.queue, l.head = l.queue[:0], 0
	case l.head >= 1024 && l.head*2 >= len(l.queue):
		// Compact so a long-lived backlog does not pin an ever-growing array.
		n := copy(l.queue, l.queue[l.head:])
		clear(l.queue[n:])
		l.queue, l.head = l.queue[:n], 0
	}
}

// idleLocked reports whether the lane can be forgotten: nothing queued or in flight, no goroutine, quiet
// for linger, and a breaker with nothing to remember.
func (l *lane) idleLocked(now time.Time, linger time.Duration) bool {
	return !l.running && l.inflight == 0 && l.queuedLocked() == 0 &&
		!now.Before(l.lastActive.Add(linger)) && l.br.idle(now, linger)
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run is the lane goroutine. Each turn it checks, in order: the breaker admits a request, an in-flight
// slot is free, a token is available (the bucket is configured from the last loaded job; the first job of a
// lane is loaded before the first token), the head job is loaded, and finally a global worker slot is free.
// Waiting on the breaker, the cap or the bucket holds nothing global: only the last step takes a worker slot,
// and the slot passes to the attempt goroutine. A taken token is kept across waits, and so is a loaded job
// except across a breaker wait (which may last a whole cooldown).
func (l *lane) run(ctx context.Context) {
	d := l.d
	defer d.wg.Done()
	var (
		job   *Job
		token bool
	)
	for {
		now := d.cfg.Clock.Now()
		l.mu.Lock()
		if l.dropped || l.queuedLocked() == 0 || ctx.Err() != nil {
			if token && !l.dropped {
				l.bk.refund()
			}
			l.stopTimer() // under mu: the next lane goroutine inherits the timer once running is false
			l.running = false
			l.lastActive = now
			l.mu.Unlock()
			return
		}
		l.waiting = waitNone
		head := l.queue[l.head]
		if wait, ok := l.br.ready(now); !ok {
			// The breaker may hold the lane for a whole cooldown: forget the loaded job so the
			// delivery is re-loaded (and re-checked) just before it is finally sent.
			job = nil
			if wait > 0 {
				l.parkLocked(ctx, waitTimer, wait)
			} else {
				l.parkLocked(ctx, waitProbe, 0)
			}
			continue
		}
		if l.inflight >= d.laneCap {
			l.parkLocked(ctx, waitSlot, 0)
			continue
		}
		if !token && l.bucketSet {
			if wait := l.bk.take(now); wait > 0 {
				l.parkLocked(ctx, waitTimer, wait)
				continue
			}
			token = true
		}
		l.mu.Unlock()

		if job == nil {
			j, err := d.loader.Load(ctx, head)
			if err == nil && j == nil {
				err = fmt.Errorf("dispatcher: loader returned no job and no error for delivery %s", head.DeliveryID)
			}
			if err != nil {
				if ctx.Err() == nil {
					l.dropHead(head, err, token)
					token = false
				}
				continue
			}
			j.Ref = head
			j.Attempt = max(j.Attempt, 1)
			job = j
			ep := &job.Endpoint
			l.mu.Lock()
			l.bk.configure(ep.RateLimit, ep.RateLimitDuration, now)
			l.bucketSet = true
			l.mu.Unlock()
		}
		if !token {
			// First job of the lane: the bucket was configured just now.
			l.mu.Lock()
			if wait := l.bk.take(now); wait > 0 {
				l.parkLocked(ctx, waitTimer, wait)
				continue
			}
			l.mu.Unlock()
			token = true
		}

		select {
		case d.sem <- struct{}{}:
		case <-l.done:
			continue
		case <-ctx.Done():
			continue
		}
		now = d.cfg.Clock.Now()
		l.mu.Lock()
		if l.dropped || l.queuedLocked() == 0 || l.queue[l.head].DeliveryID != head.DeliveryID || l.inflight >= d.laneCap {
			l.mu.Unlock()
			<-d.sem
			continue
		}
		probe, ok := l.br.begin(now)
		if !ok {
			l.mu.Unlock()
			<-d.sem
			continue
		}
		l.popLocked()
		l.inflight++
		l.mu.Unlock()
		d.startAttempt(attemptTask{l: l, ctx: ctx, job: job, probe: probe})
		job, token = nil, false
	}
}

// dropHead removes ref from the head of the queue after its Load failed, refunding its token.
func (l *lane) dropHead(ref Ref, err error, token bool) {
	d := l.d
	if errors.Is(err, ErrNotPending) {
		d.counters.notPending.Add(1)
	} else {
		d.counters.loadErrors.Add(1)
		d.cfg.Logger.Warn("dispatcher: load failed; delivery dropped from its lane",
			"endpoint", ref.EndpointID, "delivery", ref.DeliveryID, "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if token {
		l.bk.refund()
	}
	if l.dropped || l.queuedLocked() == 0 || l.queue[l.head].DeliveryID != ref.DeliveryID {
		return
	}
	l.popLocked()
	delete(l.pending, ref.DeliveryID)
}

// waitReason is what a parked lane goroutine waits for; attempts wake it only when they change that.
type waitReason uint8

const (
	waitNone  waitReason = iota
	waitTimer            // breaker cooldown or bucket: only the Clock (or drop/stop) wakes the lane
	waitSlot             // in-flight cap: any attempt finishing wakes the lane
	waitProbe            // half-open probe in flight: the probe finishing wakes the lane
)

// parkLocked records why the lane waits, discards wake-ups sent before this decision (the caller has just
// re-checked the state under mu, so they are stale), releases mu and sleeps. Waking only on what matters
// keeps a lane parked on a Fake clock timer parked until the test advances the clock.
func (l *lane) parkLocked(ctx context.Context, reason waitReason, wait time.Duration) {
	select {
	case <-l.wake:
	default:
	}
	l.waiting = reason
	l.mu.Unlock()
	l.sleep(ctx, wait)
}

// sleep blocks until a wake-up, wait elapses on the Clock (wait > 0), the lane is dropped or ctx is done.
// Callers re-check everything afterwards.
func (l *lane) sleep(ctx context.Context, wait time.Duration) {
	var tc <-chan time.Time
	if wait > 0 {
		if l.timer == nil {
			l.timer = l.d.cfg.Clock.NewTimer(wait)
		} else {
			l.timer.Reset(wait)
		}
		tc = l.timer.C()
	}
	select {
	case <-l.wake:
	case <-tc:
	case <-l.done:
	case <-ctx.Done():
	}
	if wait > 0 {
		l.stopTimer()
	}
}

// stopTimer disarms the lane timer and discards a fire that was not received, so a later Reset starts
// clean and a Fake clock counts no stale timer.
func (l *lane) stopTimer() {
	if l.timer == nil {
		return
	}
	if !l.timer.Stop() {
		select {
		case <-l.timer.C():
		default:
		}
	}
}

// attempt makes one request, on an attempt goroutine (startAttempt). It owns a global worker slot until
// the Sender returns.
func (l *lane) attempt(ctx context.Context, job *Job, probe bool) {
	d := l.d
	defer d.wg.Done()
	res, verdict := d.send(ctx, job)
	if d.marker != nil && verdict != verdictAborted {
		d.marker.Mark(&res) // before the delivery leaves pending below: no Submit can slip in between
	}
	now := d.cfg.Clock.Now()
	l.mu.Lock()
	before := l.br.state
	switch verdict {
	case verdictSuccess:
		l.br.done(now, true, probe)
	case verdictFailure:
		l.br.done(now, false, probe)
	default:
		l.br.abort(now, probe)
	}
	if after := l.br.state; after != before {
		// A notable event, once per transition (never per delivery): opened after a failure
		// streak, closed by a successful probe, re-opened by a failed one (debug).
		switch {
		case before == BreakerClosed && after == BreakerOpen:
			d.cfg.Logger.Info("circuit breaker opened", "endpoint", job.EndpointID, "cooldown", l.br.cfg.Cooldown)
		case after == BreakerClosed:
			d.cfg.Logger.Info("circuit breaker closed", "endpoint", job.EndpointID)
		default:
			d.cfg.Logger.Debug("circuit breaker re-opened after a failed probe", "endpoint", job.EndpointID)
		}
	}
	l.inflight--
	delete(l.pending, job.DeliveryID)
	l.lastActive = now
	wake := l.waiting == waitSlot || (l.waiting == waitProbe && probe)
	l.mu.Unlock()
	// Recorded only once the delivery has left pending: a retry due at once can be committed and
	// submitted again before this goroutine runs another line, and Submit would drop it as a
	// duplicate of this attempt, leaving it pending in the store until the next wheel rebuild.
	if verdict != verdictAborted {
		d.results.Record(res)
	}
	if wake {
		l.signal()
	}
}
