package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
	"github.com/sluice-gw/sluice/scheduler"
)

// EngineConfig wires a Dispatcher to the replicated store. Zero values take the defaults.
type EngineConfig struct {
	Dispatcher Config
	Scheduler  scheduler.Config
	// ResultBatch caps the attempt results proposed in one Raft command. Default 1024.
	ResultBatch int
	// ResultQueue bounds results waiting to be proposed; a full queue blocks attempt goroutines, which
	// is the backpressure from a slow log onto the lanes. Default 65536.
	ResultQueue int
	// ResultsJSON always proposes attempt results in the JSON form versions before the binary codec
	// decode. Without it the engine already does so while any server of the cluster has not
	// reported the binary codec (raftstore.Store.BinaryCommands); it is for tests and comparisons.
	ResultsJSON bool
	// ResultProposers is how many result batches may be in flight at once. Default 4.
	ResultProposers int
	// EventCacheBytes bounds the recently loaded events kept decoded, so an event's deliveries to many
	// endpoints read and decompress it once. Default 16 MiB; negative disables the cache.
	EventCacheBytes int64
	// RetryOnStoreError is how long a delivery waits before it is tried again after its job could not
	// be loaded or its result could not be committed. Default 1 s.
	RetryOnStoreError time.Duration
	Logger            *slog.Logger
	// OnResult, when set, sees every attempt result (metrics). Called from attempt goroutines.
	OnResult func(Result)
	// OnEndpointChange, when set, sees every endpoint status change or deletion on every node
	// (alerts, metrics cleanup). Called on the FSM goroutine: must not block.
	OnEndpointChange func(raftstore.EndpointChange)
	// Owns, when set, says whether this node delivers an endpoint (cluster ownership); nil means
	// every endpoint (a single node).
	Owns func(projectID, endpointID string) bool
}

// Engine is the delivery engine of one node: the timing wheel holding every pending delivery's next
// attempt, the lanes that send them, and the batcher that commits their results through Raft. It
// dispatches only while active (this node leads); activation rebuilds the wheel from the store's
// due-time index.
type Engine struct {
	cfg   EngineConfig
	st    *raftstore.Store
	clock clock.Clock
	log   *slog.Logger
	// wheel holds compact keys (DueKey) rather than Refs: see duekey.go; keys turns them back into Refs
	// when they are due.
	wheel  *scheduler.Wheel[DueKey]
	keys   *KeyTable
	events *eventCache // nil when disabled
	hints  *loadHints
	d      *Dispatcher
	meta   *metaSender
	sender Sender

	active  atomic.Bool
	leader  atomic.Bool // meta events are sent by the leader only
	results chan raftstore.AttemptResult
	// storeEventLoads counts events a job had to read from the store rather than the cache (tests).
	storeEventLoads atomic.Int64
	// storeDeliveryLoads counts delivery records a job had to read from the store, without a load
	// hint (tests).
	storeDeliveryLoads atomic.Int64
	// reassign asks Run's goroutine to re-partition the wheel after ownership changed (1-slot).
	reassign chan struct{}
	// retryRefs carries deliveries whose load or result commit failed back to the wheel.
	activeMu sync.Mutex // serialises activate/deactivate so rebuilds do not interleave
}

