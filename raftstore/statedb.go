package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// stateDB is the FSM's Pebble instance. Writes are not synced: the Raft log is the durable record and
// the state is synced (LogData with Sync) before a snapshot is reported complete, which is what lets
// raft truncate the log behind it. Restore swaps in a whole new directory.
type stateDB struct {
	dir string

	mu sync.RWMutex // guards db: readers hold RLock for the life of a read; restore swaps under Lock
	db *pebble.DB
}

const (
	restoreSuffix  = ".restore"
	oldSuffix      = ".old"
	restoreMarker  = "RESTORE-COMPLETE"
	stateDirPerm   = 0o755
	restoreBatchSz = 1 << 20
)

// stateCacheSize is the state DB's block cache: the blocks it keeps, on top of the memtables. Pebble's
// default (8 MiB) is smaller than the index and filter blocks of a store of a few million events, so a
// point read would go to the page cache, and checksum and decode the block again, for every level it
// visits. The cache is allocated as it fills, outside the Go heap.
const stateCacheSize = 64 << 20

// stateMemTableSize and stateMemTableStopWrites bound the state DB's memtables: a larger memtable than
// Pebble's 4 MiB absorbs bursts of small records (deliveries, indexes) before they become L0 files.
const (
	stateMemTableSize       = 64 << 20
	stateMemTableStopWrites = 2 // Pebble's default, spelled out because the cache size depends on it
)

// stateCacheCapacity is the capacity the block cache is created with. Pebble charges every memtable
// it allocates to the block cache (Cache.Reserve), so a cache the size of one memtable caches nothing
// once a full-size memtable exists: every read then went to disk for the filter, index and data
// block of each sstable it visited (40% of a delivery's CPU). The capacity leaves room for the most
// memtables Pebble keeps before it stops writes; the reservation allocates nothing.
const stateCacheCapacity = stateCacheSize + stateMemTableStopWrites*stateMemTableSize

// stateOptions are the state DB's Pebble options. The state DB has no write-ahead log of its own:
// the Raft log is its write-ahead log. Every apply batch carries the applied index with it, Pebble
// flushes memtables whole and in order, so after a crash the state is exactly the state at some
// applied index (the last flushed one), and raft replays the entries after it (FSM.ApplyBatch skips
// what the state already holds) — etcd's backend recovers the same way from its consistent index.
// The log keeps those entries: raft truncates it only behind a snapshot, and a snapshot is complete
// only once the memtables holding everything up to its index are flushed (fsmSnapshot.Persist).
// A WAL would write every state byte a second time (~3% of a delivery's CPU, measured in-process)
// to save a replay of at most one memtable's worth of entries after a crash.
func stateOptions() *pebble.Options {
	o := &pebble.Options{
		MemTableSize:                stateMemTableSize,
		MemTableStopWritesThreshold: stateMemTableStopWrites,
		Cache:                       pebble.NewCache(stateCacheCapacity),
		DisableWAL:                  true,
	}
	// Most point reads on the hot paths look up keys that do not exist: an idempotency key not seen
	// before, a delivery's event id that is only in the newest data. Without filters each such Get
	// searches every overlapping sstable's index and a data block, so reads slow down as the store
	// grows; a bloom filter per table (10 bits per key, ~1% false positives, ~1.2 bytes per key) answers
	// "not here" from a cached filter block. L1 and below inherit L0's filter.
	o.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	o.Levels[0].FilterType = pebble.TableFilter
	return o
}

// openPebble opens a state DB directory with stateOptions. The DB holds its own reference to the
// block cache, which is released with the DB.
func openPebble(dir string) (*pebble.DB, error) {
	o := stateOptions()
	defer o.Cache.Unref()
	return pebble.Open(dir, o)
}

// openStateDB opens (or creates) the state DB at dir, first finishing or undoing a restore that a
// crash interrupted.
func openStateDB(dir string) (*stateDB, error) {
	if err := recoverSwap(dir); err != nil {
		return nil, err
	}
	db, err := openPebble(dir)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open state db %s: %w", dir, err)
	}
	return &stateDB{dir: dir, db: db}, nil
}

