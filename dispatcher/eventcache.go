package dispatcher

import (
	"container/list"
	"net/http"
	"sync"
)

// eventCache keeps recently loaded events (data decompressed, headers converted) so that the
// deliveries of one event to many endpoints read and decompress it once, not once per endpoint. It
// is a least-recently-used list bounded in bytes. Events never change once stored (a replay adds
// deliveries, not data), and a delivery whose event was deleted with its project is refused on its
// own record before the event is looked up, so entries need no invalidation.
//
// Safe for concurrent use: lanes load jobs concurrently.
type eventCache struct {
	max int64

	mu    sync.Mutex // guards the fields below
	size  int64
	items map[eventKey]*list.Element // -> element holding *cachedEvent
	order list.List                  // front: most recently used
}

type eventKey struct{ projectID, eventID string }

// cachedEvent is what a job needs of an event. Body and Headers are shared by every job of the
// event: the Loader contract has them only read.
type cachedEvent struct {
	key       eventKey
	eventType string
	body      []byte
	headers   http.Header
	size      int64
}

// eventOverhead approximates what an entry costs beyond its strings and bytes (list element, map
// entry, struct), so that tiny events still count against the bound.
const eventOverhead = 256

func newEventCache(maxBytes int64) *eventCache {
	return &eventCache{max: maxBytes, items: make(map[eventKey]*list.Element)}
}

// get returns the cached event, or nil.
func (c *eventCache) get(k eventKey) *cachedEvent {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[k]
	if el == nil {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*cachedEvent)
}

// add caches ev, evicting the least recently used events beyond the bound. An event larger than the
// whole bound is not cached.
func (c *eventCache) add(ev *cachedEvent) {
	if c == nil {
		return
	}
	ev.size = int64(len(ev.key.projectID)+len(ev.key.eventID)+len(ev.eventType)+len(ev.body)) + eventOverhead
	for k, vs := range ev.headers {
		ev.size += int64(len(k))
		for _, v := range vs {
			ev.size += int64(len(v))
		}
	}
	if ev.size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.items[ev.key]; el != nil {
		c.order.MoveToFront(el)
		return
	}
	c.items[ev.key] = c.order.PushFront(ev)
	c.size += ev.size
	for c.size > c.max {
		el := c.order.Back()
		old := el.Value.(*cachedEvent)
		c.order.Remove(el)
		delete(c.items, old.key)
		c.size -= old.size
	}
}

// clear drops every entry (the state was replaced by a snapshot).
func (c *eventCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.items)
	c.order.Init()
	c.size = 0
}

// len is how many events are cached (tests).
func (c *eventCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
