package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.StableStore       = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
)

var (
	// ErrCorrupt is returned, wrapped with the index, when a stored entry
	// fails its checksum or cannot be decoded.
	ErrCorrupt = errors.New("wal: corrupt entry")
	// ErrCorruptStable is returned, wrapped with the key, when a stable
	// uint64 does not have 8 bytes.
	ErrCorruptStable = errors.New("wal: corrupt stable value")
	// ErrUnsupportedVersion is returned, wrapped with the version and the
	// index, for a record written by a newer format: it is intact, just not
	// ours to read, so it is not ErrCorrupt.
	ErrUnsupportedVersion = errors.New("wal: unsupported record version")
	// ErrNotContiguous is returned by StoreLogs when the entries do not
	// continue the log at LastIndex+1 one by one. IsMonotonic promises raft
	// that the log has no gaps, and this is what keeps that promise.
	ErrNotContiguous = errors.New("wal: non-contiguous log index")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("wal: store closed")
	// ErrKeyNotFound is returned by Get for a missing key. Its text has no
	// "wal:" prefix on purpose and it is never wrapped: raft compares
	// err.Error() with "not found" (raft.go requestVote, api.go
	// HasExistingState), exactly what raft.InmemStore and raft-boltdb return.
	ErrKeyNotFound = errors.New("not found")
)

// Key layout: one prefix byte per keyspace. Log keys are followed by the
// 8-byte big-endian index, so Pebble's byte order is index order.
const (
	prefixLog    = 'l'
	prefixStable = 's' // Set/Get: raw bytes
	prefixUint64 = 'u' // SetUint64/GetUint64: 8-byte big-endian
)

// logStart and logEnd bound the log keyspace for iterators and for
// DeleteRange(min, math.MaxUint64).
var (
	logStart = []byte{prefixLog}
	logEnd   = []byte{prefixLog + 1}
)

func logKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixLog}, index)
}

func stableKey(prefix byte, key []byte) []byte {
	return append([]byte{prefix}, key...)
}

// Defaults for Options fields left zero. See doc.go for why.
const (
	DefaultMemTableSize = 16 << 20
	DefaultCacheSize    = 8 << 20

	// flushDelayDeleteRange bounds how long a truncated prefix keeps its
	// disk space: Pebble reclaims it only once the range tombstone is
	// flushed, which a quiet log might otherwise not do for hours.
	flushDelayDeleteRange = 10 * time.Second
)

// Options configures Open. The zero value is valid: every zero field means
// its documented default.
type Options struct {
	// FS is the filesystem Pebble uses. nil means vfs.Default; tests pass
	// vfs.NewCrashableMem().
	FS vfs.FS
	// Logger receives Pebble's messages and the store's own. nil means
	// slog.Default().
	Logger *slog.Logger
	// Compression is the codec for new entries' Data. Zero means S2.
	Compression Compression
	// MemTableSize is Pebble's memtable size in bytes. Zero means
	// DefaultMemTableSize (16 MiB).
	MemTableSize uint64
	// CacheSize is how many bytes of blocks Pebble's block cache keeps.
	// Zero means DefaultCacheSize (8 MiB, Pebble's own default). The cache
	// is created larger by the memtables' worth Pebble charges to it (see
	// cacheCapacity).
	CacheSize int64
}

// Stats is a snapshot of the store's counters. Counters start at zero at
// Open; FirstIndex and LastIndex are the current log bounds.
type Stats struct {
	FirstIndex, LastIndex uint64
	// Syncs counts synced Pebble commits: one per StoreLogs, StoreLog, Set,
	// SetUint64 and DeleteRange call that had something to write.
	Syncs uint64
	// Entries counts log entries written.
	Entries uint64
	// Compressed counts entries whose Data was stored compressed; the rest
	// were too small or did not shrink and were stored raw.
	Compressed uint64
	// BytesIn is the total size of Data given to StoreLogs.
	BytesIn uint64
	// BytesStored is the total size of that Data as stored (compressed or
	// raw), excluding record headers.
	BytesStored uint64
}

// CompressionRatio is BytesIn / BytesStored, or 0 before any write.
func (s Stats) CompressionRatio() float64 {
	if s.BytesStored == 0 {
		return 0
	}
	return float64(s.BytesIn) / float64(s.BytesStored)
}

// Store is a raft.LogStore, raft.StableStore and raft.MonotonicLogStore on
// its own Pebble instance.
// It is safe for concurrent use. Every mutating call is one synced Pebble
// batch and returns only once that batch is durable.
type Store struct {
	db     *pebble.DB
	log    *slog.Logger
	codec  Compression
	closed atomic.Bool

	// writeMu serializes log mutations (StoreLogs, DeleteRange) across the
	// commit and the update of the cached bounds, so the bounds change in
	// the order the batches became durable. Readers never take it, so
	// FirstIndex and LastIndex do not wait behind an fsync.
	writeMu sync.Mutex

	// mu guards the cached log bounds. 0,0 means the log is empty.
	mu          sync.Mutex
	first, last uint64

	syncs, entries, compressed, bytesIn, bytesStored atomic.Uint64
}

