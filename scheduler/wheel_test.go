package scheduler

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/sluice-gw/sluice/internal/clock"
)

const ms = time.Millisecond

// start is deliberately not a multiple of any tick, so nothing relies on the origin being aligned.
var start = time.Date(2026, 11, 26, 12, 0, 0, 123_456_789, time.UTC)

// refWheel is the naive reference: a map from key to the tick at which it must fire, scanned and sorted
// on every advance.
type refWheel struct {
	tick  time.Duration
	now   uint64 // last processed tick
	due   map[string]uint64
	dueAt map[string]time.Time // the deadline as scheduled, to check "never early"
}

func newRef(tick time.Duration) *refWheel {
	return &refWheel{tick: tick, due: map[string]uint64{}, dueAt: map[string]time.Time{}}
}

// schedule records key's firing tick: its deadline rounded up to a tick, or the next step if that tick
// has already been processed.
func (r *refWheel) schedule(key string, at time.Time) {
	t := uint64(0)
	if d := at.Sub(start); d > 0 {
		t = uint64(d / r.tick)
		if d%r.tick != 0 {
			t++
		}
	}
	r.due[key] = max(t, r.now)
	r.dueAt[key] = at
}

func (r *refWheel) cancel(key string) bool {
	_, ok := r.due[key]
	delete(r.due, key)
	delete(r.dueAt, key)
	return ok
}

// advance returns the due keys sorted by (tick, key).
func (r *refWheel) advance(now time.Time) []string {
	if d := now.Sub(start); d >= 0 {
		r.now = max(r.now, uint64(d/r.tick))
	}
	var out []string
	for k, t := range r.due {
		if t <= r.now {
			out = append(out, k)
		}
	}
	r.sortByTick(out)
	for _, k := range out {
		delete(r.due, k)
		delete(r.dueAt, k)
	}
	return out
}

func (r *refWheel) sortByTick(keys []string) {
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(r.due[a], r.due[b]), cmp.Compare(a, b))
	})
}

// harness drives a wheel and the reference in lock step and checks every advance against it.
type harness struct {
	t   testing.TB
	w   *Wheel[string]
	ref *refWheel
	now time.Time // last advance target
	// high is the latest advance target: the wheel never moves back, so "early" is judged against it.
	high time.Time
}

func newHarness(t testing.TB, cfg Config) *harness {
	cfg.Clock = clock.NewFake(start)
	w := New[string](cfg, nil)
	return &harness{t: t, w: w, ref: newRef(w.tick), now: start, high: start}
}

func (h *harness) schedule(key string, at time.Time) {
	h.w.Schedule(key, at)
	h.ref.schedule(key, at)
}

func (h *harness) cancel(key string) bool {
	h.t.Helper()
	got, want := h.w.Cancel(key), h.ref.cancel(key)
	if got != want {
		h.t.Fatalf("Cancel(%q) = %v, reference %v", key, got, want)
	}
	return got
}

// advanceTo moves to now and checks that the wheel fired exactly what the reference says, in due-tick
// order, and nothing before its deadline. It returns the fired keys sorted by (due tick, key).
func (h *harness) advanceTo(now time.Time) []string {
	h.t.Helper()
	h.now = now
	if now.After(h.high) {
		h.high = now
	}
	dueAt := make(map[string]time.Time, len(h.ref.dueAt))
	ticks := make(map[string]uint64, len(h.ref.due))
	for k, v := range h.ref.dueAt {
		dueAt[k], ticks[k] = v, h.ref.due[k]
	}
	got := h.w.AdvanceTo(now)
	want := h.ref.advance(now)
	for i, k := range got {
		if at, ok := dueAt[k]; !ok {
			h.t.Fatalf("advance to %v: fired %q which was not pending", now.Sub(start), k)
		} else if at.After(h.high) {
			h.t.Fatalf("advance to %v: %q fired early (deadline %v)", now.Sub(start), k, at.Sub(start))
		}
		if i > 0 && ticks[got[i-1]] > ticks[k] {
			h.t.Fatalf("advance to %v: out of order: %q (tick %d) before %q (tick %d)", now.Sub(start),
				got[i-1], ticks[got[i-1]], k, ticks[k])
		}
	}
	sorted := slices.Clone(got)
	slices.SortFunc(sorted, func(a, b string) int {
		return cmp.Or(cmp.Compare(ticks[a], ticks[b]), cmp.Compare(a, b))
	})
	if !slices.Equal(sorted, want) {
		h.t.Fatalf("advance to %v: fired %v, reference %v", now.Sub(start), got, want)
	}
	got = sorted
	if got, want := h.w.Len(), len(h.ref.due); got != want {
		h.t.Fatalf("advance to %v: Len() = %d, reference %d", now.Sub(start), got, want)
	}
	h.check()
	return got
}

