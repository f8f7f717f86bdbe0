package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/netpool"
)

// Errors.
var (
	// ErrNotPending is wrapped by a Loader to say the delivery must not be attempted now (already
	// succeeded, endpoint paused or deleted); the lane drops the ref silently.
	ErrNotPending = errors.New("dispatcher: delivery not pending")
	// ErrBadConfig is wrapped by Config.Validate and New.
	ErrBadConfig = errors.New("dispatcher: invalid config")
	// ErrBadRetryPolicy is wrapped by RetryPolicy.Validate.
	ErrBadRetryPolicy = errors.New("dispatcher: invalid retry policy")
	// ErrAlreadyRun is returned by a second call to Run.
	ErrAlreadyRun = errors.New("dispatcher: Run called twice")
)

// Ref identifies one due delivery.
type Ref struct{ ProjectID, EndpointID, DeliveryID string }

// Endpoint is what a lane needs to know about a destination. It is loaded with each job, so configuration
// changes apply from the next attempt on.
type Endpoint struct {
	ID, ProjectID, URL string
	// Secret is a single never-expiring signing secret, used only when Secrets is empty (the form of
	// earlier releases). An endpoint with neither is sent unsigned.
	Secret string
	// Timeout bounds the whole attempt; 0 means DefaultTimeout (30s).
	Timeout time.Duration
	// RateLimit is the number of attempts allowed per RateLimitDuration (burst = RateLimit); 0 is unlimited.
	RateLimit int
	// RateLimitDuration is the period of RateLimit; 0 means DefaultRateLimitDuration (1s).
	RateLimitDuration time.Duration
	// Headers are the endpoint's static custom headers.
	Headers    http.Header
	EgressPool string
	// Retry is the endpoint's retry policy; the zero value (or an invalid one) means Config.DefaultRetry.
	Retry RetryPolicy

	// SignatureScheme is SchemeSimple (also ""), SchemeAdvanced, SchemeStandard or
	// SchemeStandardEd25519 (see sign.go).
	SignatureScheme string
	// Secrets are the signing secrets in creation order, oldest first. Every secret live at the
	// attempt (SecretKey.LiveAt) signs it, newest first, so old and new both verify during a rotation;
	// the simple scheme uses the newest live one. If all have expired the attempt is not sent.
	Secrets []SecretKey
	// Signature is the project's header name and versions for the simple and advanced schemes.
	Signature SignatureConfig
	// Auth authenticates the request (API-key header or basic auth); nil sends none. Its credential is
	// replaced by Redacted in Attempt.RequestHeaders.
	Auth *Auth
	// TLS is the endpoint's client certificate (mTLS) and CA bundle, in PEM; nil uses the system roots
	// and presents no certificate. The dispatcher caches one *tls.Config per distinct material.
	TLS *ClientTLS
}

// Job is everything one attempt needs. It is loaded lazily, just before sending, so queued refs cost
// little memory.
type Job struct {
	Ref
	EventID, EventType string
	// Attempt is the 1-based number of the attempt about to be made.
	Attempt int
	// Body is the event data exactly as published; it is sent byte for byte and never modified.
	Body []byte
	// Headers are the event's custom headers.
	Headers  http.Header
	Endpoint Endpoint
}

// Loader loads a job.
//
// Load is called from the endpoint's lane goroutine, at most once at a time per endpoint and concurrently
// for different endpoints, only when the lane is about to send (breaker closed, in-flight slot free). It
// returns an error wrapping ErrNotPending when the delivery should not be attempted now (already succeeded,
// endpoint paused or deleted): the lane drops the ref silently. Any other error drops the ref too, logged
// and counted in Stats.LoadErrors: the delivery stays due in the store, and its owner re-submits it. The
// returned Job belongs to the dispatcher (its Ref is overwritten with the submitted one); Body and the
// header maps are only read. A slow Load delays only its own endpoint.
type Loader interface {
	Load(ctx context.Context, ref Ref) (*Job, error)
}

// Sender sends one HTTP attempt. It is satisfied by *netpool.Pool.
//
// Do is called concurrently, once per attempt, from that attempt's goroutine. It must return a non-nil
// Response, honour req.Timeout and return promptly once ctx is cancelled (shutdown waits for it). It must
// not follow redirects or modify req.
type Sender interface {
	Do(ctx context.Context, req *netpool.Request) *netpool.Response
}

var _ Sender = (*netpool.Pool)(nil)

// Results receives every attempt's outcome.
//
// Record is called once per finished attempt, from that attempt's goroutine, concurrently for different
// deliveries but never concurrently for the same delivery. The delivery id stays "in flight" (Submit
// ignores it) until Record returns, so Record must not block for long: implementations batch. Attempts
// cut short by shutdown are not recorded (the delivery stays due in the store and is sent again: at least
// once). r and its maps belong to the callee.
type Results interface {
	Record(r Result)
}