// Open opens or creates the store in dir and loads the log bounds.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Compression > CompressionZstd {
		return nil, fmt.Errorf("wal: open %s: unknown %v", dir, opts.Compression)
	}
	s := &Store{log: opts.Logger, codec: opts.Compression}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "wal", "dir", dir)
	po := pebbleOptions(opts, s.log)
	db, err := pebble.Open(dir, po)
	po.Cache.Unref() // the DB holds its own reference
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	s.db = db
	first, last, err := s.scanBounds()
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.first, s.last = first, last
	s.log.Debug("opened", "first_index", first, "last_index", last)
	return s, nil
}

// memTableStopWrites is Pebble's MemTableStopWritesThreshold for the log.
const memTableStopWrites = 4

// cacheCapacity is the block cache's capacity for blocks bytes of blocks.
// Pebble charges every memtable it allocates to the block cache
// (Cache.Reserve), so a cache smaller than the memtables keeps no block at
// all once they are full size. The charge allocates nothing.
func cacheCapacity(blocks int64, memTableSize uint64) int64 {
	return blocks + memTableStopWrites*int64(memTableSize)
}

// pebbleOptions tunes Pebble for a write-heavy, always-synced log whose
// values are already compressed. doc.go explains each choice.
func pebbleOptions(opts Options, log *slog.Logger) *pebble.Options {
	po := &pebble.Options{
		FS:                          opts.FS,
		FormatMajorVersion:          pebble.FormatValueSeparation,
		MemTableSize:                opts.MemTableSize,
		MemTableStopWritesThreshold: memTableStopWrites,
		FlushDelayDeleteRange:       flushDelayDeleteRange,
		Logger:                      slogAdapter{log},
	}
	if po.FS == nil {
		po.FS = vfs.Default
	}
	if po.MemTableSize == 0 {
		po.MemTableSize = DefaultMemTableSize
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	po.Cache = pebble.NewCache(cacheCapacity(opts.CacheSize, po.MemTableSize))
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings {
		return pebble.DBCompressionNone
	})
	return po
}

// Close closes Pebble. It must not run concurrently with other calls.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return ErrClosed
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

// IsMonotonic implements raft.MonotonicLogStore: StoreLogs refuses gaps,
// so raft must clear the log after restoring a snapshot rather than rely on
// a gap, and DeleteRange of everything is one range tombstone.
func (s *Store) IsMonotonic() bool { return true }

// Stats returns the current counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	first, last := s.first, s.last
	s.mu.Unlock()
	return Stats{
		FirstIndex:  first,
		LastIndex:   last,
		Syncs:       s.syncs.Load(),
		Entries:     s.entries.Load(),
		Compressed:  s.compressed.Load(),
		BytesIn:     s.bytesIn.Load(),
		BytesStored: s.bytesStored.Load(),
	}
}

