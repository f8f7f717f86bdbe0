package raftstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/sluice-gw/sluice/wal"
)

// Config configures a Store. Zero values take the documented defaults.
type Config struct {
	// NodeID names this node in the Raft configuration. Default "node1".
	NodeID string
	// DataDir holds raft/ (the log), snapshots/ and state/. Required.
	DataDir string
	// RaftAddr is the TCP address the Raft transport listens on. Default 127.0.0.1:5007.
	RaftAddr string
	// AdvertiseAddr is the Raft address other nodes dial. Default RaftAddr.
	AdvertiseAddr string
	// Bootstrap makes a node with no Raft state form a one-voter cluster of itself.
	Bootstrap bool
	// SnapshotThreshold is how many entries since the last snapshot trigger a new one. Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks the threshold. Default 2 min.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries stay in the log behind a snapshot. Default 10240.
	TrailingLogs uint64
	// FastElections shortens raft's timeouts (tests and single-node use; a one-voter cluster has no
	// one to disagree with). Default false: raft's defaults.
	FastElections bool
	Proposer      ProposerConfig
	Logger        *slog.Logger
	// Observe receives the dispatch effects of every committed batch (see Effects).
	Observe func(Effects)
	// OnLeadership is called (from one goroutine, in order) when this node gains or loses leadership.
	OnLeadership func(isLeader bool)
	// Stats, when set, is where the proposer counts its work.
	Stats *Stats
	// Forwarder, when set, carries writes made on a follower to the leader.
	Forwarder Forwarder
	// MinFreeDisk refuses new events (ErrDiskFull) while the filesystem holding DataDir has fewer
	// free bytes, measured ten times a second; see diskguard.go. Default 0: no guard (`sluice serve`
	// sets 256 MiB).
	MinFreeDisk int64
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return fmt.Errorf("raftstore: Config.DataDir is required")
	}
	if c.NodeID == "" {
		c.NodeID = "node1"
	}
	if c.RaftAddr == "" {
		c.RaftAddr = "127.0.0.1:5007"
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.RaftAddr
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 2 * time.Minute
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	return nil
}

// Store is the replicated state: a Raft node whose log is a wal.Store and whose FSM keeps all state
// in a Pebble DB. Writes go through Propose (leader only); reads are served from the local state.
type Store struct {
	cfg   Config
	log   *wal.Store
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport
	st    *stateDB
	fsm   *FSM
	raft  *raft.Raft
	prop  *proposer

	// leaderReady is true while this node leads and has applied every entry committed before its
	// term (raft.Barrier): only then do its reads and the dispatch rebuild see the whole state.
	leaderReady atomic.Bool
	// codec caches BinaryCommands' answer (codecgate.go).
	codec atomic.Pointer[codecAnswer]

	stopCh chan struct{}
	wg     sync.WaitGroup
	// diskFree and diskLow are written by watchDisk (diskguard.go) and read by Propose.
	diskFree  atomic.Int64
	diskLow   atomic.Bool
	closeOnce sync.Once
}

// Open opens (or creates) the store in cfg.DataDir and starts its Raft node.
func Open(cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("raftstore: create data dir %s: %w", cfg.DataDir, err)
	}
	s := &Store{cfg: cfg, stopCh: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.closeParts()
		}
	}()
	var err error
	hlog := newHCLogger(cfg.Logger)
	if s.log, err = wal.Open(filepath.Join(cfg.DataDir, "raft"), wal.Options{Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if s.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog); err != nil {
		return nil, fmt.Errorf("raftstore: open snapshot store: %w", err)
	}
	if s.st, err = openStateDB(filepath.Join(cfg.DataDir, "state")); err != nil {
		return nil, err
	}
	if s.fsm, err = newFSM(s.st, cfg.Logger, cfg.Observe); err != nil {
		return nil, err
	}
	if err := s.catchUpFromSnapshot(); err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("raftstore: advertise address %q: %w", cfg.AdvertiseAddr, err)
	}
	if s.trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, 3, 10*time.Second, hlog); err != nil {
		return nil, fmt.Errorf("raftstore: listen for raft on %s: %w", cfg.RaftAddr, err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.NoSnapshotRestoreOnStart = true // the state lives in Pebble, not memory
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	if cfg.FastElections {
		rc.HeartbeatTimeout = 200 * time.Millisecond
		rc.ElectionTimeout = 200 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
	}
	has, err := raft.HasExistingState(s.log, s.log, s.snaps)
	if err != nil {
		return nil, fmt.Errorf("raftstore: inspect raft state: %w", err)
	}
	if s.raft, err = raft.NewRaft(rc, s.fsm, s.log, s.log, s.snaps, s.trans); err != nil {
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}
	if !has && cfg.Bootstrap {
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(cfg.AdvertiseAddr),
		}}})
		if err := f.Error(); err != nil {
			return nil, fmt.Errorf("raftstore: bootstrap node %s: %w", cfg.NodeID, err)
		}
		cfg.Logger.Info("bootstrapped single-node cluster", "node_id", cfg.NodeID, "raft_addr", cfg.AdvertiseAddr)
	}
	s.prop = newProposer(cfg.Proposer, s.raft, cfg.Stats, s.CompressedEntries)
	s.wg.Add(2)
	go s.watchLeadership()
	s.diskFree.Store(-1)
	s.checkDisk() // a node started on a nearly full disk refuses events from its first publish
	go s.watchDisk()
	ok = true
	return s, nil
}

