package raftstore

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// TestBinaryCommandsWaitForEveryServer: a node of an earlier version cannot apply binary commands,
// so a cluster uses them only once every server of the configuration has reported the codec.
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
	mustPropose(t, s, CmdPutNode, &model.Node{ID: "n2", RaftAddr: "y", UpdatedAt: now, Codec: CodecVersion}, nil)
	poll(true, "every server reports the binary codec")
}