// ResultMarker is an optional interface of Results: Mark sees each result to be recorded just before
// its delivery leaves the lane's in-flight set, so a Loader can tell a Submit of the same delivery
// that arrives before the result is committed (see Engine: outstanding results) from a new attempt.
type ResultMarker interface {
	Mark(r *Result)
}

// Status is a delivery's state after an attempt.
type Status string

const (
	// StatusSuccess: the endpoint answered 2xx; the delivery is done.
	StatusSuccess Status = "success"
	// StatusRetry: the attempt failed; try again at Result.NextAttemptAt.
	StatusRetry Status = "retry"
	// StatusFailed: the attempt failed and no attempt is left (or the endpoint answered 410 Gone).
	StatusFailed Status = "failed"
)

// Result is one attempt's outcome and what should happen next.
type Result struct {
	Ref
	Attempt Attempt
	Status  Status
	// NextAttemptAt is when the delivery is due again, when Status is StatusRetry.
	NextAttemptAt time.Time
	// DisableEndpoint is set when the endpoint answered 410 Gone: it asks not to be called again.
	DisableEndpoint bool
	// Err is the attempt's error (nil on an HTTP response), for errors.Is classification such as
	// netpool.ErrTimeout; Attempt.Error is its text. Not meant to be persisted.
	Err error
}

// Attempt records one HTTP try as sent and as answered.
type Attempt struct {
	ID        string // model.NewID(StartedAt): sortable
	Number    int    // 1-based
	StartedAt time.Time
	Method    string
	URL       string
	// RequestHeaders are the headers as sent, signature included.
	RequestHeaders  http.Header
	StatusCode      int // 0 when no response was received
	ResponseHeaders http.Header
	ResponseBody    []byte // capped by the Sender
	BodyTruncated   bool
	Latency         time.Duration
	Error           string
	EgressIP        string
}

// Dispatcher runs one lane per endpoint and turns due deliveries into HTTP attempts and results. See the
// package documentation for the lane model and threading.
type Dispatcher struct {
	cfg      Config
	loader   Loader
	sender   Sender
	results  Results
	marker   ResultMarker   // results, when it is one (resolved once in New); nil otherwise
	laneCap  int            // effective per-lane in-flight cap
	sem      chan struct{}  // global worker budget: a send holds one slot while its request is out
	wg       sync.WaitGroup // lane and attempt goroutines
	counters counters
	// idle hands an attempt to a parked attempt goroutine (unbuffered: a send succeeds only when one
	// is waiting); see startAttempt.
	idle chan attemptTask
	// attemptGoroutines counts attempt goroutines started (tests).
	attemptGoroutines atomic.Int64

	mu        sync.Mutex // guards state, runCtx, lanes, dropped and lastSweep; taken before any lane.mu
	state     runState
	runCtx    context.Context // Run's ctx: lanes and requests stop when it is done
	lanes     map[string]*lane
	lastSweep time.Time
	// dropped holds, per endpoint, lanes dropped while requests were in flight, until those finish:
	// their deliveries are still pending in them, and Submit must not start a second attempt of one
	// in the endpoint's next lane (a reactivated endpoint's deliveries come back as Due while an
	// attempt its old lane started at the moment of reactivation is still out).
	dropped map[string][]*lane
}

type runState uint8

const (
	stateNew runState = iota
	stateRunning
	stateStopped
)

type counters struct {
	submitted, duplicates, rejected   atomic.Uint64
	attempts, succeeded, retried      atomic.Uint64
	failed, disabled, notPending      atomic.Uint64
	loadErrors, aborted, droppedQueue atomic.Uint64
}

// New returns a Dispatcher; nothing runs until Run.
func New(cfg Config, l Loader, s Sender, r Results) (*Dispatcher, error) {
	marker, _ := r.(ResultMarker)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if l == nil || s == nil || r == nil {
		return nil, fmt.Errorf("%w: loader, sender and results are required", ErrBadConfig)
	}
	cfg.ensureDefaults()
	return &Dispatcher{
		cfg:     cfg,
		loader:  l,
		sender:  s,
		results: r,
		marker:  marker,
		laneCap: cfg.laneInFlightCap(),
		sem:     make(chan struct{}, cfg.Workers),
		lanes:   make(map[string]*lane),
		dropped: make(map[string][]*lane),
		idle:    make(chan attemptTask),
	}, nil
}

// attemptTask is one attempt handed from a lane goroutine to an attempt goroutine.
type attemptTask struct {
	l     *lane
	ctx   context.Context
	job   *Job
	probe bool
}

