package dispatcher

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// TestEngineLoadsFromHintsAndFallsBackToTheStore: deliveries that became due through this node's
// effects (published to a paused endpoint, then reactivated; retried after a failure) are sent
// without reading their records, with the right attempt numbers; deliveries scheduled by a rebuild
// from the due index are read from the store.
func TestEngineLoadsFromHintsAndFallsBackToTheStore(t *testing.T) {
	e := startEngine(t, t.TempDir(), nil)
	e.project()
	seen := make(map[string][]string) // delivery id -> X-Sluice-Attempt values, in order
	sk := newRecSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		did := r.Header.Get(HeaderDeliveryID)
		if r.Header.Get(HeaderAttempt) == "1" && did != "" && r.URL.Path == "/fail-first" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	failFirst := e.endpoint(sk.srv.URL+"/fail-first", func(ep *model.Endpoint) {
		ep.Status = model.EndpointPaused
		ep.Strategy = &model.RetryStrategy{Type: "linear", Duration: 1, RetryCount: 3}
	})
	var dids []string
	for i := range 5 {
		_, did := e.publish(failFirst, `{"n":`+strconv.Itoa(i)+`}`)
		dids = append(dids, did)
	}
	ep := *e.st.Endpoint(e.pid, failFirst)
	ep.Status = model.EndpointActive
	e.propose(raftstorePutEndpoint(ep))
	for _, did := range dids {
		d := e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
		if d.Attempts != 2 {
			t.Fatalf("delivery %s: %d attempts, want 2 (one failure, one retry)", did, d.Attempts)
		}
	}
	sk.mu.Lock()
	for _, r := range sk.reqs {
		did := r.Header.Get(HeaderDeliveryID)
		seen[did] = append(seen[did], r.Header.Get(HeaderAttempt))
	}
	sk.mu.Unlock()
	for _, did := range dids {
		if got := seen[did]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
			t.Fatalf("delivery %s was sent with attempts %v, want [1 2]", did, got)
		}
	}
	if n := e.eng.storeDeliveryLoads.Load(); n != 0 {
		t.Fatalf("%d delivery records read from the store; every load had a hint", n)
	}

	// Published while the engine is inactive: no effects reach the wheel, the rebuild reads the
	// due index, and the loads read the records.
	plain := e.endpoint(sk.srv.URL+"/ok", nil)
	e.eng.SetActive(false)
	var later []string
	for i := range 3 {
		_, did := e.publish(plain, `{"m":`+strconv.Itoa(i)+`}`)
		later = append(later, did)
	}
	e.eng.SetActive(true)
	for _, did := range later {
		e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess && d.Attempts == 1 })
	}
	if n := e.eng.storeDeliveryLoads.Load(); n != int64(len(later)) {
		t.Fatalf("%d delivery records read from the store after the rebuild, want %d", n, len(later))
	}
}

func TestLoadHintsTakeReplaceAndSweep(t *testing.T) {
	h := newLoadHints()
	t0 := time.Unix(1_800_000_000, 0)
	due := func(id string, attempts int) *raftstore.Due {
		return &raftstore.Due{DeliveryID: id, EventID: "ev-" + id, EventType: "t", Attempts: attempts, At: t0}
	}
	h.put(&raftstore.Due{DeliveryID: "bare"}, t0) // no record carried: no hint
	if _, ok, _ := h.take("bare"); ok {
		t.Fatal("a Due without the record made a hint")
	}
	h.put(due("a", 0), t0)
	h.put(due("a", 1), t0) // a newer effect replaces
	if x, ok, _ := h.take("a"); !ok || x.attempts != 1 || x.eventID != "ev-a" {
		t.Fatalf("take(a) = %+v, %v; want the newer hint", x, ok)
	}
	if _, ok, _ := h.take("a"); ok {
		t.Fatal("a hint was taken twice")
	}

	for i := range maxLoadHints {
		h.put(due(strconv.Itoa(i), 0), t0)
	}
	h.put(due("new", 0), t0.Add(2*time.Second)) // full of young hints: refused
	if _, ok, _ := h.take("new"); ok {
		t.Fatal("a full table took a hint without sweeping anything")
	}
	h.put(due("new", 0), t0.Add(loadHintTTL+5*time.Second)) // the old ones have expired: swept
	if _, ok, _ := h.take("new"); !ok || h.len() != 0 {
		t.Fatalf("after the sweep: new taken %v, %d hints left; want true and 0", ok, h.len())
	}
}