// FirstIndex returns the lowest index in the log, 0 when empty.
func (s *Store) FirstIndex() (uint64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex returns the highest index in the log, 0 when empty.
func (s *Store) LastIndex() (uint64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog reads the entry at index into l. A missing index returns
// raft.ErrLogNotFound unwrapped (raft compares it with ==); a damaged one
// returns ErrCorrupt wrapped with the index and the cause.
func (s *Store) GetLog(index uint64, l *raft.Log) error {
	if s.closed.Load() {
		return ErrClosed
	}
	val, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("wal: get log %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeRecord(val, index, l); err != nil {
		if errors.Is(err, ErrUnsupportedVersion) {
			return fmt.Errorf("%w at index %d", err, index)
		}
		return fmt.Errorf("%w at index %d: %w", ErrCorrupt, index, err)
	}
	return nil
}

// StoreLog appends one entry; see StoreLogs.
func (s *Store) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs appends logs in one synced batch: when it returns nil every
// entry is durable, and after a crash either all of them or none are
// there. The entries must have consecutive indexes starting at
// LastIndex+1 (any start when the log is empty).
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("%w: index %d follows %d in the batch", ErrNotContiguous, logs[i].Index, logs[i-1].Index)
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	var rec, scratch []byte
	var in, stored, compressed uint64
	for _, l := range logs {
		var payload []byte
		var tag byte
		payload, tag, scratch = compress(s.codec, l.Data, scratch)
		if tag != tagRaw {
			compressed++
		}
		in += uint64(len(l.Data))
		stored += uint64(len(payload))
		rec = appendRecord(rec[:0], l, payload, tag)
		// Set copies rec into the batch, so both buffers are reused.
		if err := b.Set(logKey(l.Index), rec, nil); err != nil {
			return fmt.Errorf("wal: batch log %d: %w", l.Index, err)
		}
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	lo, hi := logs[0].Index, logs[len(logs)-1].Index
	if last != 0 && lo != last+1 {
		return fmt.Errorf("%w: index %d does not follow last index %d", ErrNotContiguous, lo, last)
	}
	if err := s.commit(b); err != nil {
		return fmt.Errorf("wal: store logs %d-%d: %w", lo, hi, err)
	}
	s.mu.Lock()
	if s.first == 0 {
		s.first = lo
	}
	s.last = hi
	s.mu.Unlock()
	s.entries.Add(uint64(len(logs)))
	s.compressed.Add(compressed)
	s.bytesIn.Add(in)
	s.bytesStored.Add(stored)
	return nil
}

// DeleteRange deletes the entries from min to max inclusive as one range
// tombstone, so deleting the whole log costs the same as deleting one
// entry. min > max is a no-op.
func (s *Store) DeleteRange(min, max uint64) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if min > max {
		return nil
	}
	end := logEnd
	if max < math.MaxUint64 {
		end = logKey(max + 1)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(logKey(min), end, nil); err != nil {
		return fmt.Errorf("wal: batch delete %d-%d: %w", min, max, err)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.commit(b); err != nil {
		return fmt.Errorf("wal: delete range %d-%d: %w", min, max, err)
	}
	// Seek rather than compute: the bounds then equal what Open would find,
	// whatever range was deleted. Range tombstones make the seek cheap.
	first, last, err := s.scanBounds()
	if err != nil {
		return fmt.Errorf("wal: delete range %d-%d: %w", min, max, err)
	}
	s.mu.Lock()
	s.first, s.last = first, last
	s.mu.Unlock()
	return nil
}

// Set stores val under key. As in raft.InmemStore, a nil val reads back as
// missing, while an empty non-nil val reads back as empty.
func (s *Store) Set(key, val []byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	b := s.db.NewBatch()
	defer b.Close()
	k := stableKey(prefixStable, key)
	var err error
	if val == nil {
		err = b.Delete(k, nil)
	} else {
		err = b.Set(k, val, nil)
	}
	if err == nil {
		err = s.commit(b)
	}
	if err != nil {
		return fmt.Errorf("wal: set %q: %w", key, err)
	}
	return nil
}

// Get returns the value stored by Set, or ErrKeyNotFound. Values set with
// SetUint64 live in another keyspace and are not visible here, as in
// raft.InmemStore.
func (s *Store) Get(key []byte) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	val, closer, err := s.db.Get(stableKey(prefixStable, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("wal: get %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte{}, val...), nil
}

// SetUint64 stores val under key in the uint64 keyspace.
func (s *Store) SetUint64(key []byte, val uint64) error {
	if s.closed.Load() {
		return ErrClosed
	}
	b := s.db.NewBatch()
	defer b.Close()
	err := b.Set(stableKey(prefixUint64, key), binary.BigEndian.AppendUint64(nil, val), nil)
	if err == nil {
		err = s.commit(b)
	}
	if err != nil {
		return fmt.Errorf("wal: set uint64 %q: %w", key, err)
	}
	return nil
}

// GetUint64 returns the value stored by SetUint64, or 0 and no error for a
// missing key, as raft.InmemStore does.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	val, closer, err := s.db.Get(stableKey(prefixUint64, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: get uint64 %q: %w", key, err)
	}
	defer closer.Close()
	if len(val) != 8 {
		return 0, fmt.Errorf("%w for key %q: %d bytes", ErrCorruptStable, key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

// commit applies b with pebble.Sync, the only write mode this package uses.
func (s *Store) commit(b *pebble.Batch) error {
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	s.syncs.Add(1)
	return nil
}

// scanBounds seeks to the lowest and highest log keys.
func (s *Store) scanBounds() (first, last uint64, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logStart, UpperBound: logEnd})
	if err != nil {
		return 0, 0, fmt.Errorf("wal: scan log bounds: %w", err)
	}
	defer it.Close()
	if it.First() {
		first = keyIndex(it.Key())
		if !it.Last() {
			return 0, 0, fmt.Errorf("BUG: wal: log has a first key but no last key")
		}
		last = keyIndex(it.Key())
	}
	if err := it.Error(); err != nil {
		return 0, 0, fmt.Errorf("wal: scan log bounds: %w", err)
	}
	return first, last, nil
}

// keyIndex decodes a log key. Only this package writes the log keyspace,
// so a key of the wrong length is a programming error.
func keyIndex(k []byte) uint64 {
	if len(k) != 9 || k[0] != prefixLog {
		panic(fmt.Sprintf("BUG: wal: malformed log key %x", k))
	}
	return binary.BigEndian.Uint64(k[1:])
}

// slogAdapter routes Pebble's logger to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Infof(format string, args ...any) {
	a.l.Info(fmt.Sprintf(format, args...), "lib", "pebble")
}

func (a slogAdapter) Errorf(format string, args ...any) {
	a.l.Error(fmt.Sprintf(format, args...), "lib", "pebble")
}

// Fatalf must not return (pebble's contract): log through slog, then let
// Pebble's default logger print and exit as it would without us.
func (a slogAdapter) Fatalf(format string, args ...any) {
	a.l.Error(fmt.Sprintf(format, args...), "lib", "pebble", "fatal", true)
	pebble.DefaultLogger.Fatalf(format, args...)
}
