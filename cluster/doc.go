// Package cluster keeps a set of Sluice nodes working as one: each node registers itself (its HTTP
// and Raft addresses, region and egress IPs) and heartbeats through the Raft log; the leader turns
// heartbeats into the replicated live-node set; every node derives from that set, by rendezvous
// hashing, which node delivers each endpoint (only nodes of an endpoint's pinned region qualify), so
// all nodes agree without talking to each other. It also carries follower writes to the leader
// (raftstore.Forwarder over HTTP) and serves the membership admin API that `sluice cluster` uses.
//
// Threading: Member.Run owns the heartbeat and monitor loop; lastHeard is guarded by mu and written
// from the FSM's effects hook; everything else is read-only after New or atomic.
package cluster