// NewEngine builds an engine; call Store's Observe and OnLeadership hooks into it (see Observe and
// SetActive) and run it with Run.
func NewEngine(cfg EngineConfig, st *raftstore.Store, sender Sender) (*Engine, error) {
	if cfg.ResultBatch <= 0 {
		cfg.ResultBatch = 1024
	}
	if cfg.ResultQueue <= 0 {
		cfg.ResultQueue = 65536
	}
	if cfg.ResultProposers <= 0 {
		cfg.ResultProposers = 4
	}
	if cfg.EventCacheBytes == 0 {
		cfg.EventCacheBytes = 16 << 20
	}
	if cfg.RetryOnStoreError <= 0 {
		cfg.RetryOnStoreError = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Dispatcher.Clock == nil {
		cfg.Dispatcher.Clock = clock.Real{}
	}
	if cfg.Dispatcher.Logger == nil {
		cfg.Dispatcher.Logger = cfg.Logger
	}
	cfg.Scheduler.Clock = cfg.Dispatcher.Clock
	e := &Engine{
		cfg:      cfg,
		st:       st,
		clock:    cfg.Dispatcher.Clock,
		log:      cfg.Logger,
		results:  make(chan raftstore.AttemptResult, cfg.ResultQueue),
		sender:   sender,
		reassign: make(chan struct{}, 1),
		hints:    newLoadHints(),
	}
	if cfg.EventCacheBytes > 0 {
		e.events = newEventCache(cfg.EventCacheBytes)
	}
	e.meta = newMetaSender(e)
	d, err := New(cfg.Dispatcher, storeLoader{e}, sender, resultSink{e})
	if err != nil {
		return nil, err
	}
	e.d = d
	e.keys = NewKeyTable()
	e.wheel = scheduler.New[DueKey](cfg.Scheduler, func(due []DueKey) { e.d.Submit(e.keys.Refs(nil, due)...) })
	return e, nil
}

// Dispatcher exposes the lanes (for stats).
func (e *Engine) Dispatcher() *Dispatcher { return e.d }

// Pending is how many deliveries wait in the timing wheel.
func (e *Engine) Pending() int { return e.wheel.Len() }

// Run drives the wheel, the lanes and the result batchers until ctx ends, then commits the results
// already gathered and returns.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	dctx, cancelD := context.WithCancel(context.Background())
	wg.Add(2)
	go func() { defer wg.Done(); e.wheel.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); e.meta.run(ctx) }()
	dispatchDone := make(chan struct{})
	go func() { defer wg.Done(); defer close(dispatchDone); e.d.Run(dctx) }()

	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-e.reassign:
				e.Reassign()
			}
		}
	}()

	var pwg sync.WaitGroup
	for i := 0; i < e.cfg.ResultProposers; i++ {
		pwg.Add(1)
		go func() { defer pwg.Done(); e.proposeResults() }()
	}
	<-ctx.Done()
	// Stop sending first; attempts cut short are not recorded and stay due in the store.
	cancelD()
	<-dispatchDone
	close(e.results)
	pwg.Wait()
	wg.Wait()
	return nil
}

// SetActive starts or stops dispatching from this node (no-op when unchanged). Becoming active
// rebuilds the wheel from the due-time index, so every pending delivery this node owns, including
// those in flight at a crash or on another node, is attempted again at its due time.
func (e *Engine) SetActive(active bool) {
	e.activeMu.Lock()
	defer e.activeMu.Unlock()
	if e.active.Swap(active) == active {
		return
	}
	e.clearWheel()
	if active {
		e.rebuild()
	} else {
		e.log.Info("delivery engine inactive")
	}
}

// SetLeader says whether this node leads: the leader sends meta events.
func (e *Engine) SetLeader(leader bool) {
	if e.leader.Swap(leader) != leader && leader {
		e.meta.rebuild()
	}
}

// Reassign re-partitions after endpoint ownership changed: deliveries this node no longer owns leave
// the wheel (lanes drop them on load), newly owned ones enter it.
func (e *Engine) Reassign() {
	e.activeMu.Lock()
	defer e.activeMu.Unlock()
	if !e.active.Load() {
		return
	}
	e.clearWheel()
	e.rebuild()
}

func (e *Engine) owns(projectID, endpointID string) bool {
	return e.cfg.Owns == nil || e.cfg.Owns(projectID, endpointID)
}

// clearWheel empties the wheel: it holds nothing but deliveries from the due index (and store-error
// retries of them), all of which a rebuild schedules again.
func (e *Engine) clearWheel() {
	e.wheel.Clear()
	e.hints.clear() // a rebuild reads the records; hints from before may be stale by then
}

func (e *Engine) rebuild() {
	n := 0
	// owned caches owns() per lane: the due index holds many deliveries per endpoint, and asking
	// needs the ids as strings.
	var owned []int8 // by lane number: 0 not asked yet, 1 owned, -1 not
	err := e.st.ForEachDueKey(func(at time.Time, pair, deliveryID []byte) bool {
		k := e.keys.KeyOfPair(pair, deliveryID)
		if e.cfg.Owns != nil {
			lane := int(k.lane &^ oddFlag)
			for len(owned) <= lane {
				owned = append(owned, 0)
			}
			if owned[lane] == 0 {
				owned[lane] = -1
				if e.owns(string(pair[:model.IDLen]), string(pair[model.IDLen:])) {
					owned[lane] = 1
				}
			}
			if owned[lane] < 0 {
				return true
			}
		}
		e.wheel.Schedule(k, at)
		n++
		return true
	})
	if err != nil {
		e.log.Error("rebuild timing wheel from the due index", "err", err)
	}
	e.log.Info("delivery engine active", "pending", n)
}

