package raftstore

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// TestBinaryCommandsWaitForEveryServer: a node of an earlier version cannot apply binary commands
// or compressed entries, so a cluster uses each only once every server of the configuration has
// reported a codec that includes it.
func TestBinaryCommandsWaitForEveryServer(t *testing.T) {
	s := openTestStore(t, t.TempDir(), func(c *Config) { c.NodeID = "n1" })
	defer s.Close()
	if !s.BinaryCommands() {
		t.Fatal("a single-server store must use binary commands")
	}
	// A second server (a non-voter, so the leader alone commits the change) that has not heartbeated.
	if err := s.AddServer("n2", freeAddr(t), false); err != nil {
		t.Fatal(err)
	}
	poll := func(want bool, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.BinaryCommands() != want {
			if time.Now().After(deadline) {
				t.Fatalf("BinaryCommands stayed %v: %s", !want, what)
			}
			time.Sleep(20 * time.Millisecond) // polling interval; the answer is cached for a second
		}
	}
	poll(false, "a server that never reported its codec")
	now := time.Now().UTC()
	mustPropose(t, s, CmdPutNode, &model.Node{ID: "n1", RaftAddr: "x", UpdatedAt: now, Codec: CodecVersion}, nil)
	mustPropose(t, s, CmdPutNode, &model.Node{ID: "n2", RaftAddr: "y", UpdatedAt: now}, nil)
	poll(false, "a server of an earlier version (codec 0)")
	if s.CompressedEntries() {
		t.Fatal("compressed entries with a server at codec 0")
	}
	// A server of the release before compressed entries: binary commands yes, compression no.
	mustPropose(t, s, CmdPutNode, &model.Node{ID: "n2", RaftAddr: "y", UpdatedAt: now, Codec: 1}, nil)
	poll(true, "every server reports the binary codec")
	if s.CompressedEntries() {
		t.Fatal("compressed entries with a server at codec 1")
	}
	mustPropose(t, s, CmdPutNode, &model.Node{ID: "n2", RaftAddr: "y", UpdatedAt: now, Codec: CodecVersion}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for !s.CompressedEntries() {
		if time.Now().After(deadline) {
			t.Fatal("CompressedEntries stayed false with every server at CodecVersion")
		}
		time.Sleep(20 * time.Millisecond) // polling interval; the answer is cached for a second
	}
}
