package raftstore

import (
	"sync/atomic"
	"time"
)

// Stats counts the proposer's work. Fields are atomics so any goroutine may read them; the optional
// hooks (set before Open) let the binary feed histograms without this package choosing a metrics
// library.
type Stats struct {
	Batches       atomic.Uint64 // Raft entries proposed
	Commands      atomic.Uint64 // commands inside them
	CommitNanos   atomic.Uint64 // total propose-to-apply time of successful entries
	CommittedOnes atomic.Uint64 // successful entries

	// OnBatch, when set, is called with each proposed entry's command count.
	OnBatch func(commands int)
	// OnCommit, when set, is called with each entry's propose-to-apply latency.
	OnCommit func(d time.Duration)
}

func (s *Stats) observeBatch(n int) {
	s.Batches.Add(1)
	s.Commands.Add(uint64(n))
	if s.OnBatch != nil {
		s.OnBatch(n)
	}
}

func (s *Stats) observeCommit(d time.Duration) {
	s.CommittedOnes.Add(1)
	s.CommitNanos.Add(uint64(d))
	if s.OnCommit != nil {
		s.OnCommit(d)
	}
}
