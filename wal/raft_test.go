package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countFSM counts applied commands and sums their lengths; its snapshot is
// those two numbers.
type countFSM struct {
	mu         sync.Mutex
	count, sum uint64
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	f.sum += uint64(len(l.Data))
	return f.count
}

func (f *countFSM) state() (count, sum uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count, f.sum
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	count, sum := f.state()
	return countSnapshot{count, sum}, nil
}

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var buf [16]byte
	if _, err := io.ReadFull(rc, buf[:]); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count, f.sum = binary.BigEndian.Uint64(buf[:8]), binary.BigEndian.Uint64(buf[8:])
	return nil
}

type countSnapshot struct{ count, sum uint64 }

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, s.count), s.sum)
	if _, err := sink.Write(b); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

// raftNode is one single-voter raft on a Store in dir.
type raftNode struct {
	r     *raft.Raft
	fsm   *countFSM
	store *Store
}

func startNode(t *testing.T, dir string) *raftNode {
	t.Helper()
	store, err := Open(filepath.Join(dir, "wal"), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.LogOutput = io.Discard
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	// Snapshots happen when the test asks, so truncation is deterministic.
	conf.SnapshotThreshold = 1 << 40
	conf.SnapshotInterval = time.Hour
	conf.TrailingLogs = 100
	// Buffer Apply so raft's leader loop can group queued commands into
	// one StoreLogs call, as production does.
	conf.BatchApplyCh = true
	addr, trans := raft.NewInmemTransport("n1")
	fsm := &countFSM{}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		t.Fatal(err)
	}
	if !existing {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil {
			t.Fatal(err)
		}
	}
	n := &raftNode{r: r, fsm: fsm, store: store}
	n.waitLeader(t)
	return n
}

// waitLeader blocks on raft's leadership notifications until the node
// leads, failing after a deadline.
func (n *raftNode) waitLeader(t *testing.T) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for n.r.State() != raft.Leader {
		select {
		case <-n.r.LeaderCh():
		case <-deadline.C:
			t.Fatalf("no leadership within 10s, state %v", n.r.State())
		}
	}
}

func (n *raftNode) stop(t *testing.T) {
	t.Helper()
	if err := n.r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.store.Close(); err != nil {
		t.Fatal(err)
	}
}

// apply submits cmds all at once, as many concurrent publishers would, so
// raft batches them into multi-entry StoreLogs calls, then waits for all.
func (n *raftNode) apply(t *testing.T, cmds [][]byte) {
	t.Helper()
	futures := make([]raft.ApplyFuture, len(cmds))
	for i, c := range cmds {
		futures[i] = n.r.Apply(c, 10*time.Second)
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
}

func TestRaftOnStore(t *testing.T) {
	const total = 1000
	cmds := make([][]byte, total)
	var wantSum uint64
	for i, l := range makeLogs(1, total, 5) {
		cmds[i] = l.Data
		wantSum += uint64(len(l.Data))
	}
	dir := t.TempDir()

	n := startNode(t, dir)
	n.apply(t, cmds[:600])
	// A snapshot makes raft truncate the log behind it (DeleteRange),
	// keeping TrailingLogs entries.
	if err := n.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	n.apply(t, cmds[600:])
	if err := n.r.Barrier(10 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if count, sum := n.fsm.state(); count != total || sum != wantSum {
		t.Fatalf("before restart: fsm count %d sum %d, want %d %d", count, sum, total, wantSum)
	}
	st := n.store.Stats()
	if st.FirstIndex <= 1 || st.Entries < total {
		t.Fatalf("expected a truncated log after the snapshot: %+v", st)
	}
	t.Logf("stats before restart: %+v ratio %.2f", st, st.CompressionRatio())
	lastBefore := st.LastIndex
	n.stop(t)

	// Restart on the same directories: snapshot + log replay restore
	// every command.
	n = startNode(t, dir)
	defer n.stop(t)
	if err := n.r.Barrier(10 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if count, sum := n.fsm.state(); count != total || sum != wantSum {
		t.Fatalf("after restart: fsm count %d sum %d, want %d %d", count, sum, total, wantSum)
	}
	first, last := bounds(t, n.store)
	if last <= lastBefore {
		t.Fatalf("last index %d after restart, want > %d (new term's entries)", last, lastBefore)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d) in [%d,%d]: %v", i, first, last, err)
		}
	}
	// And it keeps working.
	n.apply(t, [][]byte{[]byte("one more")})
	if count, _ := n.fsm.state(); count != total+1 {
		t.Fatalf("count %d after one more apply", count)
	}
	if term, err := n.store.GetUint64([]byte("CurrentTerm")); err != nil || term < 2 {
		t.Fatalf("CurrentTerm = %d, %v; want >= 2 after a restart", term, err)
	}
	var notFound raft.Log
	if err := n.store.GetLog(1, &notFound); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatal(fmt.Errorf("GetLog(1) after truncation = %v", err))
	}
}