func (h *harness) check() {
	h.t.Helper()
	if err := h.w.checkInvariants(); err != nil {
		h.t.Fatal(err)
	}
}

// checkInvariants walks every list and verifies the links, the bitmaps, the index and that each node
// sits exactly where insertLocked would put it.
func (w *Wheel[K]) checkInvariants() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := 0
	for id := range int32(len(w.lists)) {
		l := w.lists[id]
		if id < w.pending {
			bit := w.occupied[id>>slotBits]&(1<<(id&slotMask)) != 0
			if bit != (l.head != nilNode) {
				return fmt.Errorf("slot %d: bitmap %v, head %d", id, bit, l.head)
			}
		}
		prev := nilNode
		for i := l.head; i != nilNode; i = w.node(i).next {
			n := w.node(i)
			seen++
			if n.prev != prev || n.list != id {
				return fmt.Errorf("list %d node %d: prev %d (want %d), list %d", id, i, n.prev, prev, n.list)
			}
			if j, ok := w.lookupLocked(n.key); !ok || j != i {
				return fmt.Errorf("list %d node %d: key %v indexed at %d, %v", id, i, n.key, j, ok)
			}
			if want := w.listFor(n.tick); want != id {
				return fmt.Errorf("node %v (tick %d, now %d) in list %d, want %d", n.key, n.tick, w.now, id, want)
			}
			if id == w.ovf && n.tick < w.overflowMin {
				return fmt.Errorf("overflow node tick %d below overflowMin %d", n.tick, w.overflowMin)
			}
			prev = i
		}
		if l.tail != prev {
			return fmt.Errorf("list %d: tail %d, want %d", id, l.tail, prev)
		}
	}
	if seen != w.index.len() {
		return fmt.Errorf("%d nodes linked, %d indexed", seen, w.index.len())
	}
	return w.index.check(w.chunks)
}

// check verifies the index's own invariants: n counts the occupied slots, each slot's hash is its
// node's key's, and no empty slot lies between an entry and its home slot (which would hide it).
func (x *keyIndex[K]) check(chunks []*[chunkSize]node[K]) error {
	occupied := 0
	mask := len(x.slots) - 1
	for i, s := range x.slots {
		if s.node == nilNode {
			continue
		}
		occupied++
		k := chunks[s.node>>chunkBits][s.node&chunkMask].key
		if h := x.hash(k); h != s.hash {
			return fmt.Errorf("index slot %d: hash %x, key %v hashes to %x", i, s.hash, k, h)
		}
		for j := int(s.hash) & mask; j != i; j = (j + 1) & mask {
			if x.slots[j].node == nilNode {
				return fmt.Errorf("index slot %d (key %v): empty slot %d between it and its home", i, k, j)
			}
		}
	}
	if occupied != x.n {
		return fmt.Errorf("index: %d slots occupied, n = %d", occupied, x.n)
	}
	return nil
}

// lookupLocked is the node index of key.
func (w *Wheel[K]) lookupLocked(key K) (int32, bool) {
	pos := w.index.find(key, w.index.hash(key), w.chunks)
	if pos < 0 {
		return nilNode, false
	}
	return w.index.slots[pos].node, true
}