func (e *Engine) keyOf(d raftstore.Due) DueKey {
	return e.keys.Key(d.ProjectID, d.EndpointID, d.DeliveryID)
}

// Observe receives the store's effects on the FSM goroutine: new due times go into the wheel and
// endpoints whose status changed lose their queued work (a reactivated endpoint's pending deliveries
// arrive as Due in the same effects).
func (e *Engine) Observe(eff raftstore.Effects) {
	if eff.Reset {
		e.events.clear()
	}
	if eff.LiveChanged || eff.Reset {
		select {
		case e.reassign <- struct{}{}:
		default:
		}
	}
	if e.leader.Load() {
		for _, m := range eff.MetaEvents {
			e.meta.schedule(m, e.clock.Now())
		}
	}
	for _, c := range eff.Endpoints {
		e.d.DropEndpoint(c.EndpointID)
		if c.Status == model.EndpointDisabled && e.leader.Load() {
			e.log.Info("endpoint disabled", "project", c.ProjectID, "endpoint", c.EndpointID, "reason", c.Reason)
		}
		if e.cfg.OnEndpointChange != nil {
			e.cfg.OnEndpointChange(c)
		}
	}
	if !e.active.Load() || eff.Reset {
		return
	}
	// Before the deliveries are scheduled, so their loads find the events.
	for i := range eff.Events {
		ev := &eff.Events[i]
		left := ev.Deliveries
		if left <= 0 {
			left = -1 // a publish from before the count was carried: unknown
		}
		e.events.add(&cachedEvent{key: eventKey{ev.ProjectID, ev.EventID}, compressed: ev.Data, rawHeaders: ev.Headers, left: left})
	}
	now := e.clock.Now()
	for i := range eff.Due {
		d := &eff.Due[i]
		if e.owns(d.ProjectID, d.EndpointID) {
			e.hints.put(d, now) // before the wheel can fire it
			e.wheel.Schedule(e.keyOf(*d), d.At)
		}
	}
}

// later puts a delivery back in the wheel after a store error, if this node still dispatches.
func (e *Engine) later(ref Ref) {
	if e.active.Load() {
		e.wheel.Schedule(e.keys.KeyOf(ref), e.clock.Now().Add(e.cfg.RetryOnStoreError))
	}
}

// storeLoader loads jobs from the local state.
type storeLoader struct{ e *Engine }

func (l storeLoader) Load(ctx context.Context, ref Ref) (*Job, error) {
	e := l.e
	h, ok, outstanding := e.hints.take(ref.DeliveryID) // whatever happens next, this load has used it
	if !e.active.Load() || !e.owns(ref.ProjectID, ref.EndpointID) {
		return nil, fmt.Errorf("%w: node is not dispatching endpoint %s", ErrNotPending, ref.EndpointID)
	}
	if !ok {
		e.storeDeliveryLoads.Add(1)
		d, err := e.st.Delivery(ref.ProjectID, ref.DeliveryID)
		if errors.Is(err, raftstore.ErrNotFound) {
			return nil, fmt.Errorf("%w: delivery %s is gone", ErrNotPending, ref.DeliveryID)
		}
		if err != nil {
			e.later(ref)
			return nil, err
		}
		if !d.Status.Pending() {
			return nil, fmt.Errorf("%w: delivery %s is %s", ErrNotPending, d.UID, d.Status)
		}
		h = loadHint{eventID: d.EventID, eventType: d.EventType, attempts: d.Attempts}
		if d.NextAttemptAt != nil {
			h.at = *d.NextAttemptAt
		}
	}
	if n := outstanding; n > h.attempts {
		// Its attempt n has been made and its result is on the way to the log, but the record (or
		// the hint, taken from an effect before that result) does not show it yet: a Submit from
		// a wheel rebuild, or a reactivation racing the attempt. Sending now would deliver it
		// twice; the result's commit schedules the delivery again if it needs another attempt,
		// and a failed commit puts it back in the wheel.
		return nil, fmt.Errorf("%w: delivery %s: the result of attempt %d is not committed yet", ErrNotPending, ref.DeliveryID, n)
	}
	if h.at.After(e.clock.Now().Add(time.Second)) {
		// Rescheduled since this ref was queued (a Retry-After, a resend): wait for the new time.
		e.wheel.Schedule(e.keys.KeyOf(ref), h.at)
		return nil, fmt.Errorf("%w: delivery %s is due at %v", ErrNotPending, ref.DeliveryID, h.at)
	}
	ep := e.st.Endpoint(ref.ProjectID, ref.EndpointID)
	if ep == nil || ep.Status != model.EndpointActive {
		// Paused or disabled: the delivery stays pending in the store; reactivation requeues it.
		return nil, fmt.Errorf("%w: endpoint %s is not active", ErrNotPending, ref.EndpointID)
	}
	ev, err := e.event(ref.ProjectID, h.eventID)
	if err != nil {
		e.later(ref)
		return nil, err
	}
	proj := e.st.Project(ref.ProjectID)
	job := &Job{
		Ref:       ref,
		EventID:   h.eventID,
		EventType: h.eventType,
		Attempt:   h.attempts + 1,
		Body:      ev.body,
		Headers:   ev.headers,
		Endpoint:  endpointOf(ep, proj),
	}
	return job, nil
}

