package raftstore

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// keyFilter is an approximate, in-memory set of the idempotency index's keys ('I' pid key): "absent"
// is certain, "present" may be wrong (about 0.5% of absent keys). Nearly every publish carries a new
// key (the TCP client generates one per publish), and a point read of a key that is not in Pebble
// visits every memtable and every overlapping sstable; with the filter, such a publish reads
// nothing, both in the API's pre-check (Store.IdempotentEvent) and in the FSM's own check.
//
// It is a split-block Bloom filter (one 512-bit block per key, one bit in each of its eight words)
// made of segments: when one is full, a new one twice its size is added, so the filter grows with the
// store and a lookup costs one cache line per segment.
//
// Keys are added by the FSM goroutine while applying (before the batch commits) and by a builder
// goroutine that scans the keys stored before the filter existed; lookups come from any goroutine.
// Until the builder has finished, ready is false and callers must read Pebble. Keys are never
// removed (a project's deletion range-deletes its keys): a stale "present" only costs a read.
type keyFilter struct {
	seed  maphash.Seed
	ready atomic.Bool
	segs  atomic.Pointer[[]*bloomSegment] // copied on grow; the last one takes new keys

	mu sync.Mutex // serialises add (segment growth)
}

type bloomSegment struct {
	blocks [][8]atomic.Uint64
	n, cap int
}

const (
	filterBitsPerKey = 12
	filterFirstCap   = 1 << 16
	filterScanChunk  = 1 << 14 // keys read per view, so a restore never waits long for the builder
)

func newKeyFilter() *keyFilter {
	f := &keyFilter{seed: maphash.MakeSeed()}
	segs := []*bloomSegment{newBloomSegment(filterFirstCap)}
	f.segs.Store(&segs)
	return f
}

func newBloomSegment(capacity int) *bloomSegment {
	nb := max(1, capacity*filterBitsPerKey/512)
	return &bloomSegment{blocks: make([][8]atomic.Uint64, nb), cap: capacity}
}

// salts spread one 32-bit hash over the eight words of a block (the constants of Parquet's
// split-block Bloom filter).
var salts = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

func (s *bloomSegment) block(h uint64) *[8]atomic.Uint64 {
	hi, _ := bits.Mul64(h, uint64(len(s.blocks)))
	return &s.blocks[hi]
}

func (s *bloomSegment) set(h uint64) {
	b, lo := s.block(h), uint32(h)
	for i := range b {
		b[i].Or(1 << ((lo * salts[i]) >> 26))
	}
}

func (s *bloomSegment) has(h uint64) bool {
	b, lo := s.block(h), uint32(h)
	for i := range b {
		if b[i].Load()&(1<<((lo*salts[i])>>26)) == 0 {
			return false
		}
	}
	return true
}

func (f *keyFilter) hash(k []byte) uint64 { return maphash.Bytes(f.seed, k) }

// add records k (an 'I' key).
func (f *keyFilter) add(k []byte) {
	h := f.hash(k)
	f.mu.Lock()
	segs := *f.segs.Load()
	last := segs[len(segs)-1]
	if last.n >= last.cap {
		last = newBloomSegment(2 * last.cap)
		grown := append(segs[:len(segs):len(segs)], last)
		f.segs.Store(&grown)
	}
	last.n++
	last.set(h)
	f.mu.Unlock()
}

// absent reports whether k is certainly not stored. It is false until the filter is complete.
func (f *keyFilter) absent(k []byte) bool {
	if !f.ready.Load() {
		return false
	}
	h := f.hash(k)
	for _, s := range *f.segs.Load() {
		if s.has(h) {
			return false
		}
	}
	return true
}

// build adds every idempotency key stored in st, in chunks, then marks the filter ready. Keys
// committed after it starts are added by the FSM, which adds to this filter from before the first
// chunk is read. It stops early (leaving the filter not ready) when the DB closes or current no longer
// returns f (a snapshot restore replaced it).
func (f *keyFilter) build(st *stateDB, current func() *keyFilter) {
	lower := []byte{tagIdempotency}
	upper := []byte{tagIdempotency + 1}
	for {
		if current() != f {
			return
		}
		var next []byte
		done := false
		err := st.view(func(db *pebble.DB) error {
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
			if err != nil {
				return err
			}
			defer it.Close()
			n := 0
			ok := it.First()
			for ; ok && n < filterScanChunk; ok = it.Next() {
				f.add(it.Key())
				n++
			}
			if !ok {
				done = true
				return it.Error()
			}
			next = append([]byte(nil), it.Key()...)
			return nil
		})
		if err != nil {
			return
		}
		if done {
			f.ready.Store(true)
			return
		}
		lower = next
	}
}