// TestLoadRefusesADeliveryWhoseResultIsOutstanding: between an attempt and the commit of its result
// the record still says pending; a second Submit then (a wheel rebuild, a reactivation's requeue)
// must not send the delivery again, while the retry the result itself schedules (its record counts
// the attempt) must go.
func TestLoadRefusesADeliveryWhoseResultIsOutstanding(t *testing.T) {
	e := startEngine(t, t.TempDir(), nil)
	e.project()
	sk := newRecSink(t, nil)
	eid := e.endpoint(sk.srv.URL, nil)
	e.eng.SetActive(false) // nothing dispatches it behind the test's back
	evid, did := e.publish(eid, `{}`)
	e.eng.active.Store(true) // loads allowed, wheel left empty
	defer e.eng.active.Store(false)
	loader := storeLoader{e.eng}
	ref := Ref{ProjectID: e.pid, EndpointID: eid, DeliveryID: did}

	if j, err := loader.Load(context.Background(), ref); err != nil || j.Attempt != 1 {
		t.Fatalf("load before any attempt = %+v, %v; want attempt 1", j, err)
	}
	resultSink{e.eng}.Mark(&Result{Ref: ref, Attempt: Attempt{Number: 1}})
	if _, err := loader.Load(context.Background(), ref); !errors.Is(err, ErrNotPending) {
		t.Fatalf("load with attempt 1's result outstanding = %v, want ErrNotPending", err)
	}
	// The result's own retry effect: the record it carries counts attempt 1.
	e.eng.hints.put(&raftstore.Due{ProjectID: e.pid, EndpointID: eid, DeliveryID: did, EventID: evid, EventType: "invoice.paid", Attempts: 1}, time.Now())
	if j, err := loader.Load(context.Background(), ref); err != nil || j.Attempt != 2 {
		t.Fatalf("load with the retry's hint = %+v, %v; want attempt 2", j, err)
	}
	e.eng.hints.committed(did, 1)
	if j, err := loader.Load(context.Background(), ref); err != nil || j.Attempt != 1 {
		t.Fatalf("load after the commit returned (the record unchanged: the commit failed) = %+v, %v; want attempt 1 again", j, err)
	}
}

// TestStaleHintIsDroppedWithItsAttemptsResult: a reactivation's effect can hint a delivery while the
// old lane's attempt of it is out; once that attempt's result is committed the hint is stale and
// must not send the delivery again.
func TestStaleHintIsDroppedWithItsAttemptsResult(t *testing.T) {
	h := newLoadHints()
	now := time.Unix(1_800_000_000, 0)
	h.put(&raftstore.Due{DeliveryID: "d", EventID: "ev", Attempts: 0}, now) // made due again mid-attempt 1
	h.committed("d", 1)                                                     // attempt 1's result committed
	if _, ok, _ := h.take("d"); ok {
		t.Fatal("a hint older than the committed attempt survived")
	}
	h.put(&raftstore.Due{DeliveryID: "d", EventID: "ev", Attempts: 1}, now) // attempt 1's own retry
	h.mark("d", 2)                                                          // attempt 2 sent from that hint, its result not committed yet
	h.committed("d", 1)
	if x, ok, n := h.take("d"); !ok || x.attempts != 1 || n != 2 {
		t.Fatalf("after attempt 1's commit: hint %+v %v, outstanding %d; want the retry's hint and attempt 2's mark", x, ok, n)
	}
}
