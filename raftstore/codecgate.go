package raftstore

import (
	"time"
)

// CodecVersion is the newest command encoding this build applies: 0 JSON only, 1 also the binary
// publish (publishcodec.go) and results (codec.go) commands. Nodes report it in their heartbeats
// (model.Node.Codec).
const CodecVersion = 1

// codecRecheck is how long a BinaryCommands answer is reused.
const codecRecheck = time.Second

// BinaryCommands reports whether commands may be proposed in the binary encodings: a node of an
// earlier version could not apply them and its state would silently diverge, so in a cluster they
// are used only once every server of the Raft configuration has heartbeated CodecVersion 1 or
// newer. A single-server configuration upgrades as a whole and always may. The answer is cached
// for a second; a server added later heartbeats before it can be sent entries that matter, and a
// cluster mixing versions sees JSON within a second of the configuration change.
func (s *Store) BinaryCommands() bool {
	now := time.Now()
	if c := s.codec.Load(); c != nil && now.Sub(c.at) < codecRecheck {
		return c.ok
	}
	ok := s.binaryCommandsNow()
	s.codec.Store(&codecAnswer{ok: ok, at: now})
	return ok
}

type codecAnswer struct {
	ok bool
	at time.Time
}

func (s *Store) binaryCommandsNow() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	servers := f.Configuration().Servers
	if len(servers) <= 1 {
		return true
	}
	cat := s.fsm.cat.Load()
	for _, sv := range servers {
		n := cat.node(string(sv.ID))
		if n == nil || n.Codec < 1 {
			return false
		}
	}
	return true
}
