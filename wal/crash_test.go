package wal

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// TestCrash writes batches and takes a crash clone of the filesystem at a
// chosen WAL sync: the moment a commit's bytes are written but not yet
// durable. The clone keeps all synced data and a random share of the
// unsynced blocks. Reopening it must show:
//   - every batch, truncation and term whose call returned before the
//     crash, and possibly the one in flight;
//   - batches all or nothing: the log ends on a batch boundary;
//   - a contiguous log whose every entry decodes, CRC-valid, to exactly
//     what was written.
func TestCrash(t *testing.T) {
	const batch, rounds = 16, 100
	cases := []struct {
		seed     uint64
		unsynced int // CrashCloneCfg.UnsyncedDataPercent
	}{
		{1, 0}, {2, 0}, {3, 10}, {4, 30}, {5, 50}, {6, 50}, {7, 70}, {8, 90}, {9, 100}, {10, 100},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("seed=%d/unsynced=%d%%", c.seed, c.unsynced), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(c.seed, 0))
			mem := vfs.NewCrashableMem()
			var (
				acked     atomic.Uint64 // last index whose StoreLogs returned
				truncated atomic.Uint64 // highest max whose DeleteRange(1, max) returned
				term      atomic.Uint64 // last term whose SetUint64 returned
				issued    []uint64      // every truncation point, returned or not

				crashed                              *vfs.MemFS
				ackedBefore, truncBefore, termBefore uint64
			)
			fs := &syncHookFS{FS: mem, crashAt: 20 + rng.Int64N(160), crash: func() {
				ackedBefore, truncBefore, termBefore = acked.Load(), truncated.Load(), term.Load()
				crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: c.unsynced, RNG: rng})
			}}
			// A small memtable makes Pebble flush and compact while we
			// write, so the clone also catches sstables in progress.
			s, err := Open("wal", Options{FS: fs, Logger: quiet, MemTableSize: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			for k := uint64(0); k < rounds; k++ {
				mustStore(t, s, makeLogs(k*batch+1, batch, c.seed))
				acked.Store(k*batch + batch)
				if k%8 == 7 { // raft's compaction: drop a prefix
					max := (k - 4) * batch
					issued = append(issued, max)
					if err := s.DeleteRange(1, max); err != nil {
						t.Fatal(err)
					}
					truncated.Store(max)
				}
				if err := s.SetUint64([]byte("CurrentTerm"), k); err != nil {
					t.Fatal(err)
				}
				term.Store(k)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if crashed == nil {
				t.Fatalf("only %d WAL syncs, crash was set for sync %d", fs.syncs.Load(), fs.crashAt)
			}

			s, err = Open("wal", Options{FS: crashed, Logger: quiet})
			if err != nil {
				t.Fatalf("reopen after crash: %v", err)
			}
			defer s.Close()
			first, last := bounds(t, s)
			t.Logf("crash at WAL sync %d: acked %d truncated %d; recovered [%d,%d]", fs.crashAt, ackedBefore, truncBefore, first, last)
			if last < ackedBefore {
				t.Fatalf("acknowledged entries lost: last index %d < acked %d", last, ackedBefore)
			}
			if last > ackedBefore+batch {
				t.Fatalf("last index %d is past the batch in flight (acked %d)", last, ackedBefore)
			}
			if last%batch != 0 {
				t.Fatalf("half a batch survived: last index %d is not a multiple of %d", last, batch)
			}
			if first != 1 && !slices.Contains(issued, first-1) {
				t.Fatalf("first index %d matches no truncation %v", first, issued)
			}
			if first-1 < truncBefore {
				t.Fatalf("acknowledged truncation to %d lost: first index %d", truncBefore, first)
			}
			if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got < termBefore {
				t.Fatalf("CurrentTerm = %d, %v; acknowledged %d", got, err, termBefore)
			}

			// Contiguity on disk, not just the cached bounds.
			want := first
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logStart, UpperBound: logEnd})
			if err != nil {
				t.Fatal(err)
			}
			for ok := it.First(); ok; ok = it.Next() {
				if got := keyIndex(it.Key()); got != want {
					t.Fatalf("gap in the log: found index %d, want %d", got, want)
				}
				want++
			}
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
			if want != last+1 {
				t.Fatalf("iteration ended at %d, want %d", want-1, last)
			}

			// Every entry is complete and exactly what was written.
			for b0 := (first-1)/batch*batch + 1; b0 <= last; b0 += batch {
				for _, w := range makeLogs(b0, batch, c.seed) {
					if w.Index < first {
						continue
					}
					var got raft.Log
					if err := s.GetLog(w.Index, &got); err != nil {
						t.Fatalf("GetLog(%d): %v", w.Index, err)
					}
					equalLog(t, &got, w)
				}
			}
		})
	}
}

// syncHookFS calls crash once, just before the crashAt'th sync of a Pebble
// WAL file (*.log) reaches the filesystem: the written-but-not-durable
// moment a power cut would hit.
type syncHookFS struct {
	vfs.FS
	crashAt int64
	crash   func()
	syncs   atomic.Int64
}

func (fs *syncHookFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(name, f), err
}

func (fs *syncHookFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.wrap(newname, f), err
}

func (fs *syncHookFS) wrap(name string, f vfs.File) vfs.File {
	if f == nil || !strings.HasSuffix(name, ".log") {
		return f
	}
	return &syncHookFile{File: f, fs: fs}
}

func (fs *syncHookFS) beforeSync() {
	if fs.syncs.Add(1) == fs.crashAt {
		fs.crash()
	}
}

type syncHookFile struct {
	vfs.File
	fs *syncHookFS
}

func (f *syncHookFile) Sync() error {
	f.fs.beforeSync()
	return f.File.Sync()
}

func (f *syncHookFile) SyncData() error {
	f.fs.beforeSync()
	return f.File.SyncData()
}

func (f *syncHookFile) SyncTo(length int64) (bool, error) {
	f.fs.beforeSync()
	return f.File.SyncTo(length)
}
