package api

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/sluice-gw/sluice/model"
)

// TestPublishAllGivesEachItemItsOwnOutcome: one call with new events, a repeated key within the call,
// a key stored before, an unknown endpoint and an unknown project; each item gets what Publish
// would have given it.
func TestPublishAllGivesEachItemItsOwnOutcome(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	srv := New(e.st, Config{})
	ctx := context.Background()
	req := func(ep, key string) *PublishRequest {
		return &PublishRequest{EndpointID: ep, EventType: "x", Data: json.RawMessage(`{"a":1}`), IdempotencyKey: key}
	}
	before, err := srv.Publish(ctx, w.pid, req(w.ep1, "old"))
	if err != nil {
		t.Fatal(err)
	}
	items := []PublishItem{
		{ProjectID: w.pid, Req: req(w.ep1, "a")},
		{ProjectID: w.pid, Req: req(w.ep1, "")},
		{ProjectID: w.pid, Req: req(w.ep1, "a")},
		{ProjectID: w.pid, Req: req(w.ep1, "old")},
		{ProjectID: w.pid, Req: req(model.NewID(before.Event.CreatedAt), "b")},
		{ProjectID: model.NewID(before.Event.CreatedAt), Req: req(w.ep1, "c")},
	}
	srv.PublishAll(ctx, items)
	for i, want := range []struct {
		status  int    // ClientError status; 0: success
		dupOf   string // the original event id when a duplicate
		created bool
	}{
		{created: true},
		{created: true},
		{dupOf: "item 0"},
		{dupOf: before.Event.UID},
		{status: 404},
		{status: 404},
	} {
		it := items[i]
		if want.status != 0 {
			code, _, ok := ClientError(it.Err)
			if !ok || code != want.status || it.Res != nil {
				t.Fatalf("item %d: %v %+v, want status %d", i, it.Err, it.Res, want.status)
			}
			continue
		}
		if it.Err != nil || it.Res == nil {
			t.Fatalf("item %d: %v", i, it.Err)
		}
		orig := want.dupOf
		if orig == "item 0" {
			orig = items[0].Res.Event.UID
		}
		if it.Res.Duplicate != (orig != "") || (orig != "" && it.Res.Event.UID != orig) || it.Res.Matched != 1 {
			t.Fatalf("item %d = %+v (event %s), want duplicate of %q", i, it.Res, it.Res.Event.UID, orig)
		}
		if got, err := e.st.Event(w.pid, it.Res.Event.UID); err != nil || got.EventType != "x" {
			t.Fatalf("item %d: stored event %v, %v", i, got, errors.Unwrap(err))
		}
	}
}
