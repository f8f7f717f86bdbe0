package raftstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// freeAddr returns a loopback address with a free port for a raft transport.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func openTestStore(t testing.TB, dir string, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{DataDir: dir, RaftAddr: freeAddr(t), Bootstrap: true, FastElections: true}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustPropose(t testing.TB, s *Store, typ CmdType, body any, blob []byte) Result {
	t.Helper()
	c, err := NewCommand(typ, body, blob)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Propose(context.Background(), c)
	if err != nil {
		t.Fatalf("propose %s: %v", typ, err)
	}
	return r
}

type fixture struct {
	pid, eid string
	now      time.Time
}

func setupProject(t testing.TB, s *Store) fixture {
	t.Helper()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	f := fixture{pid: model.NewID(now), eid: model.NewID(now), now: now}
	h := sha256.Sum256([]byte("sk_test"))
	mustPropose(t, s, CmdPutProject, PutProject{Create: true,
		Project: model.Project{UID: f.pid, Name: "p", Type: model.ProjectOutgoing, CreatedAt: now, UpdatedAt: now},
		Key:     &model.APIKey{UID: model.NewID(now), Hash: h[:], Role: model.RoleProject, CreatedAt: now}}, nil)
	mustPropose(t, s, CmdPutEndpoint, PutEndpoint{Create: true, Endpoint: model.Endpoint{
		UID: f.eid, ProjectID: f.pid, URL: "http://127.0.0.1:1/hook", Status: model.EndpointActive, CreatedAt: now}}, nil)
	return f
}

func publishCmd(f fixture, i int, idem string) (Publish, []byte) {
	at := f.now.Add(time.Duration(i) * time.Millisecond)
	ev := model.Event{UID: model.NewID(at), ProjectID: f.pid, EventType: "invoice.paid", IdempotencyKey: idem, CreatedAt: at}
	return Publish{Event: ev, Targets: []Target{{EndpointID: f.eid, DeliveryID: model.NewID(at)}}},
		CompressData([]byte(fmt.Sprintf(`{"n": %d}`, i)))
}

func TestPublishIsStoredIndexedAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	f := setupProject(t, s)

	const n = 200
	var wg sync.WaitGroup
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, blob := publishCmd(f, i, fmt.Sprintf("k%d", i))
			ids[i] = mustPropose(t, s, CmdPublish, p, blob).EventID
		}(i)
	}
	wg.Wait()
	if b, c := s.Stats().Batches.Load(), s.Stats().Commands.Load(); b >= c {
		t.Logf("no batching observed: %d entries for %d commands", b, c)
	}
	// A repeated idempotency key returns the original event.
	p, blob := publishCmd(f, 0, "k0")
	if r := mustPropose(t, s, CmdPublish, p, blob); !r.Duplicate || r.EventID != ids[0] {
		t.Fatalf("duplicate publish = %+v, want original %s", r, ids[0])
	}
	check := func(s *Store) {
		t.Helper()
		ds, _, err := s.ListDeliveries(f.pid, DeliveryFilter{Status: []model.DeliveryStatus{model.StatusScheduled}, Page: Page{Limit: 1000}})
		if err != nil || len(ds) != n {
			t.Fatalf("scheduled deliveries = %d, %v; want %d", len(ds), err, n)
		}
		due := 0
		s.ForEachDue(func(Due) bool { due++; return true })
		if due != n {
			t.Fatalf("due index has %d entries, want %d", due, n)
		}
		for i, id := range ids {
			ev, err := s.Event(f.pid, id)
			if err != nil || string(ev.Data) != fmt.Sprintf(`{"n": %d}`, i) {
				t.Fatalf("event %d: %v %q", i, err, ev)
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, nil)
	defer s.Close()
	check(s)
}

func TestResultsMoveDeliveriesThroughIndexes(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	f := setupProject(t, s)
	p, blob := publishCmd(f, 1, "")
	mustPropose(t, s, CmdPublish, p, blob)
	did := p.Targets[0].DeliveryID
	next := f.now.Add(time.Minute)
	mustPropose(t, s, CmdResults, Results{Results: []AttemptResult{{ProjectID: f.pid, DeliveryID: did,
		Status: model.StatusRetry, NextAttemptAt: next, At: f.now,
		Attempt: &model.Attempt{UID: model.NewID(f.now), Number: 1, StatusCode: 500}}}}, nil)
	d, err := s.Delivery(f.pid, did)
	if err != nil || d.Status != model.StatusRetry || d.Attempts != 1 || !d.NextAttemptAt.Equal(next) {
		t.Fatalf("after retry result: %+v %v", d, err)
	}
	var dues []Due
	s.ForEachDue(func(x Due) bool { dues = append(dues, x); return true })
	if len(dues) != 1 || !dues[0].At.Equal(next) {
		t.Fatalf("due index = %+v, want one entry at %v", dues, next)
	}
	mustPropose(t, s, CmdResults, Results{Results: []AttemptResult{{ProjectID: f.pid, DeliveryID: did,
		Status: model.StatusSuccess, At: next, Attempt: &model.Attempt{UID: model.NewID(next), Number: 2, StatusCode: 200}}}}, nil)
	dues = nil
	s.ForEachDue(func(x Due) bool { dues = append(dues, x); return true })
	if len(dues) != 0 {
		t.Fatalf("due index after success = %+v", dues)
	}
	for st, want := range map[model.DeliveryStatus]int{model.StatusRetry: 0, model.StatusScheduled: 0, model.StatusSuccess: 1} {
		ds, _, _ := s.ListDeliveries(f.pid, DeliveryFilter{Status: []model.DeliveryStatus{st}, EndpointID: f.eid})
		if len(ds) != want {
			t.Errorf("status %s: %d deliveries, want %d", st, len(ds), want)
		}
	}
	as, _ := s.Attempts(f.pid, did)
	if len(as) != 2 {
		t.Fatalf("attempts = %d, want 2", len(as))
	}
}