// event returns what a job needs of an event, from the cache when one of its other deliveries
// loaded it recently.
func (e *Engine) event(pid, evid string) (*cachedEvent, error) {
	k := eventKey{pid, evid}
	if ev, last := e.events.take(k); ev != nil {
		if ev.expanded() {
			return ev, nil
		}
		body, err := raftstore.DecompressData(ev.compressed)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", evid, err)
		}
		x := &cachedEvent{key: k, body: body, headers: toHeader(ev.rawHeaders), left: -1}
		if !last {
			// Other deliveries will load it: keep it expanded for them. The last one does not
			// need the copy cached; the compressed form stays for a retry.
			e.events.add(x)
		}
		return x, nil
	}
	e.storeEventLoads.Add(1)
	ev, err := e.st.EventForDelivery(pid, evid)
	if err != nil {
		return nil, err
	}
	c := &cachedEvent{key: k, body: ev.Data, headers: toHeader(ev.Headers), left: -1}
	e.events.add(c)
	return c, nil
}

func toHeader(m map[string]string) http.Header {
	if len(m) == 0 {
		return nil
	}
	h := make(http.Header, len(m))
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// endpointOf turns the stored endpoint (with its project's defaults) into what a lane needs.
func endpointOf(ep *model.Endpoint, proj *model.Project) Endpoint {
	out := Endpoint{
		ID:                ep.UID,
		ProjectID:         ep.ProjectID,
		URL:               ep.URL,
		Timeout:           time.Duration(ep.HTTPTimeout) * time.Second,
		RateLimit:         ep.RateLimit,
		RateLimitDuration: time.Duration(ep.RateLimitDuration) * time.Second,
		Headers:           toHeader(ep.Headers),
		EgressPool:        ep.EgressPool,
	}
	// Every secret goes to the signer, expired ones too: it signs with those live at the attempt and
	// refuses to send unsigned when none is (dropping them here would look like "no secret").
	out.SignatureScheme = ep.SignatureScheme
	if out.SignatureScheme == "" && ep.AdvancedSignatures {
		out.SignatureScheme = SchemeAdvanced
	}
	for _, s := range ep.Secrets {
		k := SecretKey{Value: s.Value}
		if s.ExpiresAt != nil {
			k.ExpiresAt = *s.ExpiresAt
		}
		out.Secrets = append(out.Secrets, k)
	}
	if proj != nil && proj.Config.Signature != nil {
		out.Signature.Header = proj.Config.Signature.Header
		for _, v := range proj.Config.Signature.Versions {
			out.Signature.Versions = append(out.Signature.Versions, SignatureVersion{Hash: v.Hash, Encoding: v.Encoding})
		}
	}
	if a := ep.Authentication; a != nil {
		out.Auth = &Auth{Type: a.Type}
		if a.APIKey != nil {
			out.Auth.HeaderName, out.Auth.HeaderValue = a.APIKey.HeaderName, a.APIKey.HeaderValue
		}
		if a.BasicAuth != nil {
			out.Auth.Username, out.Auth.Password = a.BasicAuth.Username, a.BasicAuth.Password
		}
	}
	if t := ep.TLS; t != nil {
		out.TLS = &ClientTLS{CertPEM: t.ClientCert, KeyPEM: t.ClientKey, CAPEM: t.CACert}
	}
	strategy := ep.Strategy
	if strategy == nil && proj != nil {
		strategy = proj.Config.Strategy
		if out.RateLimit == 0 && proj.Config.RateLimit != nil {
			out.RateLimit = proj.Config.RateLimit.Count
			out.RateLimitDuration = time.Duration(proj.Config.RateLimit.Duration) * time.Second
		}
	}
	out.Retry = RetryPolicyOf(strategy)
	return out
}

// RetryPolicyOf maps the API's retry strategy onto a policy. RetryCount counts retries after the first
// attempt; "default" (or none) is the Standard Webhooks schedule (the zero policy).
func RetryPolicyOf(s *model.RetryStrategy) RetryPolicy {
	if s == nil || s.Type == "" || s.Type == "default" {
		return RetryPolicy{}
	}
	p := RetryPolicy{Interval: time.Duration(s.Duration) * time.Second, MaxAttempts: s.RetryCount + 1}
	if p.Interval <= 0 {
		p.Interval = 10 * time.Second
	}
	switch s.Type {
	case "linear":
		p.Strategy = StrategyLinear
	default:
		p.Strategy = StrategyExponential
	}
	return p
}

// resultSink queues results for the batchers.
type resultSink struct{ e *Engine }

// Mark notes the result as outstanding until its batch's commit returns (ResultMarker).
func (r resultSink) Mark(res *Result) { r.e.hints.mark(res.DeliveryID, res.Attempt.Number) }

func (r resultSink) Record(res Result) {
	if r.e.cfg.OnResult != nil {
		r.e.cfg.OnResult(res)
	}
	ar := raftstore.AttemptResult{
		ProjectID:       res.ProjectID,
		DeliveryID:      res.DeliveryID,
		DisableEndpoint: res.DisableEndpoint,
		At:              res.Attempt.StartedAt.Add(res.Attempt.Latency).UTC(),
		Attempt: &model.Attempt{
			UID:             res.Attempt.ID,
			DeliveryID:      res.DeliveryID,
			ProjectID:       res.ProjectID,
			EndpointID:      res.EndpointID,
			Number:          res.Attempt.Number,
			Method:          res.Attempt.Method,
			URL:             res.Attempt.URL,
			RequestHeaders:  res.Attempt.RequestHeaders,
			StatusCode:      res.Attempt.StatusCode,
			ResponseHeaders: res.Attempt.ResponseHeaders,
			ResponseBody:    string(res.Attempt.ResponseBody),
			BodyTruncated:   res.Attempt.BodyTruncated,
			LatencyMS:       float64(res.Attempt.Latency.Microseconds()) / 1000,
			Error:           res.Attempt.Error,
			EgressIP:        res.Attempt.EgressIP,
			CreatedAt:       res.Attempt.StartedAt.UTC(),
		},
	}
	switch res.Status {
	case StatusSuccess:
		ar.Status = model.StatusSuccess
	case StatusRetry:
		ar.Status, ar.NextAttemptAt = model.StatusRetry, res.NextAttemptAt.UTC()
	default:
		ar.Status = model.StatusFailed
	}
	r.e.results <- ar
}

// proposeResults commits queued results in batches: one Raft command per batch, never one per
// attempt. A batch that cannot commit puts its deliveries back in the wheel (they are still pending in
// the store, so the attempt will be made again: at least once).
func (e *Engine) proposeResults() {
	for first := range e.results {
		batch := []raftstore.AttemptResult{first}
	gather:
		for len(batch) < e.cfg.ResultBatch {
			select {
			case r, ok := <-e.results:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		err := e.commitResults(batch)
		for _, r := range batch {
			e.hints.committed(r.DeliveryID, r.Attempt.Number)
		}
		if err != nil {
			e.log.Warn("could not commit delivery results; they will be attempted again", "results", len(batch), "err", err)
			for _, r := range batch {
				e.later(Ref{ProjectID: r.ProjectID, EndpointID: r.Attempt.EndpointID, DeliveryID: r.DeliveryID})
			}
		}
	}
}

func (e *Engine) commitResults(batch []raftstore.AttemptResult) error {
	cmd := raftstore.NewResultsCommand(batch)
	if e.cfg.ResultsJSON || !e.st.BinaryCommands() {
		var err error
		if cmd, err = raftstore.NewCommand(raftstore.CmdResults, raftstore.Results{Results: batch}, nil); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.st.Propose(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	return err
}