// listFor is where a node due at tick belongs when it was inserted or cascaded at w.now. A pending
// node keeps its place while the wheel moves on, so any tick <= now maps to the pending list.
func (w *Wheel[K]) listFor(tick uint64) int32 {
	if tick <= w.now {
		return w.pending
	}
	lvl := (64 - int(clz(tick^w.now)) - 1) / slotBits
	if lvl >= w.levels {
		return w.ovf
	}
	return int32(lvl*slotCount) + int32(tick>>(lvl*slotBits))&slotMask
}

func clz(x uint64) uint {
	n := uint(0)
	for bit := uint64(1) << 63; bit != 0 && x&bit == 0; bit >>= 1 {
		n++
	}
	return n
}

// levelOf reports where key sits: a level, -1 for pending, w.levels for overflow, -2 if absent.
func (w *Wheel[K]) levelOf(key K) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, ok := w.lookupLocked(key)
	if !ok {
		return -2
	}
	switch id := w.node(i).list; id {
	case w.pending:
		return -1
	case w.ovf:
		return w.levels
	default:
		return int(id) / slotCount
	}
}

type step struct {
	op   string // "sched", "cancel", "adv"
	key  string
	at   time.Duration // offset from start
	want []string      // adv: keys fired, by due tick then key; cancel: {"true"} or {"false"}
}

func sched(key string, at time.Duration) step { return step{op: "sched", key: key, at: at} }
func cancel(key string, ok bool) step {
	return step{op: "cancel", key: key, want: []string{fmt.Sprint(ok)}}
}
func adv(at time.Duration, want ...string) step { return step{op: "adv", at: at, want: want} }

