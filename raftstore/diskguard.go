package raftstore

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// ErrDiskFull refuses a new event while the data directory's filesystem has less free space than
// Config.MinFreeDisk. The refusal changes nothing and is worth retrying once space is freed.
var ErrDiskFull = errors.New("raftstore: free disk space is below the minimum for new events")

// diskCheckInterval is how often the free space is measured. A statfs costs microseconds; what the
// margin must absorb between two measurements is not only ingest (tens of MB/s) but Pebble
// preallocating a new WAL file at 110% of the memtable size (70 MB for the state DB) each time a
// memtable is rotated, and a fresh DB rotates several times in its first seconds as its memtables
// grow to full size. Measuring ten times a second keeps that to one or two files.
const diskCheckInterval = 100 * time.Millisecond

// The guard exists because a full disk is not a refusal but a stop: the Raft log's Pebble treats a
// failed log write as fatal (it cannot know what reached the disk) and the process exits. Nothing
// acknowledged is lost that way (cmd/sluice TestFullDiskLosesNoAcknowledgedEvent), but the node is
// down until space is freed. Refusing new events a margin before the disk fills keeps it serving
// deliveries, reads and management writes, which are small; only publishes are refused, because
// they are what fills a disk.

// watchDisk measures the data directory's free space every diskCheckInterval until Close. It runs on
// its own goroutine, owned by the Store (stopCh, wg); diskFree and diskLow are its outputs.
func (s *Store) watchDisk() {
	defer s.wg.Done()
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.checkDisk()
		case <-s.stopCh:
			return
		}
	}
}

func (s *Store) checkDisk() {
	free, err := freeBytes(s.cfg.DataDir)
	if err != nil {
		s.cfg.Logger.Warn("measure free disk space", "dir", s.cfg.DataDir, "err", err)
		return
	}
	s.diskFree.Store(free)
	low := s.cfg.MinFreeDisk > 0 && free >= 0 && free < s.cfg.MinFreeDisk
	if was := s.diskLow.Swap(low); was != low {
		if low {
			s.cfg.Logger.Error("free disk space below the minimum: new events are refused until space is freed",
				"dir", s.cfg.DataDir, "free_bytes", free, "min_free_bytes", s.cfg.MinFreeDisk)
		} else {
			s.cfg.Logger.Info("free disk space back above the minimum: accepting new events",
				"dir", s.cfg.DataDir, "free_bytes", free)
		}
	}
}

// DiskFree is the data directory's free space in bytes at the last measurement (-1 when unknown).
func (s *Store) DiskFree() int64 { return s.diskFree.Load() }

// proposeAllButEvents is ProposeAll while the disk is low: publishes get ErrDiskFull and the other
// commands are proposed as usual.
func (s *Store) proposeAllButEvents(ctx context.Context, cmds []Command) []Outcome {
	out := make([]Outcome, len(cmds))
	rest := make([]Command, 0, len(cmds))
	idx := make([]int, 0, len(cmds))
	for i := range cmds {
		if s.refuseForDisk(&cmds[i]) {
			out[i].Err = ErrDiskFull
		} else {
			rest, idx = append(rest, cmds[i]), append(idx, i)
		}
	}
	if len(rest) == 0 {
		return out
	}
	sub := make([]Outcome, len(rest))
	if s.raft.State() != raft.Leader {
		// One at a time, unlike ProposeAll: a follower on a nearly full disk is not the fast path.
		for j := range rest {
			sub[j].Result, sub[j].Err = s.forward(ctx, &rest[j])
		}
	} else {
		s.prop.proposeAll(ctx, rest, sub)
	}
	for j, o := range sub {
		out[idx[j]] = o
	}
	return out
}

// refuseForDisk reports whether cmd must be refused with ErrDiskFull.
func (s *Store) refuseForDisk(cmd *Command) bool {
	return cmd.Type == CmdPublish && s.diskLow.Load()
}
