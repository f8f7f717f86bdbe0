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
		{"an event all of whose deliveries took it is evicted first", 2 * per, func(c *eventCache) {
			a, b := ev("a", 1000), ev("b", 1000)
			a.left, b.left = 1, 1
			c.add(a)
			c.add(b)
			if got, last := c.take(eventKey{"p", "a"}); got == nil || !last {
				t.Errorf("take a: %v, last %v", got, last)
			}
			c.add(ev("c", 1000)) // evicts a, not b (which get would have made least recent)
		}, []string{"b", "c"}, []string{"a"}},
		{"a fan-out stays until its last delivery took it", 2 * per, func(c *eventCache) {
			a, b := ev("a", 1000), ev("b", 1000)
			a.left, b.left = 2, -1
			c.add(a)
			c.add(b)
			if _, last := c.take(eventKey{"p", "a"}); last {
				t.Error("first of two deliveries reported last")
			}
			c.add(ev("c", 1000)) // a was just used: b goes
			if _, last := c.take(eventKey{"p", "a"}); !last {
				t.Error("second of two deliveries not reported last")
			}
			c.add(ev("d", 1000)) // a is done: it goes before c
		}, []string{"c", "d"}, []string{"a", "b"}},
		{"expanded form keeps the count", 2 * per, func(c *eventCache) {
			c.add(&cachedEvent{key: eventKey{"p", "a"}, compressed: []byte("z"), left: 2})
			c.take(eventKey{"p", "a"})
			x := ev("a", 1000)
			x.left = -1
			c.add(x)
			c.add(ev("b", 1000))
			if _, last := c.take(eventKey{"p", "a"}); !last {
				t.Error("the expanded form lost the compressed one's count")
			}
		}, []string{"a", "b"}, nil},
		{"unknown count never goes last", 2 * per, func(c *eventCache) {
			a := ev("a", 1000)
			a.left = -1
			c.add(a)
			c.add(ev("b", 1000))
			for i := 0; i < 3; i++ {
				if _, last := c.take(eventKey{"p", "a"}); last {
					t.Error("an event of unknown fan-out reported last")
				}
			}
			c.add(ev("c", 1000))
		}, []string{"a", "c"}, []string{"b"}},
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
	if got, _ := disabled.take(eventKey{"p", "a"}); got != nil {
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

// A backlog whose compressed events fit the cache but whose expanded ones would not is drained
// without reading a single event back from the store: the delivered events make room, not the
// undelivered ones next in line.
func TestEngineBacklogLargerThanExpandedCache(t *testing.T) {
	const events = 40
	e := startEngine(t, t.TempDir(), nil)
	e.project()
	sk := newRecSink(t, nil)
	var ep model.Endpoint
	eid := e.endpoint(sk.srv.URL+"/hook", func(x *model.Endpoint) { x.Status = model.EndpointPaused; ep = *x })
	dids := make([]string, events)
	for i := range dids {
		_, dids[i] = e.publish(eid, fmt.Sprintf(`{"n": %d, "pad": "%s"}`, i, strings.Repeat("x", 2000)))
	}
	c := e.eng.events
	c.mu.Lock()
	if len(c.items) != events {
		c.mu.Unlock()
		t.Fatalf("the cache holds %d events after publishing, want %d", len(c.items), events)
	}
	// Room for every compressed event, not for one more expanded body.
	c.max = c.size + 500
	c.mu.Unlock()

	ep.Status = model.EndpointActive
	e.propose(raftstorePutEndpoint(ep))
	for _, did := range dids {
		e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
	}
	if n := e.eng.storeEventLoads.Load(); n != 0 {
		t.Fatalf("%d of %d events were read back from the store", n, events)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if len(sk.body) != events {
		t.Fatalf("the sink got %d requests, want %d", len(sk.body), events)
	}
	for i, b := range sk.body {
		if !strings.HasPrefix(string(b), `{"n": `) || len(b) < 2000 {
			t.Fatalf("request %d: body %.40q (%d bytes)", i, b, len(b))
		}
	}
}