func TestScenarios(t *testing.T) {
	const (
		day  = 24 * time.Hour
		week = 7 * day
	)
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"fire order across slots and levels", Config{}, []step{
			sched("c", 5*time.Second), sched("a", 3*ms), sched("b", 70*ms), sched("d", 10*time.Hour),
			adv(10*time.Hour, "a", "b", "c", "d"),
		}},
		{"exact tick boundaries", Config{}, []step{
			sched("on", 2*ms), sched("just-after", 2*ms+1), sched("just-before", 2*ms-1),
			adv(2*ms - 1),
			adv(2*ms, "just-before", "on"),
			adv(3*ms - 1),
			adv(3*ms, "just-after"),
		}},
		{"coarse tick rounds up, never down", Config{Tick: 10 * ms}, []step{
			sched("a", 1*ms), sched("b", 10*ms), sched("c", 11*ms),
			adv(9 * ms),
			adv(10*ms, "a", "b"),
			adv(19 * ms),
			adv(20*ms, "c"),
		}},
		{"re-schedule replaces, never duplicates", Config{}, []step{
			sched("a", 10*ms), sched("a", 50*ms), sched("b", 20*ms), sched("b", 5*ms),
			adv(10*ms, "b"),
			adv(49 * ms),
			adv(50*ms, "a"),
			adv(time.Hour),
		}},
		{"re-schedule across levels and back", Config{}, []step{
			sched("a", time.Hour), sched("a", 3*ms), sched("a", 3*week), sched("a", 7*ms),
			adv(7*ms, "a"),
			adv(4 * week),
		}},
		{"cancel", Config{}, []step{
			sched("a", 10*ms), sched("b", 10*ms), sched("c", time.Hour),
			cancel("a", true), cancel("a", false), cancel("nope", false), cancel("c", true),
			adv(2*time.Hour, "b"),
			cancel("b", false),
		}},
		{"cancel then schedule again", Config{}, []step{
			sched("a", 10*ms), cancel("a", true), sched("a", 20*ms),
			adv(10 * ms),
			adv(20*ms, "a"),
		}},
		{"past and current-tick times fire on the next advance", Config{}, []step{
			adv(100 * ms),
			sched("past", 50*ms), sched("long-ago", -time.Hour), sched("now", 100*ms),
			adv(100*ms, "long-ago", "now", "past"),
			sched("before-origin", -1),
			adv(90*ms, "before-origin"), // a backwards advance still fires what is already due
			sched("next-tick", 100*ms+1),
			adv(100*ms + 999_999),
			adv(101*ms, "next-tick"),
		}},
		{"far future: retries hours, days and weeks apart", Config{}, []step{
			sched("10h", 10*time.Hour), sched("3d", 3*day), sched("2w", 2*week), sched("9w", 9*week),
			adv(10*time.Hour - 1),
			adv(10*time.Hour, "10h"),
			adv(3*day - 1),
			adv(3*day, "3d"),
			adv(2*week - 1),
			adv(2*week, "2w"),
			adv(9*week - 1),
			adv(9*week, "9w"),
		}},
		{"beyond the top level goes through overflow", Config{}, []step{
			sched("3y", 3*365*day), sched("5y", 5*365*day), sched("1s", time.Second),
			adv(time.Second, "1s"),
			adv(3*365*day - 1),
			adv(3*365*day, "3y"),
			adv(5*365*day - 1),
			adv(5*365*day, "5y"),
		}},
		{"tiny wheel: overflow every 64 ticks", Config{Levels: 1}, []step{
			sched("a", 63*ms), sched("b", 64*ms), sched("c", 200*ms), sched("d", 1000*ms),
			cancel("c", true),
			adv(63*ms, "a"),
			adv(64*ms, "b"),
			adv(999 * ms),
			adv(1000*ms, "d"),
		}},
		{"one big advance returns everything in order", Config{Levels: 2}, []step{
			sched("e", 5000*ms), sched("a", 1*ms), sched("d", 4096*ms), sched("c", 64*ms),
			sched("b", 63*ms),
			adv(time.Hour, "a", "b", "c", "d", "e"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			for i, s := range tt.steps {
				switch s.op {
				case "sched":
					h.schedule(s.key, start.Add(s.at))
				case "cancel":
					if got := fmt.Sprint(h.cancel(s.key)); got != s.want[0] {
						t.Fatalf("step %d: Cancel(%q) = %s, want %s", i, s.key, got, s.want[0])
					}
				case "adv":
					if got := h.advanceTo(start.Add(s.at)); !slices.Equal(got, s.want) {
						t.Fatalf("step %d: advance to %v fired %v, want %v", i, s.at, got, s.want)
					}
				}
				h.check()
			}
		})
	}
}

func TestManyKeysInOneSlot(t *testing.T) {
	h := newHarness(t, Config{})
	const n = 10_000
	for i := range n {
		// Half land on the same tick directly, half cascade into it from level 2.
		h.schedule(fmt.Sprintf("k%05d", i), start.Add(time.Duration(i%2)*ms+5*time.Minute))
	}
	if got := h.advanceTo(start.Add(5*time.Minute - ms)); len(got) != 0 {
		t.Fatalf("fired %d keys early", len(got))
	}
	if got := h.advanceTo(start.Add(5*time.Minute + ms)); len(got) != n {
		t.Fatalf("fired %d keys, want %d", len(got), n)
	}
	if h.w.Len() != 0 {
		t.Fatalf("Len() = %d after firing everything", h.w.Len())
	}
}

// TestCascadeThroughEveryLevel follows one timer whose due tick has a non-zero digit at every level, so
// it must visit the overflow list and then each level from the top down before firing.
func TestCascadeThroughEveryLevel(t *testing.T) {
	for _, levels := range []int{1, 2, 4, 6} {
		t.Run(fmt.Sprint("levels=", levels), func(t *testing.T) {
			h := newHarness(t, Config{Levels: levels})
			var tick uint64 = 1 << (levels * slotBits) // first tick of the second top-level rotation
			for l := range levels {
				tick |= 1 << (l * slotBits)
			}
			h.schedule("k", start.Add(time.Duration(tick)*ms))
			h.schedule("early", start.Add(3*ms))
			var path []int
			for h.w.Len() > 0 {
				path = append(path, h.w.levelOf("k"))
				h.w.mu.Lock()
				next, _, ok := h.w.nextEventLocked()
				h.w.mu.Unlock()
				if !ok {
					t.Fatal("no next event with timers pending")
				}
				h.advanceTo(h.w.tickTime(next))
			}
			want := []int{levels}
			for l := levels - 1; l >= 0; l-- {
				want = append(want, l)
			}
			if path[0] != levels || path[1] != levels { // "early" fires first, k still in overflow
				t.Fatalf("path %v, want overflow first", path)
			}
			if path = slices.Compact(path); !slices.Equal(path, want) {
				t.Fatalf("k visited %v, want %v", path, want)
			}
			if h.w.now != tick {
				t.Fatalf("fired at tick %d, want %d", h.w.now, tick)
			}
		})
	}
}

