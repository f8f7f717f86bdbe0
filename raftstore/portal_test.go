package raftstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
)

func TestPortalLinkIndexFollowsApplyRestartAndProjectDeletion(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	f := setupProject(t, s)
	hash := func(tok string) [sha256.Size]byte { return sha256.Sum256([]byte(tok)) }
	put := func(tok, owner string) model.PortalLink {
		h := hash(tok)
		l := model.PortalLink{UID: model.NewID(f.now), ProjectID: f.pid, OwnerID: owner, Hash: h[:], ExpiresAt: f.now.Add(time.Hour), CreatedAt: f.now}
		if r := mustPropose(t, s, CmdPutPortalLink, PutPortalLink{Link: l}, nil); r.Err != nil {
			t.Fatal(r.Err)
		}
		return l
	}
	lookup := func(s *Store, tok string) *model.PortalLink {
		t.Helper()
		l, err := s.PortalLinkByToken(hash(tok))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// Built lazily before any link exists, then kept current by apply.
	if lookup(s, "pt_a") != nil {
		t.Fatal("unknown token found")
	}
	a := put("pt_a", "alice")
	if l := lookup(s, "pt_a"); l == nil || l.OwnerID != "alice" {
		t.Fatalf("lookup after put: %+v", l)
	}
	b := put("pt_b", "bob")
	c, _ := NewCommand(CmdPutPortalLink, PutPortalLink{Link: a}, nil)
	if r, err := s.Propose(context.Background(), c); !errors.Is(err, ErrExists) && !errors.Is(r.Err, ErrExists) {
		t.Fatalf("duplicate link: %v %v", err, r.Err)
	}
	if r := mustPropose(t, s, CmdRevokePortalLink, RevokePortalLink{ProjectID: f.pid, ID: b.UID, At: f.now}, nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	if lookup(s, "pt_b") != nil {
		t.Fatal("revoked link still authenticates")
	}
	ls, _, err := s.PortalLinks(f.pid, "", Page{})
	if err != nil || len(ls) != 2 || ls[0].UID != b.UID || ls[0].RevokedAt == nil {
		t.Fatalf("list: %v %+v", err, ls)
	}

	// A restart rebuilds the index from the state.
	s.Close()
	s = openTestStore(t, dir, nil)
	defer s.Close()
	if lookup(s, "pt_a") == nil || lookup(s, "pt_b") != nil {
		t.Fatal("index after restart differs")
	}
	// Deleting the project deletes its links.
	mustPropose(t, s, CmdDeleteProject, DeleteRef{ProjectID: f.pid, At: f.now}, nil)
	if lookup(s, "pt_a") != nil {
		t.Fatal("link of a deleted project still authenticates")
	}
	if _, err := s.PortalLink(f.pid, a.UID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("link row after project deletion: %v", err)
	}
}

func TestQueryDeliveriesMergesEndpointsNewestFirstWithinBudget(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	f := setupProject(t, s)
	eps := []string{f.eid, model.NewID(f.now), model.NewID(f.now)}
	for _, e := range eps[1:] {
		mustPropose(t, s, CmdPutEndpoint, PutEndpoint{Create: true, Endpoint: model.Endpoint{
			UID: e, ProjectID: f.pid, URL: "http://127.0.0.1:1/x", Status: model.EndpointPaused, CreatedAt: f.now}}, nil)
	}
	// 60 events round-robin over three endpoints; every 7th carries "needle" in its data.
	var want []string // deliveries to eps[0] and eps[2], oldest first
	for i := 0; i < 60; i++ {
		at := f.now.Add(time.Duration(i+1) * time.Millisecond)
		ev := model.Event{UID: model.NewID(at), ProjectID: f.pid, EventType: "t", CreatedAt: at}
		did := model.NewID(at)
		data := fmt.Sprintf(`{"i":%d}`, i)
		if i%7 == 0 {
			data = fmt.Sprintf(`{"i":%d,"tag":"needle"}`, i)
		}
		mustPropose(t, s, CmdPublish, Publish{Event: ev, Targets: []Target{{EndpointID: eps[i%3], DeliveryID: did}}}, CompressData([]byte(data)))
		if i%3 != 1 {
			want = append(want, did)
		}
	}
	// Page through with a small page and a smaller scan budget: every delivery exactly once, newest
	// first, and every call reads at most the budget.
	var got []string
	q := DeliveryQuery{Endpoints: []string{eps[0], eps[2]}, ByEndpoints: true, ScanBudget: 7}
	q.Limit = 5
	for calls := 0; ; calls++ {
		if calls > 100 {
			t.Fatal("paging does not end")
		}
		ds, next, err := s.QueryDeliveries(f.pid, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got = append(got, d.UID)
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	if len(got) != len(want) {
		t.Fatalf("got %d deliveries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[len(want)-1-i] {
			t.Fatalf("delivery %d = %s, want %s (newest first)", i, got[i], want[len(want)-1-i])
		}
	}
	// Search in payloads, across all endpoints (no scope): i = 0, 7, …, 56 → 9 events.
	evs, next, err := s.QueryEvents(f.pid, EventQuery{Search: "needle", EventFilter: EventFilter{Page: Page{Limit: 100}}})
	if err != nil || next != "" || len(evs) != 9 {
		t.Fatalf("search: %d events, next %q, err %v", len(evs), next, err)
	}
	// The same through one endpoint's deliveries: i%3 == 0 and i%7 == 0 → 0, 21, 42.
	evs, _, err = s.QueryEvents(f.pid, EventQuery{Search: "needle", Endpoints: eps[:1], ByEndpoints: true, EventFilter: EventFilter{Page: Page{Limit: 100}}})
	if err != nil || len(evs) != 3 {
		t.Fatalf("scoped search: %d events, err %v", len(evs), err)
	}
	ok, err := s.EventDeliveredTo(f.pid, evs[0].UID, map[string]bool{eps[1]: true}, 10)
	if err != nil || ok {
		t.Fatalf("event delivered to another endpoint: %v %v", ok, err)
	}
	ok, err = s.EventDeliveredTo(f.pid, evs[0].UID, map[string]bool{eps[0]: true}, 10)
	if err != nil || !ok {
		t.Fatalf("event not delivered to its endpoint: %v %v", ok, err)
	}
}