// startAttempt runs an attempt on a parked attempt goroutine, or on a new one when none is parked.
// Attempt goroutines park after each attempt instead of exiting: a fresh goroutine grows its stack
// through net/http's deep call chain on every attempt (copying it each time), which cost more CPU
// than the attempt's own request building. At most as many goroutines park as attempts were ever
// in flight at once (about Config.Workers); they exit when Run's context ends. Called from a lane
// goroutine, which is counted in wg, so wg is not zero here.
func (d *Dispatcher) startAttempt(t attemptTask) {
	d.wg.Add(1) // the attempt; attempt calls Done
	select {
	case d.idle <- t:
		return
	default:
	}
	d.wg.Add(1) // the goroutine
	d.attemptGoroutines.Add(1)
	go d.attemptLoop(t)
}

// attemptLoop runs t, then waits for the next attempt until Run's context (the same for every
// attempt) ends.
func (d *Dispatcher) attemptLoop(t attemptTask) {
	defer d.wg.Done()
	done := t.ctx.Done()
	for {
		t.l.attempt(t.ctx, t.job, t.probe)
		t = attemptTask{}
		select {
		case t = <-d.idle:
		case <-done:
			return
		}
	}
}

// Submit queues deliveries that are due now, each at the back of its endpoint's lane (created on first
// use). A DeliveryID already queued or in flight is ignored, as are refs without a DeliveryID or
// EndpointID. Submit never blocks on endpoints: it only takes short locks. Refs submitted before Run wait
// for it; refs submitted after Run returned are dropped.
func (d *Dispatcher) Submit(refs ...Ref) {
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == stateStopped {
		d.counters.rejected.Add(uint64(len(refs)))
		return
	}
	d.maybeSweepLocked(now)
	var (
		l  *lane
		dl []*lane // l's endpoint's dropped lanes with requests in flight
	)
	for _, ref := range refs {
		if ref.DeliveryID == "" || ref.EndpointID == "" {
			d.counters.rejected.Add(1)
			continue
		}
		if l == nil || l.id != ref.EndpointID {
			l = d.lanes[ref.EndpointID]
			if l == nil {
				l = newLane(d, ref.EndpointID, now)
				d.lanes[ref.EndpointID] = l
			}
			dl = d.droppedInFlightLocked(ref.EndpointID)
		}
		if inFlightIn(dl, ref.DeliveryID) {
			d.counters.duplicates.Add(1)
			continue
		}
		l.mu.Lock()
		if _, dup := l.pending[ref.DeliveryID]; dup {
			l.mu.Unlock()
			d.counters.duplicates.Add(1)
			continue
		}
		l.pending[ref.DeliveryID] = struct{}{}
		l.queue = append(l.queue, ref)
		start := d.state == stateRunning && !l.running
		if start {
			l.running = true
		}
		l.mu.Unlock()
		d.counters.submitted.Add(1)
		if start {
			d.wg.Add(1) // safe: d.mu is held and the state is running, so Run has not reached wg.Wait
			go l.run(d.runCtx)
		}
	}
}

// Run starts the lanes and blocks until ctx is cancelled. It then stops every lane, cancels the requests
// in flight (through ctx: their attempts are not recorded), waits for every goroutine the dispatcher
// started, and returns nil. Run may be called once.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.state != stateNew {
		d.mu.Unlock()
		return ErrAlreadyRun
	}
	d.state = stateRunning
	d.runCtx = ctx
	for _, l := range d.lanes {
		l.mu.Lock()
		start := l.queuedLocked() > 0 && !l.running
		if start {
			l.running = true
		}
		l.mu.Unlock()
		if start {
			d.wg.Add(1)
			go l.run(ctx)
		}
	}
	d.mu.Unlock()

	<-ctx.Done()
	d.mu.Lock()
	d.state = stateStopped
	d.mu.Unlock()
	d.wg.Wait()
	return nil
}

// DropEndpoint forgets an endpoint's lane and its queued refs (the endpoint was paused or deleted). Requests
// already in flight finish and are recorded. A later Submit for the endpoint starts a fresh lane.
func (d *Dispatcher) DropEndpoint(endpointID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[endpointID]
	delete(d.lanes, endpointID)
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped {
		return
	}
	l.dropped = true
	n := l.queuedLocked()
	for _, ref := range l.queue[l.head:] {
		delete(l.pending, ref.DeliveryID)
	}
	l.queue, l.head = nil, 0
	close(l.done)
	d.counters.droppedQueue.Add(uint64(n))
	if len(l.pending) > 0 { // requests in flight: keep deduping them (see Dispatcher.dropped)
		d.dropped[endpointID] = append(d.dropped[endpointID], l)
	}
}