// TestProperty runs random schedule/cancel/advance sequences against the naive reference: the same
// keys must fire in the same advance, in due-tick order, never early, and the structure must stay
// consistent after every operation.
func TestProperty(t *testing.T) {
	configs := []Config{
		{},
		{Levels: 1},
		{Levels: 2},
		{Levels: 3, Tick: 7 * ms},
		{Tick: time.Microsecond},
		{Tick: time.Second, Levels: 4},
	}
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for ci, cfg := range configs {
		for seed := range seeds {
			t.Run(fmt.Sprintf("cfg%d/seed%d", ci, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(ci), uint64(seed)))
				h := newHarness(t, cfg)
				const year = 365 * 24 * time.Hour
				span := func() time.Duration {
					// Offsets from the current time over every scale the wheel has: past, sub-tick,
					// each level, and beyond the top level; capped so that every time stays well
					// inside time.Duration's ~292 years from the origin.
					scale := 50 * year
					if shift := slotBits * rng.IntN(h.w.levels+2); shift < 62-bits.Len64(uint64(h.w.tick)) {
						scale = min(scale, h.w.tick<<shift)
					}
					return time.Duration(rng.Int64N(int64(scale))) - scale/8
				}
				step := func(d time.Duration) time.Time { // the clock never goes past 100 years
					if limit := start.Add(100 * year); h.now.Add(d).After(limit) {
						return limit
					}
					return h.now.Add(d)
				}
				for range 2000 {
					key := fmt.Sprint("k", rng.IntN(300))
					switch r := rng.IntN(100); {
					case r < 55:
						h.schedule(key, h.now.Add(span()))
					case r < 70:
						h.cancel(key)
					case r < 75:
						h.advanceTo(h.now) // a zero step still fires what was scheduled in the past
					case r < 85:
						h.advanceTo(step(time.Duration(rng.Int64N(int64(4 * h.w.tick)))))
					default:
						h.advanceTo(step(span()))
					}
					h.check()
				}
				// Drain: everything left fires, none lost.
				h.advanceTo(start.Add(200 * year))
				if n := h.w.Len(); n != 0 {
					t.Fatalf("%d timers left after draining", n)
				}
			})
		}
	}
}

