package raftstore

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestStateBlockCacheHoldsBlocksBesideFullMemtables guards the cache sizing: Pebble charges each
// memtable it allocates to the block cache, so a cache no larger than the memtables it must also
// account for keeps no blocks at all and every read of flushed data goes to disk (that was the case
// for the state DB until the capacity left room for its memtables).
func TestStateBlockCacheHoldsBlocksBesideFullMemtables(t *testing.T) {
	db, err := openPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	small := func(i int) []byte { return binary.BigEndian.AppendUint32([]byte("small/"), uint32(i)) }
	const n = 2000
	for i := range n {
		if err := db.Set(small(i), bytes.Repeat([]byte{'v'}, 100), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	// Pebble grows memtables by doubling up to MemTableSize; write until the mutable memtable has
	// reached its full size, which is what a node under load runs with.
	big := bytes.Repeat([]byte{'b'}, 1<<20)
	for i := 0; db.Metrics().MemTable.Size < stateMemTableSize; i++ {
		if i > 4*stateMemTableSize>>20 {
			t.Fatalf("memtable still %d bytes after %d MiB written", db.Metrics().MemTable.Size, i)
		}
		if err := db.Set(binary.BigEndian.AppendUint32([]byte("big/"), uint32(i)), big, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}

	read := func() {
		for i := 0; i < n; i += 10 {
			v, c, err := db.Get(small(i))
			if err != nil || len(v) != 100 {
				t.Fatalf("get %d: %v (%d bytes)", i, err, len(v))
			}
			c.Close()
		}
	}
	read()
	before := db.Metrics().BlockCache
	read() // the same blocks again: they must come from the cache now
	after := db.Metrics().BlockCache
	if after.Count == 0 || after.Hits-before.Hits == 0 || after.Misses != before.Misses {
		t.Fatalf("block cache not holding blocks beside a %d-byte memtable: before %+v, after %+v",
			db.Metrics().MemTable.Size, before, after)
	}
}