// recoverSwap makes the directory layout whole after a crash during restore's rename sequence:
// state -> state.old, state.restore -> state, remove state.old.
func recoverSwap(dir string) error {
	restore, old := dir+restoreSuffix, dir+oldSuffix
	complete := fileExists(filepath.Join(restore, restoreMarker))
	switch {
	case !dirExists(dir) && complete:
		if err := os.Rename(restore, dir); err != nil {
			return fmt.Errorf("raftstore: finish interrupted restore of %s: %w", dir, err)
		}
	case !dirExists(dir) && dirExists(old):
		if err := os.Rename(old, dir); err != nil {
			return fmt.Errorf("raftstore: undo interrupted restore of %s: %w", dir, err)
		}
	}
	for _, p := range []string{restore, old} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("raftstore: clean %s: %w", p, err)
		}
	}
	return syncDir(filepath.Dir(dir))
}

func (s *stateDB) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// flush makes every write committed so far durable, waiting for it (a clean shutdown).
func (s *stateDB) flush() error {
	done, err := s.asyncFlush()
	if err != nil {
		return err
	}
	<-done
	return nil
}

// asyncFlush starts making every write committed so far durable; the channel closes when it is.
// Pebble retries a failed flush until it succeeds, so the channel closes unless the DB is closed
// first.
func (s *stateDB) asyncFlush() (<-chan struct{}, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	done, err := s.db.AsyncFlush()
	if err != nil {
		return nil, fmt.Errorf("raftstore: flush state db: %w", err)
	}
	return done, nil
}

// view runs fn with the current DB held against a concurrent restore.
func (s *stateDB) view(fn func(db *pebble.DB) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return fn(s.db)
}

// readApplied returns the applied index recorded in r (0 when none).
func readApplied(r pebble.Reader) (uint64, error) {
	v, closer, err := r.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raftstore: read applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: applied index has %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// restoreFrom builds a new DB from a snapshot stream in a side directory and swaps it in atomically:
// a crash at any point leaves either the old state or the complete new one (see recoverSwap).
func (s *stateDB) restoreFrom(r io.Reader) error {
	tmp := s.dir + restoreSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("raftstore: clear %s: %w", tmp, err)
	}
	ndb, err := openPebble(tmp)
	if err != nil {
		return fmt.Errorf("raftstore: open restore db %s: %w", tmp, err)
	}
	if err := readSnapshot(r, ndb); err != nil {
		ndb.Close()
		os.RemoveAll(tmp)
		return err
	}
	if err := ndb.Flush(); err != nil {
		ndb.Close()
		return fmt.Errorf("raftstore: flush restored state: %w", err)
	}
	if err := ndb.Close(); err != nil {
		return fmt.Errorf("raftstore: close restored state: %w", err)
	}
	if err := writeSynced(filepath.Join(tmp, restoreMarker)); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			return fmt.Errorf("raftstore: close state db for restore: %w", err)
		}
		s.db = nil
	}
	old := s.dir + oldSuffix
	if err := os.Rename(s.dir, old); err != nil {
		return fmt.Errorf("raftstore: move old state aside: %w", err)
	}
	if err := os.Rename(tmp, s.dir); err != nil {
		return fmt.Errorf("raftstore: move restored state in: %w", err)
	}
	if err := syncDir(filepath.Dir(s.dir)); err != nil {
		return err
	}
	os.Remove(filepath.Join(s.dir, restoreMarker))
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("raftstore: remove old state: %w", err)
	}
	db, err := openPebble(s.dir)
	if err != nil {
		return fmt.Errorf("raftstore: reopen restored state: %w", err)
	}
	s.db = db
	return nil
}

func writeSynced(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("raftstore: create %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("raftstore: sync %s: %w", path, err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raftstore: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raftstore: sync dir %s: %w", dir, err)
	}
	return nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// dbSize reports the state DB's on-disk size, for metrics.
func (s *stateDB) metrics() (diskBytes uint64, compactionDebt uint64) {
	s.view(func(db *pebble.DB) error {
		m := db.Metrics()
		diskBytes = m.DiskSpaceUsage()
		compactionDebt = m.Compact.EstimatedDebt
		return nil
	})
	return
}
