package scheduler

import (
	"context"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

const (
	slotBits  = 6
	slotCount = 1 << slotBits // slots per level: one uint64 occupancy bitmap per level
	slotMask  = slotCount - 1

	// Nodes live in fixed-size chunks so growing to millions of timers never copies a big slice while
	// holding the mutex, and a node's index stays valid for its whole life.
	chunkBits = 10
	chunkSize = 1 << chunkBits
	chunkMask = chunkSize - 1

	// nilNode is the "no node" link. Slab index 0 is never handed out so zeroed links mean empty.
	nilNode int32 = 0
	// maxNodes is the most timers a wheel holds at once: links are int32 to keep a node at 32 bytes.
	maxNodes = math.MaxInt32
)

// node is one pending timer. Nodes are linked by slab index rather than pointer: for pointer-free keys
// the whole slab and index map are then pointer-free, so the garbage collector never scans millions of
// timers.
//
// The key comes last so that a key with 4-byte alignment (such as a 16-byte id plus a uint32) packs
// against the three int32 links: 8 + 12 + 20 = 40 bytes, where key-first would pad to 48.
type node[K comparable] struct {
	tick uint64 // due tick: the deadline rounded up to a tick boundary
	prev int32  // previous node in the same list, nilNode at the head
	next int32  // next node in the same list, or the next free node while on the free list
	list int32  // index into Wheel.lists of the list holding the node
	key  K
}

// list is a doubly-linked FIFO of nodes: a wheel slot, the pending list or the overflow list.
type list struct {
	head, tail int32
}

// Wheel is a hierarchical timing wheel of keys. See the package documentation for the layout, the
// precision guarantee and the threading rules. Make one with New.
type Wheel[K comparable] struct {
	// Immutable after New.
	tick    time.Duration
	clk     clock.Clock
	origin  time.Time // tick 0; tick t is origin + t*tick
	levels  int
	pending int32 // index in lists of the pending list: due at the next advance
	ovf     int32 // index in lists of the overflow list: beyond the top level
	fire    func(due []K)
	// wake holds at most one token: a Schedule earlier than Run's sleep deposits it so Run re-plans.
	wake    chan struct{}
	running atomic.Bool
	// loops counts Run iterations, so tests can prove Run does not spin while idle.
	loops atomic.Uint64

	// mu guards every field below. It is held only for O(1) work (Schedule, Cancel, Len) or for one
	// advance (firing and cascading due slots); the fire callback always runs without it, so fire may
	// call Schedule and Cancel.
	mu sync.Mutex
	// now is the current tick: every tick <= now has been processed, and every node in a wheel slot is
	// due strictly after now.
	now uint64
	// runWake is the tick Run sleeps until; 0 while Run is not parked (not running, or awake and bound to
	// look at the wheel again before sleeping), so Schedule only signals wake when it must.
	runWake uint64
	index   keyIndex[K]
	// lists holds levels*slotCount wheel slots (level-major), then the pending list, then the overflow
	// list.
	lists []list
	// occupied has one bitmap per level: bit s is set iff slot s of that level is non-empty.
	occupied []uint64
	// overflowMin is at most the smallest due tick in the overflow list (it may be stale-low after a
	// Cancel, which costs one early rescan); math.MaxUint64 when the list is empty.
	overflowMin uint64
	chunks      []*[chunkSize]node[K]
	used        int32 // slab indices in [1, used) have been handed out at least once
	free        int32 // head of the free list, chained through node.next
}

// New returns a wheel whose tick 0 is cfg.Clock.Now(). fire receives the due keys when Run drives the
// wheel; it may be nil for a wheel only driven by AdvanceTo. Invalid Config fields are treated as zero
// (the default): check them with Config.Validate first.
func New[K comparable](cfg Config, fire func(due []K)) *Wheel[K] {
	cfg = cfg.withDefaults()
	nslots := int32(cfg.Levels * slotCount)
	return &Wheel[K]{
		tick:        cfg.Tick,
		clk:         cfg.Clock,
		origin:      cfg.Clock.Now(),
		levels:      cfg.Levels,
		pending:     nslots,
		ovf:         nslots + 1,
		fire:        fire,
		wake:        make(chan struct{}, 1),
		index:       newKeyIndex[K](cfg.SizeHint),
		lists:       make([]list, nslots+2),
		occupied:    make([]uint64, cfg.Levels),
		overflowMin: math.MaxUint64,
		used:        1,
	}
}

// Schedule sets key's deadline to at, replacing any earlier Schedule of the same key, in O(1). A
// deadline at or before the wheel's current tick fires on the next AdvanceTo or Run step; any other
// deadline fires once the clock reaches it rounded up to the next tick boundary, never before.
// Safe for concurrent use.
func (w *Wheel[K]) Schedule(key K, at time.Time) {
	t := w.ceilTick(at)
	h := w.index.hash(key)
	w.mu.Lock()
	var i int32
	if pos := w.index.find(key, h, w.chunks); pos >= 0 {
		i = w.index.slots[pos].node
		w.unlinkLocked(w.node(i))
	} else {
		i = w.allocLocked()
		w.node(i).key = key
		w.index.insert(h, i)
	}
	n := w.node(i)
	n.tick = t
	w.insertLocked(i, n)
	poke := t < w.runWake
	if poke {
		// Run will re-plan from scratch; later Schedules need not signal again until it parks anew.
		w.runWake = 0
	}
	w.mu.Unlock()
	if poke {
		select {
		case w.wake <- struct{}{}:
		default: // a token is already waiting
		}
	}
}

// Cancel removes key's timer in O(1) and reports whether it was pending. A key already handed to fire
// (or returned by AdvanceTo) is no longer pending. Safe for concurrent use.
func (w *Wheel[K]) Cancel(key K) bool {
	h := w.index.hash(key)
	w.mu.Lock()
	defer w.mu.Unlock()
	pos := w.index.find(key, h, w.chunks)
	if pos < 0 {
		return false
	}
	i := w.index.slots[pos].node
	n := w.node(i)
	w.unlinkLocked(n)
	w.index.removeAt(pos)
	w.freeLocked(i, n)
	return true
}

// Clear removes every timer and releases the memory they held, as if the wheel were new (its tick 0 and
// current tick are kept). Use it before rebuilding the wheel from a durable index: it costs O(chunks),
// not a Cancel per key. Safe for concurrent use.
func (w *Wheel[K]) Clear() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.lists)
	clear(w.occupied)
	w.overflowMin = math.MaxUint64
	w.index.reset()
	w.chunks = nil
	w.used = 1
	w.free = nilNode
}

