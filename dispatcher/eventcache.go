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
// An event handed over at publish knows how many deliveries it has. Once they have all loaded it
// (take), it goes to the back of the list, first to be evicted: otherwise a backlog larger than the
// bound, drained oldest first, would keep the delivered events and evict exactly the undelivered ones
// next in line, sending every later load to the store.
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
	// left is how many of the event's deliveries have not taken it yet; negative when unknown (an
	// event read back from the store). Guarded by eventCache.mu.
	left int
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

// take is get for one delivery's load: it counts the load against the event's deliveries and
// reports whether it was the last one known, in which case the event moves to the back of the list
// instead of the front (a later retry may still find it while there is room).
func (c *eventCache) take(k eventKey) (ev *cachedEvent, last bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[k]
	if el == nil {
		return nil, false
	}
	ev = el.Value.(*cachedEvent)
	if ev.left > 0 {
		ev.left--
		if ev.left == 0 {
			c.order.MoveToBack(el)
			return ev, true
		}
	}
	c.order.MoveToFront(el)
	return ev, false
}

// add caches ev, evicting the least recently used events beyond the bound. An event larger than the
// whole bound is not cached. An expanded form replacing a compressed one keeps its count of
// deliveries left.
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
		old := el.Value.(*cachedEvent)
		if !old.expanded() && ev.expanded() {
			ev.left = old.left
			el.Value = ev
			c.size += ev.size - old.size
		}
		if old.left == 0 {
			c.order.MoveToBack(el)
		} else {
			c.order.MoveToFront(el)
		}
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
