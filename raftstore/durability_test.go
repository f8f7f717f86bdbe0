package raftstore

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/wal"
)

// dumpState returns every key/value of a store's state except none: two replicas that applied the same
// log must be byte-identical.
func dumpState(t *testing.T, st *stateDB) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := st.view(func(db *pebble.DB) error { return writeSnapshot(db, &buf) })
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestApplyIsDeterministic replays one node's Raft log into a fresh FSM and expects the identical
// state: Apply reads no clock, randomness or local config.
func TestApplyIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	f := setupProject(t, s)
	for i := 0; i < 50; i++ {
		p, blob := publishCmd(f, i, fmt.Sprintf("k%d", i%40)) // some duplicate keys
		mustPropose(t, s, CmdPublish, p, blob)
	}
	p, blob := publishCmd(f, 99, "")
	mustPropose(t, s, CmdPublish, p, blob)
	mustPropose(t, s, CmdResults, Results{Results: []AttemptResult{{ProjectID: f.pid, DeliveryID: p.Targets[0].DeliveryID,
		Status: model.StatusFailed, At: f.now, DisableEndpoint: true,
		Attempt: &model.Attempt{UID: model.NewID(f.now), Number: 1, StatusCode: 410}}}}, nil)
	mustPropose(t, s, CmdDeleteEndpoint, DeleteRef{ProjectID: f.pid, ID: f.eid, At: f.now}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Replay the log into a second FSM.
	logs, err := wal.Open(filepath.Join(dir, "raft"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	st2, err := openStateDB(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.close()
	fsm2, err := newFSM(st2, slog.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		fsm2.ApplyBatch([]*raft.Log{&l})
	}
	st1, err := openStateDB(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st1.close()
	a, b := dumpState(t, st1), dumpState(t, st2)
	if !bytes.Equal(a, b) {
		t.Fatalf("replicas differ after applying the same log (%d vs %d bytes of state)", len(a), len(b))
	}
}

// TestCrashAfterSnapshotAndTruncation loses the state DB entirely after a snapshot has let raft
// truncate the log: on restart the node must restore the snapshot and replay the rest, finding every
// acknowledged event.
func TestCrashAfterSnapshotAndTruncation(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) { c.TrailingLogs = 5; c.SnapshotThreshold = 1 << 30 }
	s := openTestStore(t, dir, small)
	f := setupProject(t, s)
	var ids []string
	for i := 0; i < 60; i++ {
		p, blob := publishCmd(f, i, "")
		ids = append(ids, mustPropose(t, s, CmdPublish, p, blob).EventID)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.log.FirstIndex(); first <= 1 {
		t.Fatalf("log was not truncated behind the snapshot (first index %d)", first)
	}
	for i := 60; i < 80; i++ {
		p, blob := publishCmd(f, i, "")
		ids = append(ids, mustPropose(t, s, CmdPublish, p, blob).EventID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The worst a crash can do to the unsynced state DB is lose it all.
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, small)
	defer s.Close()
	requireRecovered(t, s, f, ids)
}

// TestRestoreRejectsCorruptSnapshot checks restore verifies the stream before swapping it in.
func TestRestoreRejectsCorruptSnapshot(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	f := setupProject(t, s)
	var buf bytes.Buffer
	if err := s.st.view(func(db *pebble.DB) error { return writeSnapshot(db, &buf) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"truncated", buf.Bytes()[:buf.Len()/2]},
		{"bad magic", append([]byte("NOPE"), buf.Bytes()[4:]...)},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.st.restoreFrom(bytes.NewReader(tc.data)); err == nil {
				t.Fatal("corrupt snapshot was restored")
			}
			if s.Project(f.pid) == nil || s.st.db == nil {
				t.Fatal("state changed by a refused restore")
			}
		})
	}
	// A good stream round-trips.
	if err := s.st.restoreFrom(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
}

// crash stops s the way kill -9 would leave its files: raft and the log stop, and the state DB is
// closed without a flush. It has no WAL, so its memtables — every write since the last flush — are
// gone, exactly as after a crash.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.closeOnce.Do(func() {
		close(s.stopCh)
		s.prop.stop()
		if err := s.raft.Shutdown().Error(); err != nil {
			t.Fatalf("shutdown raft: %v", err)
		}
		s.wg.Wait()
		s.trans.Close()
		if err := s.st.close(); err != nil {
			t.Fatalf("close state db: %v", err)
		}
		if err := s.log.Close(); err != nil {
			t.Fatalf("close log: %v", err)
		}
	})
}

// TestCrashLosesUnflushedStateButNoEvent: the state DB has no WAL, so a crash loses what it applied
// since its last flush; raft must replay that from the log on restart, with or without a snapshot
// (and log truncation) in between.
func TestCrashLosesUnflushedStateButNoEvent(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			small := func(c *Config) { c.TrailingLogs = 5; c.SnapshotThreshold = 1 << 30 }
			s := openTestStore(t, dir, small)
			f := setupProject(t, s)
			var ids []string
			publish := func(from, to int) {
				for i := from; i < to; i++ {
					p, blob := publishCmd(f, i, fmt.Sprintf("idem-%d", i))
					ids = append(ids, mustPropose(t, s, CmdPublish, p, blob).EventID)
				}
			}
			publish(0, 40)
			var snapIndex uint64
			if snapshot {
				if err := s.Snapshot(); err != nil {
					t.Fatal(err)
				}
				snapIndex = s.AppliedIndex()
				if first, _ := s.log.FirstIndex(); first <= 1 {
					t.Fatalf("log was not truncated behind the snapshot (first index %d)", first)
				}
			}
			publish(40, 80)
			applied := s.AppliedIndex()
			crash(t, s)

			st, err := openStateDB(filepath.Join(dir, "state"))
			if err != nil {
				t.Fatal(err)
			}
			var onDisk uint64
			st.view(func(db *pebble.DB) error { onDisk, err = readApplied(db); return err })
			st.close()
			if err != nil {
				t.Fatal(err)
			}
			if onDisk >= applied {
				t.Fatalf("state on disk is at index %d after the crash, applied was %d: the crash lost nothing, so this tests nothing", onDisk, applied)
			}
			if onDisk < snapIndex {
				t.Fatalf("state on disk at %d is behind the snapshot at %d: the snapshot did not wait for its flush", onDisk, snapIndex)
			}

			s = openTestStore(t, dir, small)
			defer s.Close()
			requireRecovered(t, s, f, ids)
			// The replayed publishes rebuilt the idempotency keys: a retried publish is a duplicate.
			p, blob := publishCmd(f, 3, "idem-3")
			if r := mustPropose(t, s, CmdPublish, p, blob); r.EventID != ids[3] || !r.Duplicate {
				t.Fatalf("retried publish after recovery = %+v, want duplicate of %s", r, ids[3])
			}
		})
	}
}

// requireRecovered fails unless every acknowledged event of ids, and a delivery for each, is in s.
func requireRecovered(t *testing.T, s *Store, f fixture, ids []string) {
	t.Helper()
	for i, id := range ids {
		if _, err := s.Event(f.pid, id); err != nil {
			t.Fatalf("acknowledged event %d (%s) lost: %v", i, id, err)
		}
	}
	ds, _, err := s.ListDeliveries(f.pid, DeliveryFilter{Page: Page{Limit: 1000}})
	if err != nil || len(ds) != len(ids) {
		t.Fatalf("deliveries after recovery = %d, %v; want %d", len(ds), err, len(ids))
	}
}