func TestNodeReuse(t *testing.T) {
	w := New[int](Config{Clock: clock.NewFake(start)}, nil)
	for round := range 5 {
		for i := range 3000 {
			w.Schedule(i, start.Add(time.Duration(round*10+i%7)*ms))
		}
		for i := range 1000 {
			w.Cancel(i)
		}
		if got := len(w.AdvanceTo(start.Add(time.Duration(round*10+10) * ms))); got != 2000 {
			t.Fatalf("round %d: fired %d, want 2000", round, got)
		}
	}
	if w.used-1 != 3000 {
		t.Fatalf("slab handed out %d nodes for at most 3000 live timers", w.used-1)
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	for _, c := range []Config{{Tick: -1}, {Levels: -1}, {Levels: MaxLevels + 1}, {SizeHint: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", c)
		}
	}
	w := New[int](Config{Tick: -5, Levels: 99}, nil)
	if w.tick != DefaultTick || w.levels != DefaultLevels {
		t.Fatalf("invalid fields not defaulted: tick %v levels %d", w.tick, w.levels)
	}
	if _, ok := w.clk.(clock.Real); !ok {
		t.Fatalf("nil Clock not defaulted to clock.Real: %T", w.clk)
	}
	// A deadline beyond time.Duration's range from the origin must not wrap around into the past.
	w = New[int](Config{Clock: clock.NewFake(start)}, nil)
	w.Schedule(1, start.Add(math.MaxInt64).Add(math.MaxInt64))
	if got := w.AdvanceTo(start.Add(200 * 365 * 24 * time.Hour)); len(got) != 0 {
		t.Fatalf("far deadline fired early: %v", got)
	}
	if w.tickTime(math.MaxUint64).Before(start) {
		t.Fatal("tickTime wrapped")
	}
}

// The doc promises a 32-byte node for an 8-byte key; keep it honest.
func TestNodeSize(t *testing.T) {
	if got := unsafe.Sizeof(node[uint64]{}); got != 32 {
		t.Fatalf("node[uint64] is %d bytes, want 32", got)
	}
}

// A 16-byte id plus a uint32 (the dispatcher's DueKey) packs against the links: 40 bytes, not 48.
func TestNodeSizeIDKey(t *testing.T) {
	type idKey struct {
		id   [16]byte
		lane uint32
	}
	if got := unsafe.Sizeof(node[idKey]{}); got != 40 {
		t.Fatalf("node[idKey] is %d bytes, want 40", got)
	}
}

// TestIndexChurn drives the key index through growth, long probe runs and backward-shift deletions
// (including across the end of the table) against a map, checking its invariants as it goes.
func TestIndexChurn(t *testing.T) {
	for _, keys := range []int{10, 100, 5000} {
		t.Run(fmt.Sprint(keys), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(keys), 1))
			w := New[uint64](Config{Clock: clock.NewFake(start)}, nil)
			ref := map[uint64]bool{}
			for op := range 40000 {
				k := uint64(rng.IntN(keys))
				if rng.IntN(3) == 0 {
					if got := w.Cancel(k); got != ref[k] {
						t.Fatalf("op %d: Cancel(%d) = %v, want %v", op, k, got, ref[k])
					}
					delete(ref, k)
				} else {
					w.Schedule(k, start.Add(time.Hour))
					ref[k] = true
				}
				if op%997 == 0 || keys <= 100 && op%13 == 0 {
					if err := w.checkInvariants(); err != nil {
						t.Fatalf("op %d: %v", op, err)
					}
				}
			}
			if w.Len() != len(ref) {
				t.Fatalf("Len %d, want %d", w.Len(), len(ref))
			}
			for k := range ref {
				if !w.Cancel(k) {
					t.Fatalf("key %d lost", k)
				}
			}
			if w.Len() != 0 || w.index.n != 0 {
				t.Fatalf("Len %d, index %d after cancelling all", w.Len(), w.index.n)
			}
		})
	}
}

func TestClear(t *testing.T) {
	w := New[int](Config{Clock: clock.NewFake(start)}, nil)
	for i := range 3000 {
		w.Schedule(i, start.Add(time.Duration(i)*time.Second))
	}
	w.Clear()
	if n := w.Len(); n != 0 {
		t.Fatalf("Len %d after Clear", n)
	}
	if got := w.AdvanceTo(start.Add(24 * time.Hour)); len(got) != 0 {
		t.Fatalf("%d keys fired after Clear", len(got))
	}
	// The wheel works as new afterwards, from the time it had reached.
	w.Schedule(7, start.Add(25*time.Hour))
	w.Schedule(8, start) // in the past: due at the next step
	if got := w.AdvanceTo(start.Add(24 * time.Hour)); len(got) != 1 || got[0] != 8 {
		t.Fatalf("fired %v, want [8]", got)
	}
	if got := w.AdvanceTo(start.Add(25 * time.Hour)); len(got) != 1 || got[0] != 7 {
		t.Fatalf("fired %v, want [7]", got)
	}
	if err := w.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}
