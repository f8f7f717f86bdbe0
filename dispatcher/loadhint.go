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
//
// The table also holds, per delivery, the number of its attempt whose result is recorded but not
// yet committed (mark, committed). That is how a load tells a second Submit of a delivery that
// arrives after the attempt but before the log shows it (a rebuild of the wheel from the due index, a
// late ref of a reactivated endpoint), which would send the delivery twice, from the retry its own
// result schedules (whose record already counts the attempt). Both live under one lock because a
// load asks for both, and a committed result settles both.
type loadHints struct {
	mu          sync.Mutex // guards m, swept and outstanding
	m           map[string]loadHint
	swept       time.Time
	outstanding map[string]int // delivery id -> attempt number of its uncommitted result
}

func newLoadHints() *loadHints {
	return &loadHints{m: make(map[string]loadHint), outstanding: make(map[string]int)}
}

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

// take removes and returns the hint for deliveryID, and the number of its attempt whose result is
// not committed yet (0 when none).
func (h *loadHints) take(deliveryID string) (x loadHint, ok bool, outstanding int) {
	h.mu.Lock()
	x, ok = h.m[deliveryID]
	if ok {
		delete(h.m, deliveryID)
	}
	outstanding = h.outstanding[deliveryID]
	h.mu.Unlock()
	return x, ok, outstanding
}

// mark notes attempt's result as recorded but not committed.
func (h *loadHints) mark(deliveryID string, attempt int) {
	h.mu.Lock()
	if attempt > h.outstanding[deliveryID] {
		h.outstanding[deliveryID] = attempt
	}
	h.mu.Unlock()
}

// committed settles attempt's result once its commit returned (committed or not): the mark goes
// (unless a later attempt's is there), and so does a hint whose record predates the attempt. Such a
// hint comes from an effect that made the delivery due again while that attempt was out (an endpoint
// reactivated as its old lane sent it); with the mark gone it would send the delivery again.
func (h *loadHints) committed(deliveryID string, attempt int) {
	h.mu.Lock()
	if x, ok := h.m[deliveryID]; ok && x.attempts < attempt {
		delete(h.m, deliveryID)
	}
	if h.outstanding[deliveryID] <= attempt {
		delete(h.outstanding, deliveryID)
	}
	h.mu.Unlock()
}

// clear drops every hint; the marks stay, their results are still on the way to the log.
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