// Len reports the number of pending timers. Safe for concurrent use.
func (w *Wheel[K]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.index.len()
}

// AdvanceTo processes every tick up to now (rounded down to a tick boundary) and returns the keys that
// became due, in due-tick order (order within one tick is unspecified); the caller owns the slice.
// It is the synchronous form of Run for tests and for callers that drive the wheel themselves; it does
// not call fire. Moving backwards is a no-op apart from firing keys scheduled in the past. Do not mix
// it with a running Run: whichever advances first gets the keys.
func (w *Wheel[K]) AdvanceTo(now time.Time) []K {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.advanceLocked(now, nil)
}

// Run drives the wheel from the Clock until ctx is done, then returns ctx.Err(). It is the only caller
// of fire: each time it wakes it advances to Clock.Now() and passes every due key as one slice, which
// fire owns. It sleeps until the next non-empty slot (not every tick), holding no timer at all while the
// wheel is empty; a Schedule earlier than that sleep wakes it. Only one Run may be active (ErrRunning).
func (w *Wheel[K]) Run(ctx context.Context) error {
	if w.fire == nil {
		return ErrNoFire
	}
	if !w.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer w.running.Store(false)

	var timer clock.Timer
	stopTimer := func() {
		if timer != nil && !timer.Stop() {
			// It fired but we woke for another reason: drop the stale tick so it cannot cut the next
			// sleep short (real timers since Go 1.23 need this no more, fake ones do).
			select {
			case <-timer.C():
			default:
			}
		}
	}
	defer func() {
		stopTimer()
		w.mu.Lock()
		w.runWake = 0
		w.mu.Unlock()
	}()

	for {
		w.loops.Add(1)
		if err := ctx.Err(); err != nil {
			return err
		}
		now := w.clk.Now()
		w.mu.Lock()
		due := w.advanceLocked(now, nil)
		next, _, ok := w.nextEventLocked()
		switch {
		case len(due) > 0:
			w.runWake = 0 // we look again right after fire, so no one needs to wake us
		case ok:
			w.runWake = next
		default:
			w.runWake = math.MaxUint64
		}
		w.mu.Unlock()

		if len(due) > 0 {
			w.fire(due)
			continue // time moved while fire ran: look again before sleeping
		}

		var timerC <-chan time.Time
		stopTimer()
		if ok {
			// next > now's tick, so d > 0; a cascade (not a fire) may be what wakes us, which costs
			// one extra loop per level a timer descends.
			d := w.tickTime(next).Sub(now)
			if timer == nil {
				timer = w.clk.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			timerC = timer.C()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		case <-timerC:
		}
	}
}

// advanceLocked fires the pending list, then processes every slot event up to now's tick, appending due
// keys to due in tick order.
func (w *Wheel[K]) advanceLocked(now time.Time, due []K) []K {
	due = w.processLocked(w.pending, w.now, due)
	target, ok := w.floorTick(now)
	if !ok || target <= w.now {
		return due
	}
	for {
		t, id, ok := w.nextEventLocked()
		if !ok || t > target {
			break
		}
		due = w.processLocked(id, t, due)
	}
	w.now = target
	return due
}

// nextEventLocked returns the earliest tick at which a list needs processing and which list it is.
//
// A level's occupied slots all lie after the wheel's position in that level, inside the current slot of
// every higher level; so the lowest non-empty level holds the earliest event, and the overflow list
// (later top-level rotations) matters only when all levels are empty.
func (w *Wheel[K]) nextEventLocked() (tick uint64, id int32, ok bool) {
	if w.lists[w.pending].head != nilNode {
		return w.now, w.pending, true
	}
	for lvl := range w.levels {
		occ := w.occupied[lvl]
		if occ == 0 {
			continue
		}
		shift := uint(lvl * slotBits)
		cur := (w.now >> shift) & slotMask
		later := occ &^ (uint64(2)<<cur - 1) // slots after cur; cur == 63 gives 2<<63 == 0, so none
		if later == 0 {
			panic("BUG: scheduler: occupied slot at or behind the wheel position")
		}
		slot := uint64(bits.TrailingZeros64(later))
		start := w.now&^(uint64(1)<<(shift+slotBits)-1) | slot<<shift
		return start, int32(lvl*slotCount) + int32(slot), true
	}
	if w.lists[w.ovf].head != nilNode {
		span := uint(w.levels * slotBits)
		return w.overflowMin &^ (uint64(1)<<span - 1), w.ovf, true
	}
	return 0, 0, false
}

// processLocked moves the wheel to tick t and empties list id: nodes due by t are released and their
// keys appended to due, the others re-inserted relative to t, which puts them on a lower level (the
// cascade) or, from the overflow list, into the wheel when they now fit.
func (w *Wheel[K]) processLocked(id int32, t uint64, due []K) []K {
	l := &w.lists[id]
	i := l.head
	if i == nilNode {
		return due
	}
	*l = list{}
	if id < w.pending {
		w.occupied[id>>slotBits] &^= 1 << (id & slotMask)
	} else if id == w.ovf {
		w.overflowMin = math.MaxUint64
	}
	w.now = t
	for i != nilNode {
		n := w.node(i)
		next := n.next
		if n.tick <= t {
			due = append(due, n.key)
			w.releaseLocked(i, n)
		} else {
			w.insertLocked(i, n)
		}
		i = next
	}
	return due
}

// insertLocked links an unlinked node into the list its due tick belongs to relative to w.now: the
// level is given by the highest bit in which the due tick differs from now, so the slot is always ahead
// of the wheel's position in that level.
func (w *Wheel[K]) insertLocked(i int32, n *node[K]) {
	if n.tick <= w.now {
		w.pushLocked(w.pending, i, n)
		return
	}
	lvl := (bits.Len64(n.tick^w.now) - 1) / slotBits
	if lvl >= w.levels {
		w.pushLocked(w.ovf, i, n)
		w.overflowMin = min(w.overflowMin, n.tick)
		return
	}
	slot := int32(n.tick>>(lvl*slotBits)) & slotMask
	w.pushLocked(int32(lvl*slotCount)+slot, i, n)
	w.occupied[lvl] |= 1 << slot
}

func (w *Wheel[K]) pushLocked(id, i int32, n *node[K]) {
	l := &w.lists[id]
	n.list = id
	n.next = nilNode
	n.prev = l.tail
	if l.tail != nilNode {
		w.node(l.tail).next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (w *Wheel[K]) unlinkLocked(n *node[K]) {
	l := &w.lists[n.list]
	if n.prev != nilNode {
		w.node(n.prev).next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nilNode {
		w.node(n.next).prev = n.prev
	} else {
		l.tail = n.prev
	}
	if l.head != nilNode {
		return
	}
	if n.list < w.pending {
		w.occupied[n.list>>slotBits] &^= 1 << (n.list & slotMask)
	} else if n.list == w.ovf {
		w.overflowMin = math.MaxUint64
	}
}

func (w *Wheel[K]) node(i int32) *node[K] {
	return &w.chunks[i>>chunkBits][i&chunkMask]
}

func (w *Wheel[K]) allocLocked() int32 {
	if i := w.free; i != nilNode {
		w.free = w.node(i).next
		return i
	}
	if w.used == maxNodes {
		panic("BUG: scheduler: more than 2^31-1 pending timers")
	}
	if int(w.used)>>chunkBits == len(w.chunks) {
		w.chunks = append(w.chunks, new([chunkSize]node[K]))
	}
	i := w.used
	w.used++
	return i
}

// releaseLocked forgets an unlinked node's key and returns the node to the free list.
func (w *Wheel[K]) releaseLocked(i int32, n *node[K]) {
	pos := w.index.find(n.key, w.index.hash(n.key), w.chunks)
	if pos < 0 || w.index.slots[pos].node != i {
		panic("BUG: scheduler: pending node missing from the key index")
	}
	w.index.removeAt(pos)
	w.freeLocked(i, n)
}

// freeLocked returns a node already out of the index to the free list.
func (w *Wheel[K]) freeLocked(i int32, n *node[K]) {
	*n = node[K]{next: w.free} // drop the key so a pointerful K does not pin garbage
	w.free = i
}

// ceilTick rounds a deadline up to a tick, so a timer never fires before its deadline; deadlines at or
// before tick 0 map to 0, which is always due.
func (w *Wheel[K]) ceilTick(at time.Time) uint64 {
	d := at.Sub(w.origin)
	if d <= 0 {
		return 0
	}
	t := uint64(d / w.tick)
	if d%w.tick != 0 {
		t++
	}
	return t
}

// floorTick is the last tick boundary at or before now; false before the origin.
func (w *Wheel[K]) floorTick(now time.Time) (uint64, bool) {
	d := now.Sub(w.origin)
	if d < 0 {
		return 0, false
	}
	return uint64(d / w.tick), true
}

// tickTime is the instant of tick t, saturating for ticks past time.Duration's range.
func (w *Wheel[K]) tickTime(t uint64) time.Time {
	if t > uint64(math.MaxInt64/int64(w.tick)) {
		return w.origin.Add(math.MaxInt64)
	}
	return w.origin.Add(time.Duration(t) * w.tick)
}