// catchUpFromSnapshot restores the newest snapshot when the state DB is behind it: raft will only
// replay entries after the snapshot (NoSnapshotRestoreOnStart), and the log behind it may be gone.
func (s *Store) catchUpFromSnapshot() error {
	metas, err := s.snaps.List()
	if err != nil {
		return fmt.Errorf("raftstore: list snapshots: %w", err)
	}
	if len(metas) == 0 || metas[0].Index <= s.fsm.AppliedIndex() {
		return nil
	}
	meta, rc, err := s.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("raftstore: open snapshot %s: %w", metas[0].ID, err)
	}
	s.cfg.Logger.Info("state is behind the newest snapshot; restoring",
		"state_applied", s.fsm.AppliedIndex(), "snapshot_index", meta.Index)
	return s.fsm.Restore(rc)
}

func (s *Store) watchLeadership() {
	defer s.wg.Done()
	ch := s.raft.LeaderCh()
	for {
		select {
		case isLeader := <-ch:
			if isLeader && !s.barrier(ch) {
				continue // lost leadership (or stopping) before catching up
			}
			s.leaderReady.Store(isLeader)
			s.cfg.Logger.Info("leadership changed", "node_id", s.cfg.NodeID, "leader", isLeader, "applied_index", s.AppliedIndex())
			if s.cfg.OnLeadership != nil {
				s.cfg.OnLeadership(isLeader)
			}
		case <-s.stopCh:
			return
		}
	}
}

// barrier waits until every entry committed before this node's term is applied. It retries until it
// succeeds, leadership is lost (a false arrives on ch, which it consumes) or the store stops.
func (s *Store) barrier(ch <-chan bool) bool {
	for {
		if err := s.raft.Barrier(10 * time.Second).Error(); err == nil {
			return true
		} else {
			s.cfg.Logger.Warn("leader barrier failed; retrying", "err", err)
		}
		select {
		case still := <-ch:
			if !still {
				s.leaderReady.Store(false)
				if s.cfg.OnLeadership != nil {
					s.cfg.OnLeadership(false)
				}
				return false
			}
		case <-s.stopCh:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// raftLeader spares forward.go the raft import.
const raftLeader = raft.Leader

// Propose commits cmd through Raft and returns its result once applied on this node. On a follower
// the command is forwarded to the leader (Config.Forwarder) and Propose returns once this node has
// applied it too.
func (s *Store) Propose(ctx context.Context, cmd Command) (Result, error) {
	if s.refuseForDisk(&cmd) {
		return Result{}, ErrDiskFull
	}
	if s.raft.State() != raft.Leader {
		return s.forward(ctx, &cmd)
	}
	return s.prop.propose(ctx, &cmd)
}

// LeaderID returns the current leader's node id ("" when unknown).
func (s *Store) LeaderID() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// NodeID is this node's id.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// WaitLeader blocks until this node leads and has applied everything committed before, or ctx ends.
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !s.leaderReady.Load() || s.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftstore: waiting for leadership: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// IsLeader reports whether this node currently leads.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// HasLeader reports whether the cluster has a known leader.
func (s *Store) HasLeader() bool {
	addr, _ := s.raft.LeaderWithID()
	return addr != ""
}

// Ready reports whether this node can serve: a leader is known and, if it is this node, it has
// caught up with everything committed before its term.
func (s *Store) Ready() bool {
	if s.raft.State() == raft.Leader {
		return s.leaderReady.Load()
	}
	return s.HasLeader()
}

// AppliedIndex is the last Raft index applied to the state.
func (s *Store) AppliedIndex() uint64 { return s.fsm.AppliedIndex() }

// Raft exposes the node for membership administration.
func (s *Store) Raft() *raft.Raft { return s.raft }

// WALStats reports the log store's counters (syncs, bytes).
func (s *Store) WALStats() wal.Stats { return s.log.Stats() }

// Stats is the proposer's counters.
func (s *Store) Stats() *Stats { return s.cfg.Stats }

// StateDiskUsage reports the state DB's size and compaction debt in bytes.
func (s *Store) StateDiskUsage() (bytes, debt uint64) { return s.st.metrics() }

// Snapshot asks raft for a snapshot now (which also lets it truncate the log).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftstore: snapshot: %w", err)
	}
	return nil
}

// Close stops the proposer and raft, then closes the stores. Safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stopCh)
		if s.prop != nil {
			s.prop.stop()
		}
		if s.raft != nil {
			if e := s.raft.Shutdown().Error(); e != nil {
				err = fmt.Errorf("raftstore: shutdown raft: %w", e)
			}
		}
		s.wg.Wait()
		if e := s.closeParts(); e != nil && err == nil {
			err = e
		}
	})
	return err
}

func (s *Store) closeParts() error {
	var first error
	keep := func(e error) {
		if e != nil && first == nil {
			first = e
		}
	}
	if s.trans != nil {
		keep(s.trans.Close())
	}
	if s.st != nil {
		// The state DB has no WAL: a clean shutdown flushes it so the next start replays nothing.
		if s.st.db != nil {
			keep(s.st.flush())
		}
		keep(s.st.close())
	}
	if s.log != nil {
		keep(s.log.Close())
	}
	return first
}

// newHCLogger routes raft's hclog output into slog at warn and above (raft is chatty at info).
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: slogWriter{l},
	})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("raft", "msg", string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}

// Backlog reports the proposer's queued proposals and the queue's capacity: a nearly full queue
// means writes are arriving faster than the log commits them.
func (s *Store) Backlog() (queued, capacity int) { return len(s.prop.in), cap(s.prop.in) }

// Peers reports how many servers the Raft configuration holds.
func (s *Store) Peers() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	return len(f.Configuration().Servers)
}