// droppedInFlightLocked returns endpointID's dropped lanes that still have requests in flight,
// forgetting those that have none left. The caller holds d.mu.
func (d *Dispatcher) droppedInFlightLocked(endpointID string) []*lane {
	ls := d.dropped[endpointID]
	if len(ls) == 0 {
		return nil
	}
	live := ls[:0]
	for _, l := range ls {
		l.mu.Lock()
		if len(l.pending) > 0 {
			live = append(live, l)
		}
		l.mu.Unlock()
	}
	clear(ls[len(live):])
	if len(live) == 0 {
		delete(d.dropped, endpointID)
		return nil
	}
	d.dropped[endpointID] = live
	return live
}

// inFlightIn reports whether deliveryID is still out in one of the dropped lanes ls.
func inFlightIn(ls []*lane, deliveryID string) bool {
	for _, l := range ls {
		l.mu.Lock()
		_, ok := l.pending[deliveryID]
		l.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// maybeSweepLocked forgets lanes idle for LaneIdleTimeout, at most once per LaneIdleTimeout. It runs from
// Submit and Stats, so idle lanes need no timer or goroutine.
func (d *Dispatcher) maybeSweepLocked(now time.Time) {
	if now.Sub(d.lastSweep) < d.cfg.LaneIdleTimeout {
		return
	}
	d.lastSweep = now
	for id, l := range d.lanes {
		l.mu.Lock()
		if l.idleLocked(now, d.cfg.LaneIdleTimeout) {
			delete(d.lanes, id)
		}
		l.mu.Unlock()
	}
	for id := range d.dropped {
		d.droppedInFlightLocked(id) // forgets lanes whose requests have all finished
	}
}

// Stats is a snapshot for metrics.
type Stats struct {
	Workers     int // global budget
	WorkersBusy int // slots held by requests in flight
	LaneCap     int // effective per-lane in-flight cap
	Queued      int // refs queued across lanes
	InFlight    int // attempts in flight across lanes
	Lanes       []LaneStats

	Submitted  uint64 // refs accepted by Submit
	Duplicates uint64 // refs ignored by Submit: already queued or in flight
	Rejected   uint64 // refs ignored by Submit: no id, or the dispatcher stopped
	Attempts   uint64 // attempts recorded
	Succeeded  uint64
	Retried    uint64
	Failed     uint64
	Disabled   uint64 // 410 Gone answers
	NotPending uint64 // refs the Loader declined with ErrNotPending
	LoadErrors uint64 // refs dropped because Load failed otherwise
	Aborted    uint64 // attempts cut short by shutdown (not recorded)
	Dropped    uint64 // queued refs forgotten by DropEndpoint
}

// LaneStats describes one lane.
type LaneStats struct {
	EndpointID          string
	Queued              int
	InFlight            int
	Breaker             BreakerState
	ConsecutiveFailures int
	Active              bool // the lane goroutine is running (it has queued refs)
}

// Stats returns a snapshot; lanes are sorted by endpoint id.
func (d *Dispatcher) Stats() Stats {
	now := d.cfg.Clock.Now()
	s := Stats{
		Workers:     d.cfg.Workers,
		WorkersBusy: len(d.sem),
		LaneCap:     d.laneCap,
	}
	d.mu.Lock()
	d.maybeSweepLocked(now)
	s.Lanes = make([]LaneStats, 0, len(d.lanes))
	for id, l := range d.lanes {
		l.mu.Lock()
		ls := LaneStats{
			EndpointID:          id,
			Queued:              l.queuedLocked(),
			InFlight:            l.inflight,
			Breaker:             l.br.stateAt(now),
			ConsecutiveFailures: l.br.failures,
			Active:              l.running,
		}
		l.mu.Unlock()
		s.Queued += ls.Queued
		s.InFlight += ls.InFlight
		s.Lanes = append(s.Lanes, ls)
	}
	d.mu.Unlock()
	sort.Slice(s.Lanes, func(i, j int) bool { return s.Lanes[i].EndpointID < s.Lanes[j].EndpointID })

	c := &d.counters
	s.Submitted, s.Duplicates, s.Rejected = c.submitted.Load(), c.duplicates.Load(), c.rejected.Load()
	s.Attempts, s.Succeeded, s.Retried = c.attempts.Load(), c.succeeded.Load(), c.retried.Load()
	s.Failed, s.Disabled, s.NotPending = c.failed.Load(), c.disabled.Load(), c.notPending.Load()
	s.LoadErrors, s.Aborted, s.Dropped = c.loadErrors.Load(), c.aborted.Load(), c.droppedQueue.Load()
	return s
}
