// Package scheduler holds the next-attempt time of every pending delivery in a hierarchical timing wheel
// and hands due keys to the dispatcher in batches.
//
// # What it owns
//
// A Wheel[K] owns, for each key, exactly one deadline: Schedule sets or moves it, Cancel removes it, and
// the key leaves the wheel when it is handed out. It owns no delivery state and persists nothing: the
// durable truth is the due-time index in the state store, and a node that becomes responsible for
// dispatch rebuilds its wheel by scheduling every pending delivery from that index (Config.SizeHint
// pre-sizes it). Retries are simply Schedule calls, typically from the dispatcher, including from inside
// the fire callback.
//
// # Layout
//
// Time is counted in ticks of Config.Tick (1 ms by default) since the Clock's time at New. The wheel has
// Config.Levels levels (6 by default) of 64 slots; a slot of level l spans 64^l ticks, so level l covers
// 64^(l+1) ticks:
//
//	level 0: 64 slots x 1 tick       =     64 ms at 1 ms ticks
//	level 1: 64 slots x 64 ticks     =  4.096 s
//	level 2: 64 slots x 4096 ticks   =  4.37 min
//	level 3: 64 slots x 64^3 ticks   =  4.66 h
//	level 4: 64 slots x 64^4 ticks   = 12.4 days
//	level 5: 64 slots x 64^5 ticks   =  795 days
//	overflow: one list for anything further out, rescanned once per top-level rotation
//
// A timer due at tick d is stored, relative to the current tick now, at the level of the highest bit in
// which d and now differ (six bits per level), in slot (d >> 6*level) & 63. Each level has a 64-bit
// occupancy bitmap, so the next non-empty slot is one TrailingZeros away and empty stretches of any
// length are skipped in O(levels). When the wheel reaches the start of a slot above level 0 it cascades
// the slot: each timer moves to a lower level (or fires). A timer is thus touched at most once per level
// on its way down; slots never wrap, because every timer in a level lies within the current slot of each
// higher level. Keys scheduled at or before the current tick go to a pending list fired on the next
// step. The overflow list is rescanned when the wheel reaches the top-level rotation of its earliest
// deadline.
//
// Each timer is one node in a chunked slab (32 bytes for an 8-byte key, 40 for the dispatcher's 20-byte
// DueKey), linked into its slot's doubly-linked list by int32 indices, plus one 8-byte slot (a 32-bit
// hash and the node index) in an open-addressing key index at a load of 3/8 to 3/4: the key is stored
// once, in its node, where a map[K]int32 would copy it and add its own overhead (~55 bytes per timer for
// a 20-byte key, against 11-21 here). Freed nodes are reused through a free list; the slab keeps its
// high-water mark until Clear. With a pointer-free K (an integer or byte-array id) the slab and the
// index hold no pointers, so millions of timers add nothing to garbage-collector marking. At most
// 2^31-1 timers may be pending at once.
//
// # Precision
//
// A deadline is rounded up to the next tick boundary, and a tick is processed only once the clock has
// reached it, so a timer never fires early. AdvanceTo(now) fires everything due at or before now's tick;
// under a fake clock Run wakes exactly at the boundary, so a timer fires less than one tick after its
// deadline. Under the real clock lateness is that tick plus the OS timer's latency and the time fire
// takes. Keys are handed out in due-tick order; order within one tick is unspecified.
//
// # Complexity
//
// Schedule, Cancel and Len are O(1) (one hash of the key, a short linear probe and a few list links;
// the hash is computed before the mutex is taken). Finding the next event is
// O(levels). Firing costs O(1) per timer plus at most one cascade step per level it descends; a timer
// in the overflow list is also touched once per top-level rotation it waits through (never, in
// practice, with the default layout). bench_test.go compares the wheel with a container/heap queue and
// with time.AfterFunc at 10^4 to 10^6 pending timers: per-timer memory about equals the heap's (the key
// index dominates both) and is a third of AfterFunc's, and a forced GC with 10^6 timers live is tens
// of times faster, because the wheel holds no pointers.
//
// # Threading
//
// One mutex guards all wheel state; Schedule, Cancel, Len and AdvanceTo may be called from any number
// of goroutines. Run is the single goroutine that drives the wheel from the Clock: it sleeps until the
// next non-empty slot (holding no timer while the wheel is empty, and never waking every tick), a
// Schedule earlier than that sleep wakes it through a one-slot channel, and it calls fire with every
// key due at that moment as one slice. fire runs on the Run goroutine without the mutex held, so it
// may call Schedule and Cancel; while it runs the wheel does not advance, so a slow fire delays the next
// batch rather than losing it. The slice passed to fire (or returned by AdvanceTo) belongs to the
// receiver. Drive a wheel with Run or with AdvanceTo, not both.
//
// A batch is collected under the mutex in one pass, so a huge burst (a rebuild that finds a million
// deliveries already overdue) makes concurrent Schedule calls wait for that pass, a fraction of a
// microsecond per key.
package scheduler
