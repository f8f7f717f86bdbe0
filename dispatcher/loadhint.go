package dispatcher

import (
	"sync"
	"time"

	"github.com/sluice-gw/sluice/raftstore"
)

// maxLoadHints bounds the hints kept (~100 bytes each): past it a delivery is loaded from the store,
// as after a restart. A backlog larger than this mostly waits in the wheel for longer anyway.
const maxLoadHints = 1 << 16

// loadHintTTL is how long a hint waits for its load. Most are taken within milliseconds; one whose
// delivery left the lane without a load (its endpoint paused or deleted, a resend of a delivery in
// flight) would otherwise stay until the wheel is next cleared. Hints older than this are swept
// when the table is full (at most once a second); their deliveries are read from the store.
const loadHintTTL = time.Minute

// loadHint is what a lane needs of a delivery record, as it was when the delivery became due.
type loadHint struct {
	eventID, eventType string
	attempts           int
	at                 time.Time // due
	added              time.Time
}

// loadHints carries the delivery records the FSM's effects already hold to the lane that loads them,
// so a delivery that became due on this node (published, retried, resent, reactivated) is sent
// without reading its record back from the state DB (a Pebble point read, ~10% of a delivery's
// CPU). A hint is taken by the load that uses it, replaced by a newer effect for the same delivery,
// and dropped whenever the wheel is cleared. Deliveries scheduled from the due index (a rebuild)
// have none and are read from the store.
//
// A hint is as current as the record as long as only this node's attempts change the delivery
// while it waits, which holds while this node dispatches it (the lane sends a delivery once at a
// time, and a resend replaces the hint). An attempt started by a previous leader that is committed
// afterwards can make a hint stale: the delivery is then sent again, which at-least-once delivery
// and the stable delivery id already allow for such an attempt.
type loadHints struct {
	mu    sync.Mutex // guards m and swept
	m     map[string]loadHint
	swept time.Time
}

func newLoadHints() *loadHints { return &loadHints{m: make(map[string]loadHint)} }

// put records d's hint, unless the table is full of hints younger than loadHintTTL and d has none
// yet.
func (h *loadHints) put(d *raftstore.Due, now time.Time) {
	if d.EventID == "" {
		return // an effect that does not carry the record
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.m[d.DeliveryID]; !ok && len(h.m) >= maxLoadHints {
		if now.Sub(h.swept) < time.Second {
			return
		}
		h.swept = now
		for id, x := range h.m {
			if now.Sub(x.added) >= loadHintTTL {
				delete(h.m, id)
			}
		}
		if len(h.m) >= maxLoadHints {
			return
		}
	}
	h.m[d.DeliveryID] = loadHint{eventID: d.EventID, eventType: d.EventType, attempts: d.Attempts, at: d.At, added: now}
}

// take removes and returns the hint for deliveryID.
func (h *loadHints) take(deliveryID string) (loadHint, bool) {
	h.mu.Lock()
	x, ok := h.m[deliveryID]
	if ok {
		delete(h.m, deliveryID)
	}
	h.mu.Unlock()
	return x, ok
}

// dropOlder removes deliveryID's hint if its record predates attempt: an effect made the delivery due
// again while that attempt was out (an endpoint reactivated as its old lane sent it), and once the
// attempt's result is committed the hint would send the delivery again.
func (h *loadHints) dropOlder(deliveryID string, attempt int) {
	h.mu.Lock()
	if x, ok := h.m[deliveryID]; ok && x.attempts < attempt {
		delete(h.m, deliveryID)
	}
	h.mu.Unlock()
}

func (h *loadHints) clear() {
	h.mu.Lock()
	clear(h.m)
	h.mu.Unlock()
}

func (h *loadHints) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// outstandingResults maps a delivery to the number of its attempt whose result is recorded but not
// yet committed. It is how a load tells a second Submit of a delivery (a rebuild of the wheel from the
// due index, a late ref of a reactivated endpoint) that arrives after the attempt but before the log
// shows it, which would send the delivery twice, from the retry its own result schedules (whose
// record already counts the attempt).
type outstandingResults struct {
	mu sync.Mutex // guards m
	m  map[string]int
}

func (o *outstandingResults) add(deliveryID string, attempt int) {
	o.mu.Lock()
	if o.m == nil {
		o.m = make(map[string]int)
	}
	if attempt > o.m[deliveryID] {
		o.m[deliveryID] = attempt
	}
	o.mu.Unlock()
}

// done forgets attempt's result once its commit returned (a later attempt's stays).
func (o *outstandingResults) done(deliveryID string, attempt int) {
	o.mu.Lock()
	if o.m[deliveryID] <= attempt {
		delete(o.m, deliveryID)
	}
	o.mu.Unlock()
}

// attempt returns the outstanding attempt number of deliveryID, 0 when none.
func (o *outstandingResults) attempt(deliveryID string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[deliveryID]
}
