package scheduler

import "hash/maphash"

// keyIndex maps a key to its node's slab index. It is an open-addressing hash table with linear
// probing whose slots hold only a 32-bit hash and the node index (8 bytes, no pointers); the key itself
// is read from the node. A map[K]int32 stores a copy of every key plus its own control bytes and
// headroom, which for a 20-byte key is ~55 bytes per timer against this table's 11-21 (load 3/8 to 3/4).
// Deletion shifts later entries back (no tombstones), so lookups never slow down as timers churn.
//
// It is not safe for concurrent use: the wheel's mutex guards it.
type keyIndex[K comparable] struct {
	seed  maphash.Seed
	slots []slot // len is a power of two, or 0
	n     int    // occupied slots
}

type slot struct {
	hash uint32 // low 32 bits of the key's hash; home slot is hash & mask
	node int32  // nilNode when empty
}

const minIndexSlots = 64

func newKeyIndex[K comparable](hint int) keyIndex[K] {
	x := keyIndex[K]{seed: maphash.MakeSeed()}
	if hint > 0 {
		x.slots = make([]slot, slotsFor(hint))
	}
	return x
}

// slotsFor is the smallest power of two that holds n entries at a load of at most 3/4.
func slotsFor(n int) int {
	s := minIndexSlots
	for s/4*3 < n {
		s <<= 1
	}
	return s
}

func (x *keyIndex[K]) hash(k K) uint32 { return uint32(maphash.Comparable(x.seed, k)) }

// find returns the slot holding key (whose hash is h), or -1; chunks is the wheel's node slab.
func (x *keyIndex[K]) find(k K, h uint32, chunks []*[chunkSize]node[K]) int {
	if len(x.slots) == 0 {
		return -1
	}
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s.node == nilNode {
			return -1
		}
		if s.hash == h && chunks[s.node>>chunkBits][s.node&chunkMask].key == k {
			return i
		}
	}
}

// insert adds a key known to be absent, with hash h, for node.
func (x *keyIndex[K]) insert(h uint32, node int32) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	mask := len(x.slots) - 1
	i := int(h) & mask
	for x.slots[i].node != nilNode {
		i = (i + 1) & mask
	}
	x.slots[i] = slot{hash: h, node: node}
	x.n++
}

func (x *keyIndex[K]) grow() {
	old := x.slots
	x.slots = make([]slot, max(minIndexSlots, 2*len(old)))
	mask := len(x.slots) - 1
	for _, s := range old {
		if s.node == nilNode {
			continue
		}
		i := int(s.hash) & mask
		for x.slots[i].node != nilNode {
			i = (i + 1) & mask
		}
		x.slots[i] = s
	}
}

// removeAt empties slot i and shifts back the entries after it that probed past it (backward-shift
// deletion keeps every entry reachable from its home slot without tombstones).
func (x *keyIndex[K]) removeAt(i int) {
	mask := len(x.slots) - 1
	x.n--
	for {
		x.slots[i] = slot{}
		j := i
		for {
			j = (j + 1) & mask
			s := x.slots[j]
			if s.node == nilNode {
				return
			}
			home := int(s.hash) & mask
			// s may move to i only if its home is not cyclically within (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				x.slots[i] = s
				i = j
				break
			}
		}
	}
}

func (x *keyIndex[K]) len() int { return x.n }

// reset forgets every entry and frees the table.
func (x *keyIndex[K]) reset() {
	x.slots = nil
	x.n = 0
}
