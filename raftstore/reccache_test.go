package raftstore

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sluice-gw/sluice/model"
)

// The record cache must leave the state exactly as reading every record would: the same entries
// applied by an FSM without the cache, and by one whose cache holds two records (so most of its
// reads miss and its admissions are refused), give byte-identical states after every step. The steps
// read records the cache holds at every turn: results after results (attempt counts), a late failure
// after a success, a project deleted (and recreated) under deliveries the cache still held.
func TestRecordCacheKeepsStateExact(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000).UTC()
	f := fixture{pid: model.NewID(now), eid: model.NewID(now.Add(time.Millisecond)), now: now}
	cmd := func(typ CmdType, body any, blob []byte) *Command { return testCmd(t, typ, body, blob) }
	project, endpoint := f.setupCmds(t)
	var dids []string
	var publishes []*Command
	for i := range 5 {
		p, blob := publishCmd(f, i, "")
		dids = append(dids, p.Targets[0].DeliveryID)
		publishes = append(publishes, cmd(CmdPublish, p, blob))
	}
	attempt := 0
	result := func(i int, st model.DeliveryStatus, number int) AttemptResult {
		attempt++
		at := now.Add(time.Duration(attempt) * time.Second)
		return AttemptResult{ProjectID: f.pid, DeliveryID: dids[i], Status: st, NextAttemptAt: at.Add(time.Minute), At: at,
			Attempt: &model.Attempt{UID: model.NewID(at), DeliveryID: dids[i], ProjectID: f.pid, EndpointID: f.eid,
				Number: number, StatusCode: 500, CreatedAt: at}}
	}
	results := func(rs ...AttemptResult) *Command { c := NewResultsCommand(rs); return &c }
	del := cmd(CmdDeleteProject, DeleteRef{ProjectID: f.pid, At: now}, nil)

	steps := []struct {
		name   string
		cmds   []*Command
		cached int // records the cache holds afterwards
	}{
		{"publish", append([]*Command{project, endpoint}, publishes...), 5},
		{"first results", []*Command{results(result(0, model.StatusRetry, 1), result(1, model.StatusSuccess, 1),
			result(2, model.StatusFailed, 1)), results(result(0, model.StatusRetry, 2))}, 3},
		{"results on results", []*Command{results(result(0, model.StatusRetry, 3), result(3, model.StatusRetry, 1))}, 3},
		{"a late failure after a success", []*Command{results(result(1, model.StatusFailed, 2), result(4, model.StatusSuccess, 1))}, 2},
		{"project deleted under cached records", []*Command{del, results(result(0, model.StatusSuccess, 4))}, 0},
		{"recreated project", []*Command{project, endpoint, results(result(3, model.StatusRetry, 2))}, 0},
	}
	open := func(name string, max int) *FSM {
		fsm := testFSM(t, name)
		fsm.recs = newRecordCache(max)
		return fsm
	}
	cached, uncached, tiny := open("cached", recordCacheMax), open("uncached", 0), open("tiny", 2)
	var index uint64
	for _, step := range steps {
		logs := make([]*raft.Log, len(step.cmds))
		for i, c := range step.cmds {
			index++
			logs[i] = &raft.Log{Index: index, Type: raft.LogCommand, Data: encodeEntry([]*Command{c})}
		}
		want := uncached.ApplyBatch(logs)
		for name, fsm := range map[string]*FSM{"cached": cached, "tiny": tiny} {
			got := fsm.ApplyBatch(logs)
			for i := range got {
				if g, w := got[i].([]Result)[0], want[i].([]Result)[0]; g.Err != w.Err && (g.Err == nil || w.Err == nil || g.Err.Error() != w.Err.Error()) {
					t.Fatalf("%s, %s: command %d: err %v, without the cache %v", step.name, name, i, g.Err, w.Err)
				}
			}
			if !bytes.Equal(dumpState(t, fsm.st), dumpState(t, uncached.st)) {
				t.Fatalf("%s: the state with the %s cache differs from the state without one", step.name, name)
			}
		}
		if n := cached.recs.len(); n != step.cached {
			t.Errorf("%s: the cache holds %d records, want %d", step.name, n, step.cached)
		}
		if n := tiny.recs.len(); n > 2 {
			t.Errorf("%s: the tiny cache holds %d records, past its bound", step.name, n)
		}
	}
	var d model.Delivery
	if err := getDelivery(cached.st.db, f.pid, dids[0], &d); err == nil {
		t.Errorf("a result after the project's deletion brought back delivery %+v", d)
	}
}

// A snapshot's restore replaces the state under the cache: records cached since must not outlive it.
func TestRecordCacheIsClearedByRestore(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000).UTC()
	f := fixture{pid: model.NewID(now), eid: model.NewID(now.Add(time.Millisecond)), now: now}
	fsm := testFSM(t, "state")
	st := fsm.st
	var index uint64
	applyCmd := func(c *Command) {
		t.Helper()
		index++
		out := fsm.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: encodeEntry([]*Command{c})}})
		if err := out[0].([]Result)[0].Err; err != nil {
			t.Fatalf("apply %s: %v", c.Type, err)
		}
	}
	apply := func(typ CmdType, body any, blob []byte) { t.Helper(); applyCmd(testCmd(t, typ, body, blob)) }
	project, endpoint := f.setupCmds(t)
	applyCmd(project)
	applyCmd(endpoint)
	p, blob := publishCmd(f, 1, "")
	apply(CmdPublish, p, blob)
	did := p.Targets[0].DeliveryID
	snap := dumpState(t, st) // the delivery scheduled, no attempt yet

	retry := func(number int) Results {
		at := now.Add(time.Duration(number) * time.Second)
		return Results{Results: []AttemptResult{{ProjectID: f.pid, DeliveryID: did, Status: model.StatusRetry,
			NextAttemptAt: at.Add(time.Minute), At: at, Attempt: &model.Attempt{UID: model.NewID(at), DeliveryID: did,
				ProjectID: f.pid, EndpointID: f.eid, Number: number, StatusCode: 500, CreatedAt: at}}}}
	}
	apply(CmdResults, retry(3), nil) // cached: three attempts
	if err := fsm.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	index = fsm.AppliedIndex()
	apply(CmdResults, retry(1), nil)
	var d model.Delivery
	if err := getDelivery(st.db, f.pid, did, &d); err != nil || d.Attempts != 1 {
		t.Fatalf("after the restore and one attempt: %+v, %v; want 1 attempt", d, err)
	}
}
