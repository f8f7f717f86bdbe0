package dispatcher

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/model"
)

func TestEventCacheBoundsBytesAndEvictsLeastRecent(t *testing.T) {
	ev := func(id string, n int) *cachedEvent {
		return &cachedEvent{key: eventKey{"p", id}, body: []byte(strings.Repeat("x", n)),
			headers: http.Header{"X-A": {"v"}}}
	}
	// Each event costs its project and id (1 + 1), body (1,000), header (3 + 1) and overhead.
	per := int64(1+1+1000+3+1) + eventOverhead
	tests := []struct {
		name    string
		max     int64
		ops     func(c *eventCache)
		present []string
		absent  []string
	}{
		{"fits", 3 * per, func(c *eventCache) { c.add(ev("a", 1000)); c.add(ev("b", 1000)); c.add(ev("c", 1000)) },
			[]string{"a", "b", "c"}, nil},
		{"oldest evicted", 2 * per, func(c *eventCache) { c.add(ev("a", 1000)); c.add(ev("b", 1000)); c.add(ev("c", 1000)) },
			[]string{"b", "c"}, []string{"a"}},
		{"get keeps an event", 2 * per, func(c *eventCache) {
			c.add(ev("a", 1000))
			c.add(ev("b", 1000))
			c.get(eventKey{"p", "a"})
			c.add(ev("c", 1000))
		}, []string{"a", "c"}, []string{"b"}},
		{"larger than the bound is not cached", per, func(c *eventCache) { c.add(ev("a", 1000)); c.add(ev("big", 5000)) },
			[]string{"a"}, []string{"big"}},
		{"added twice counted once", 2 * per, func(c *eventCache) { c.add(ev("a", 1000)); c.add(ev("a", 1000)); c.add(ev("b", 1000)) },
			[]string{"a", "b"}, nil},
		{"cleared", 4 * per, func(c *eventCache) { c.add(ev("a", 1000)); c.clear(); c.add(ev("b", 1000)) },
			[]string{"b"}, []string{"a"}},
		{"expanded form replaces the compressed one", 2 * per, func(c *eventCache) {
			c.add(&cachedEvent{key: eventKey{"p", "a"}, compressed: []byte("z"), rawHeaders: map[string]string{"X-A": "v"}})
			c.add(ev("a", 1000))
			c.add(&cachedEvent{key: eventKey{"p", "a"}, compressed: []byte("z")}) // a late duplicate keeps the expanded one
			if got := c.get(eventKey{"p", "a"}); got == nil || !got.expanded() || len(got.body) != 1000 {
				t.Errorf("cached after expansion: %+v", got)
			}
			c.add(ev("b", 1000))
		}, []string{"a", "b"}, nil},
		{"other project misses", 4 * per, func(c *eventCache) { c.add(&cachedEvent{key: eventKey{"q", "a"}}) },
			nil, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newEventCache(tt.max)
			tt.ops(c)
			for _, id := range tt.present {
				if c.get(eventKey{"p", id}) == nil {
					t.Errorf("event %s missing", id)
				}
			}
			for _, id := range tt.absent {
				if c.get(eventKey{"p", id}) != nil {
					t.Errorf("event %s cached", id)
				}
			}
			if c.size > c.max {
				t.Errorf("size %d over the bound %d", c.size, c.max)
			}
			if c.len() != len(c.items) || c.order.Len() != len(c.items) {
				t.Errorf("list has %d entries, map %d", c.order.Len(), len(c.items))
			}
		})
	}
	var disabled *eventCache
	disabled.add(ev("a", 1))
	if disabled.get(eventKey{"p", "a"}) != nil {
		t.Fatal("a disabled cache returned an event")
	}
}

// Whether a delivery's event comes from the cache (handed over by the FSM at publish) or from the
// store, the request is the same; and results proposed in either form are recorded.
func TestEngineEventSources(t *testing.T) {
	for _, tt := range []struct {
		name        string
		cache       int64
		resultsJSON bool
	}{{"cache", 0, false}, {"store", -1, false}, {"results as JSON", 0, true}} {
		t.Run(tt.name, func(t *testing.T) {
			e := startEngine(t, t.TempDir(), func(c *EngineConfig) { c.EventCacheBytes, c.ResultsJSON = tt.cache, tt.resultsJSON })
			e.project()
			sk := newRecSink(t, nil)
			eid := e.endpoint(sk.srv.URL+"/hook", nil)
			for i := 0; i < 3; i++ {
				data := fmt.Sprintf(`{"n": %d}`, i)
				evid, did := e.publish(eid, data)
				e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
				if as, err := e.st.Attempts(e.pid, did); err != nil || len(as) != 1 || as[0].RequestHeaders.Get(HeaderSignature) == "" {
					t.Fatalf("attempt log of %s: %+v %v", did, as, err)
				}
				sk.mu.Lock()
				r, body := sk.reqs[i], sk.body[i]
				sk.mu.Unlock()
				if string(body) != data || r.Header.Get("X-Custom") != "c" || r.Header.Get(HeaderEventID) != evid ||
					r.Header.Get(HeaderEventType) != "invoice.paid" {
					t.Fatalf("request %d: body %q, headers %v", i, body, r.Header)
				}
			}
			want := 3
			if tt.cache < 0 {
				want = 0
			}
			if n := e.eng.events.len(); n != want {
				t.Fatalf("the cache holds %d events, want %d", n, want)
			}
		})
	}
}
