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

// cachedEvent is what a job needs of an event beyond its delivery record. Body and Headers are shared by every job of the
// event: the Loader contract has them only read. An event handed over by the store as it was
// published holds its compressed data and raw headers until its first delivery expands them (off
// the FSM goroutine); entries are immutable, so that delivery caches an expanded copy.
type cachedEvent struct {
	key        eventKey
	body       []byte
	headers    http.Header
	compressed []byte
	rawHeaders map[string]string
	size       int64
}

func (ev *cachedEvent) expanded() bool { return ev.compressed == nil }

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
	ev.size = int64(len(ev.key.projectID)+len(ev.key.eventID)+len(ev.body)+len(ev.compressed)) + eventOverhead
	for k, vs := range ev.headers {
		ev.size += int64(len(k))
		for _, v := range vs {
			ev.size += int64(len(v))
		}
	}
	for k, v := range ev.rawHeaders {
		ev.size += int64(len(k) + len(v))
	}
	if ev.size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.items[ev.key]; el != nil {
		// The expanded form replaces the compressed one.
		if old := el.Value.(*cachedEvent); !old.expanded() && ev.expanded() {
			el.Value = ev
			c.size += ev.size - old.size
		}
		c.order.MoveToFront(el)
		c.evictLocked()
		return
	}
	c.items[ev.key] = c.order.PushFront(ev)
	c.size += ev.size
	c.evictLocked()
}

func (c *eventCache) evictLocked() {
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
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
