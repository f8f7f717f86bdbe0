package raftstore

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one member of the Raft configuration.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Servers lists the Raft configuration as this node knows it.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftstore: read configuration: %w", err)
	}
	leader := s.LeaderID()
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(sv.ID), RaftAddr: string(sv.Address), Voter: sv.Suffrage == raft.Voter, Leader: string(sv.ID) == leader})
	}
	return out, nil
}

const membershipTimeout = 30 * time.Second

// AddServer adds a voter (or a non-voter) to the cluster. Leader only.
func (s *Store) AddServer(id, raftAddr string, voter bool) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	var f raft.IndexFuture
	if voter {
		f = s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, membershipTimeout)
	} else {
		f = s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, membershipTimeout)
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("raftstore: add server %s at %s: %w", id, raftAddr, err)
	}
	s.cfg.Logger.Info("server added", "id", id, "raft_addr", raftAddr, "voter", voter)
	return nil
}

// RemoveServer removes a server from the cluster. Leader only.
func (s *Store) RemoveServer(id string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("raftstore: remove server %s: %w", id, err)
	}
	s.cfg.Logger.Info("server removed", "id", id)
	return nil
}

// TransferLeadership hands leadership to server to (any up-to-date voter when to is ""). Leader only.
func (s *Store) TransferLeadership(to string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	var f raft.Future
	if to == "" {
		f = s.raft.LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		srvs, err := s.Servers()
		if err != nil {
			return err
		}
		for _, sv := range srvs {
			if sv.ID == to {
				addr = raft.ServerAddress(sv.RaftAddr)
			}
		}
		if addr == "" {
			return fmt.Errorf("%w: server %s", ErrNotFound, to)
		}
		f = s.raft.LeadershipTransferToServer(raft.ServerID(to), addr)
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("raftstore: transfer leadership to %q: %w", to, err)
	}
	return nil
}
