/*
Package raftstore is Sluice's replicated state: a hashicorp/raft node whose log is a wal.Store and
whose FSM keeps every record in a Pebble instance of its own (the "state DB").

# Writes

Callers build a Command (a type, a JSON Meta and an optional Blob of bytes that must not be
re-encoded, such as an event's data, compressed once at ingest with s2) and call Store.Propose.
CmdResults, the delivery engine's hot command, carries a binary Meta instead (NewResultsCommand;
codec.go describes it and the delivery and attempt records, and how JSON written by earlier versions
is told apart). The
proposer packs concurrent proposals into one Raft entry: while MaxInFlight entries are between
raft.Apply and FSM apply, new proposals accumulate into the next batch (bounded by MaxBatchBytes,
4 MiB, and MaxBatchCommands). Batching therefore comes from load and adds no latency when idle, and
raft's own leader loop puts every entry queued meanwhile into one synced StoreLogs call, so fsyncs per
command fall far below one under concurrency. An optional Linger (off by default) makes a batch wait
a little for more proposals while other entries are in flight. Store.ProposeAll submits many commands
from one goroutine (TCP ingest's PUBLISH_BATCH). Propose returns after the command is committed on a
quorum and applied on this node; its Result carries the command's deterministic outcome.

Entry framing: version byte (1), command count (uvarint), then per command: type byte, meta length
(uvarint), meta, blob length (uvarint), blob. A publish command's meta is JSON or, for new events, the
binary form described in publishcodec.go (first byte 0x01); apply reads both. An entry of 1 KiB or
more may instead be version 2: one S2 block holding a whole version-1 entry, written only once every
server reports codec 2 (codecgate.go), so the log stores, replicates and replays it small and only an
FSM that applies it expands it. Below Config.MinFreeDisk free on the data directory's filesystem,
Propose refuses publishes with ErrDiskFull (diskguard.go): a disk that fills stops the node.

# Apply

FSM.ApplyBatch applies a run of committed entries in one Pebble batch together with the applied
index ('m' "applied"), so state and log position never disagree. Entries at or below the stored
applied index are skipped: with raft's NoSnapshotRestoreOnStart a restart replays only what the state
has not seen. Apply reads no clock, randomness or local configuration: ids and timestamps travel in
the commands (TestApplyIsDeterministic replays a log into a second FSM and compares bytes). After a
batch commits, the FSM updates an in-memory catalog of keys, projects, endpoints and subscriptions
(the hot lookups: auth and fan-out) and hands the dispatch Effects (deliveries that became due,
endpoints whose status changed) to the Observe hook. Apply's project checks read that catalog (plus
the batch's own earlier project writes) instead of the state DB. An in-memory Bloom filter of the
idempotency keys (keyFilter, rebuilt in the background on open and restore) lets both the API's
pre-check and apply skip the point read for a key that was never stored.

# Durability

The log is synced on every write (package wal); the state DB is its derivative and has no WAL of its
own (stateOptions): after a crash it is the state as of its last flushed applied index, and raft
replays the entries after that. That holds only while the log still has every entry after the state's
last durable applied index, so FSM.Snapshot starts a flush of the state DB and Persist waits for it
before the snapshot completes; raft truncates the log only behind a completed snapshot. A clean
shutdown flushes, so the next start replays nothing. On start, if the newest snapshot is ahead of the
state's applied index (the state DB was lost or is older), the snapshot is restored before raft starts.

Snapshots stream every key/value of a Pebble snapshot as an s2 stream with a record count and a
CRC-32C trailer; Restore builds a new DB in state.restore, verifies the trailer, marks it complete and
swaps directories (state -> state.old, state.restore -> state); a crash at any step is finished or
undone on the next open.

# State layout

See keys.go: a one-byte table tag, then fixed-width time-ordered ids, so listings are reverse prefix
scans and time ranges are id ranges. Secondary indexes (deliveries by endpoint, event, status,
endpoint+status, and the due-time index that rebuilds the scheduler) are written in the same batch as
the record they index.
*/
package raftstore
