/*
Package wal is Sluice's Raft log: a raft.LogStore, raft.StableStore and
raft.MonotonicLogStore on a Pebble instance of its own.

It owns one directory and nothing else. The replicated state (package
raftstore) lives in a separate Pebble instance with different tuning:
this one is write-heavy, every write is synced, and its values are
already compressed.

# Usage

	store, err := wal.Open(filepath.Join(dataDir, "raft-log"), wal.Options{Logger: logger})
	if err != nil { ... }
	defer store.Close() // after raft.Shutdown().Error()
	r, err := raft.NewRaft(conf, fsm, store, store, snapshots, transport)

Every method is safe for concurrent use, except Close, which must come
after raft has shut down. Store.Stats reports sync, entry and byte counters
so the compression ratio and syncs per entry are visible.

# Key layout

One prefix byte per keyspace:

	'l' + uint64 index, 8 bytes big-endian   log entry record (below)
	's' + key                                Set/Get value, stored as given
	'u' + key                                SetUint64/GetUint64, 8 bytes big-endian

Big-endian indexes make Pebble's byte order the index order, so FirstIndex
and LastIndex are one seek each at Open (and after DeleteRange) and are
otherwise served from memory. DeleteRange(min, max) is a single range
tombstone, [l+min, l+max+1): truncating a million entries costs what
truncating one does, which raft relies on for a MonotonicLogStore after a
snapshot install.

The stable keyspaces match raft.InmemStore exactly, because raft compares
error text: Get of a missing key returns ErrKeyNotFound, whose text is
"not found" (raft.go and api.go test err.Error() == "not found"); a nil
value set with Set reads back as missing, an empty one as empty; GetUint64
of a missing key returns 0 and no error; the byte and uint64 keyspaces are
separate, so SetUint64("k") is not visible to Get("k").

# Record format

A log value is a versioned record; integers are varints unless noted:

	+---------+-------+------+-------+-------+------+-------------+---------+------------+---------+---------+--------+
	| version | codec | type | flags | index | term | appended_at | ext_len | extensions | raw_len | payload | crc32c |
	| 1 byte  | 1     | 1    | 1     | uvar  | uvar | var, if     | uvar    | ext_len    | uvar    | rest    | 4, LE  |
	|   = 1   |       |      |       |       |      | flags&1     |         | bytes      |         |         |        |
	+---------+-------+------+-------+-------+------+-------------+---------+------------+---------+---------+--------+

type is raft.LogType. appended_at is raft.Log.AppendedAt in Unix
nanoseconds, present only when flag bit 0 is set (a zero time has no Unix
nanosecond value). codec says how payload holds raft.Log.Data: 0 raw,
1 S2 block, 2 zstd frame; raw_len is Data's length before compression, so
decoding can check it and size its buffer. crc32c (Castagnoli) covers every
byte before it. A read checks the CRC first, then that the record's index is
the key's; any failure returns ErrCorrupt wrapped as
"wal: corrupt entry at index N: <cause>" rather than a wrong entry. An
intact record of another version is reported as ErrUnsupportedVersion,
never guessed at. Pebble checksums its WAL records and sstable
blocks too; the record CRC also catches a bug or tool that writes a bad
value, and it is what a reader sees first.

# Compression codec: S2

Data of 64 bytes or more is compressed with S2 (klauspost/compress/s2
block format) and kept compressed only if that saves at least 1/16 of the
bytes; otherwise it is stored raw (codec 0). Payloads already compressed at
ingest, as the design brief wants, thus cost one quick failed attempt and
no decompression on read. All codecs are always readable, so
Options.Compression (S2, zstd or none) can change without migration.

Measured with BenchmarkCodec on 2026-11-26 (2 vCPUs shared with other
work, load average 3), on generated invoice-style JSON webhook events with
varied ids, amounts and line items; MB/s of uncompressed bytes (runs at load
average 9 gave 10-40% lower speeds and the same ratios):

	input                          codec          encode     decode   ratio
	one event (1,011 B)            s2           1,450 MB/s   900 MB/s   1.48
	                               zstd fastest   180 MB/s   290 MB/s   1.95
	batch of 50 events (53 KB)     s2           2,170 MB/s   830 MB/s   3.36
	                               zstd fastest   670 MB/s   880 MB/s   5.95
	that batch zstd'ed at ingest   s2           0.7 µs to give up, stored raw
	(~9 KB, incompressible)        zstd         0.8 µs to give up, stored raw

zstd stores a 50-event batch in 56% of S2's bytes, but S2 is 3-8x faster
to encode. That decides it: StoreLogs runs inline on raft's leader loop
before the fsync, so an append of 64 such entries (raft's MaxAppendEntries)
costs ~1.6 ms of S2 against ~5 ms of zstd (10 ms under load), all of it
commit latency; and on a 2-core node the CPU is the ceiling for delivery
(design brief), while the log's bytes are short-lived, because raft
truncates it after every snapshot. The
design brief's own measurement shows a trained dictionary would matter more
than the codec (ratio 3.3-3.8 on single events); that belongs at ingest,
where payloads are compressed once, not here.

# Durability

Every mutation (StoreLogs, StoreLog, DeleteRange, Set, SetUint64) is one
Pebble batch committed with pebble.Sync: when the call returns nil the
batch is in Pebble's WAL and fsynced. A batch is atomic across a crash:
after restart either all of its entries are present or none (Pebble's WAL
records are checksummed, and FormatWALSyncChunks lets recovery tell a torn
tail from corruption). StoreLogs only appends at LastIndex+1 with
consecutive indexes (ErrNotContiguous otherwise), so the log never has
gaps and IsMonotonic can return true. Log mutations are serialized so the
cached bounds follow commit order (raft issues them from one goroutine
anyway); stable-store writes are not, and share fsyncs with log appends
through Pebble's group commit. Nothing in this
package uses pebble.NoSync, and Stats.Syncs counts one synced commit per
mutating call that had something to write.

TestCrash checks this on vfs.NewCrashableMem: it crash-clones the
filesystem at a chosen WAL sync (bytes written, not yet durable), keeping
from 0% to 100% of the unsynced blocks, and requires every acknowledged
batch, truncation and term to survive, the log to end on a batch boundary,
and every surviving entry to be contiguous, CRC-valid and identical to
what was written.

# Pebble tuning

  - pebble.Sync on every commit, never NoSync; WALMinSyncInterval stays 0,
    because the batching belongs to raft and the proposer, and an artificial
    delay would only add commit latency.
  - WALBytesPerSync stays 0: every commit syncs the WAL already, so
    background syncing of it would only add fsyncs. BytesPerSync keeps
    Pebble's 512 KiB for sstables so flushes do not stall the disk at once.
  - No sstable block compression: values are S2 output or incompressible,
    so Snappy on top costs CPU in every flush and compaction for nothing.
  - MemTableSize 16 MiB (Pebble: 4 MiB) with MemTableStopWritesThreshold 4:
    fewer, larger flushes, and room for a burst while one flush runs. 64 MiB
    measured slower (54-74k against 87-114k entries/s for 1,024-entry
    batches, in 2 s runs), most likely because each fresh 64 MiB arena is
    page-faulted in before Pebble can recycle it.
  - FlushDelayDeleteRange 10 s: truncated entries free their disk space
    only once the range tombstone is flushed; this bounds that on a quiet log.
    Tombstones covering whole sstables are then dropped by Pebble's
    delete-only compactions, without rewriting data.
  - FormatMajorVersion pinned to FormatValueSeparation (the newest in
    Pebble v2.1.7, including FormatWALSyncChunks) so an upgrade of Pebble
    does not silently change the on-disk format.
  - The block cache keeps Pebble's 8 MiB of blocks: reads are of recent
    entries (followers catching up), mostly still in the memtable. Pebble
    charges every memtable to the block cache, so the cache is created with
    room for the memtables on top (8 + 4 x 16 MiB); an 8 MiB cache beside
    16 MiB memtables kept no block at all, and every read of a flushed entry
    went to disk.

BenchmarkStoreLogs on a real directory of the same machine, ~1 KiB JSON
entries (S2 ratio 1.5). A 4 KiB write+fdatasync took 0.8 ms in the calm
run (the design brief measured 0.3-0.4 ms) and 3.2 ms in the loaded one:

	entries per StoreLogs    entries/s (calm)    MB/s (calm)    entries/s (loaded)
	1                               1,900              2.1                   670
	64                             60,000               65                28,000
	1,024                         166,000              179                91,000

A synced commit costs about what encoding and writing 64 entries does, so
throughput comes from batching: raft's MaxAppendEntries per StoreLogs, and
the proposer's many events per entry.
*/
package wal
