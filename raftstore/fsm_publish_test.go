package raftstore

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
	"github.com/sluice-gw/sluice/model"
)

// TestPublishChecksSeeEarlierCommandsOfTheBatch: project existence comes from the catalog, which is
// updated only after a batch commits, and idempotency keys from a filter. Both must still see the
// writes of earlier commands in the same batch, and give the same state whether commands arrive in
// one batch or one at a time.
func TestPublishChecksSeeEarlierCommandsOfTheBatch(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000).UTC()
	f := fixture{pid: model.NewID(now), eid: model.NewID(now.Add(time.Millisecond)), now: now}
	cmd := func(typ CmdType, body any, blob []byte) *Command { return testCmd(t, typ, body, blob) }
	project, endpoint := f.setupCmds(t)
	publish := func(i int, idem string) *Command {
		p, blob := publishCmd(f, i, idem)
		return cmd(CmdPublish, p, blob)
	}
	del := cmd(CmdDeleteProject, DeleteRef{ProjectID: f.pid, At: now}, nil)
	type want struct {
		err       error
		duplicate int // index in the step of the command whose event this one duplicates; -1: none
	}
	steps := []struct {
		name string
		cmds []*Command
		want []want
	}{
		{"create then publish", []*Command{project, endpoint, publish(1, "a"), publish(2, "a"), publish(3, "")},
			[]want{{nil, -1}, {nil, -1}, {nil, -1}, {nil, 2}, {nil, -1}}},
		{"repeat key in a later batch", []*Command{publish(4, "a")}, []want{{nil, -2}}},
		{"delete then publish", []*Command{del, publish(5, "b"), endpoint}, []want{{nil, -1}, {ErrNotFound, -1}, {ErrNotFound, -1}}},
		{"recreate: old keys are gone", []*Command{project, endpoint, publish(6, "a")}, []want{{nil, -1}, {nil, -1}, {nil, -1}}},
	}

	batched, single := testFSM(t, "batched"), testFSM(t, "single")
	var index uint64
	firstA := ""
	for _, step := range steps {
		// Batched: each command in its own entry, all entries in one ApplyBatch (one Pebble batch).
		logs := make([]*raft.Log, len(step.cmds))
		for i, c := range step.cmds {
			logs[i] = &raft.Log{Index: index + uint64(i) + 1, Type: raft.LogCommand, Data: encodeEntry([]*Command{c})}
		}
		out := batched.ApplyBatch(logs)
		for i, o := range out {
			r := o.([]Result)[0]
			w := step.want[i]
			if !errors.Is(r.Err, w.err) || (w.err == nil && r.Err != nil) {
				t.Fatalf("%s: command %d (%s): err %v, want %v", step.name, i, step.cmds[i].Type, r.Err, w.err)
			}
			switch {
			case w.duplicate >= 0:
				orig := out[w.duplicate].([]Result)[0]
				if !r.Duplicate || r.EventID != orig.EventID {
					t.Fatalf("%s: command %d = %+v, want a duplicate of %s", step.name, i, r, orig.EventID)
				}
			case w.duplicate == -2:
				if !r.Duplicate || r.EventID != firstA {
					t.Fatalf("%s: command %d = %+v, want a duplicate of %s", step.name, i, r, firstA)
				}
			case r.Duplicate:
				t.Fatalf("%s: command %d is a duplicate of %s, want a new event", step.name, i, r.EventID)
			}
			if step.cmds[i].Type == CmdPublish && firstA == "" && r.Err == nil {
				firstA = r.EventID
			}
		}
		// Single: the same entries applied one per batch.
		for _, l := range logs {
			single.ApplyBatch([]*raft.Log{l})
		}
		index += uint64(len(logs))
		if a, b := dumpState(t, batched.st), dumpState(t, single.st); !bytes.Equal(a, b) {
			t.Fatalf("%s: state differs between one batch and one command per batch", step.name)
		}
	}
}

// A state batch is reserved at twice its entries' bytes (what a results entry writes), but never
// more than maxBatchReserve however large the entries: a run of big entries that write little
// must not reserve hundreds of MiB.
func TestBatchSizeFor(t *testing.T) {
	entries := func(sizes ...int) []*raft.Log {
		logs := make([]*raft.Log, len(sizes))
		for i, n := range sizes {
			logs[i] = &raft.Log{Data: make([]byte, n)}
		}
		return logs
	}
	for _, tt := range []struct {
		name string
		logs []*raft.Log
		want int
	}{
		{"none", nil, 1024},
		{"one small entry", entries(100), 1224},
		{"a results entry", entries(1 << 20), 2<<20 + 1024},
		{"several entries add up", entries(1000, 2000, 3000), 13024},
		{"capped", entries(4<<20, 4<<20, 4<<20), maxBatchReserve},
		{"a compressed entry counts expanded", []*raft.Log{{Data: append([]byte{entryCompressed}, s2.Encode(nil, make([]byte, 5000))...)}}, 11024},
		{"a damaged compressed entry counts as stored", []*raft.Log{{Data: []byte{entryCompressed, 0xff}}}, 1028},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := batchSizeFor(tt.logs); got != tt.want {
				t.Fatalf("batchSizeFor = %d, want %d", got, tt.want)
			}
		})
	}
}

// testFSM opens an FSM on a fresh state DB in t's temp dir, closed when t ends.
func testFSM(t *testing.T, name string) *FSM {
	t.Helper()
	st, err := openStateDB(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.close() })
	fsm, err := newFSM(st, slog.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return fsm
}

// testCmd encodes a command, failing t if it cannot.
func testCmd(t testing.TB, typ CmdType, body any, blob []byte) *Command {
	t.Helper()
	c, err := NewCommand(typ, body, blob)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// setupCmds are the commands creating f's project and its active endpoint.
func (f fixture) setupCmds(t testing.TB) (project, endpoint *Command) {
	project = testCmd(t, CmdPutProject, PutProject{Create: true, Project: model.Project{UID: f.pid, Name: "p", CreatedAt: f.now}}, nil)
	endpoint = testCmd(t, CmdPutEndpoint, PutEndpoint{Create: true, Endpoint: model.Endpoint{UID: f.eid, ProjectID: f.pid,
		URL: "http://127.0.0.1:1/", Status: model.EndpointActive, CreatedAt: f.now}}, nil)
	return project, endpoint
}
