package raftstore

import (
	"time"
)

// CodecVersion is the newest command encoding this build applies: 0 JSON only, 1 also the binary
// publish (publishcodec.go) and results (codec.go) commands, 2 also S2-compressed entries
// (command.go). Nodes report it in their heartbeats (model.Node.Codec).
const CodecVersion = 2

// codecRecheck is how long a codec floor answer is reused.
const codecRecheck = time.Second

// BinaryCommands reports whether commands may be proposed in the binary encodings: a node of an
// earlier version could not apply them and its state would silently diverge, so in a cluster they
// are used only once every server of the Raft configuration has heartbeated CodecVersion 1 or
// newer. A single-server configuration upgrades as a whole and always may. The answer is cached
// for a second; a server added later heartbeats before it can be sent entries that matter, and a
// cluster mixing versions sees JSON within a second of the configuration change.
func (s *Store) BinaryCommands() bool { return s.codecFloor() >= 1 }

// CompressedEntries reports whether the proposer may write S2-compressed entries, under the same
// rule as BinaryCommands: every server of the configuration must have reported codec 2.
func (s *Store) CompressedEntries() bool { return s.codecFloor() >= 2 }

// codecFloor is the lowest codec every server of the configuration has reported (CodecVersion for
// a single server), cached for codecRecheck.
func (s *Store) codecFloor() int {
	now := time.Now()
	if c := s.codec.Load(); c != nil && now.Sub(c.at) < codecRecheck {
		return c.floor
	}
	floor := s.codecFloorNow()
	s.codec.Store(&codecAnswer{floor: floor, at: now})
	return floor
}

type codecAnswer struct {
	floor int
	at    time.Time
}

func (s *Store) codecFloorNow() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	servers := f.Configuration().Servers
	if len(servers) <= 1 {
		return CodecVersion
	}
	cat := s.fsm.cat.Load()
	floor := CodecVersion
	for _, sv := range servers {
		n := cat.node(string(sv.ID))
		if n == nil {
			return 0
		}
		floor = min(floor, n.Codec)
	}
	return floor
}
