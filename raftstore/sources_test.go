package raftstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// tryPropose proposes a command expected to fail and returns its error.
func tryPropose(t *testing.T, s *Store, typ CmdType, body any) error {
	t.Helper()
	c, err := NewCommand(typ, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Propose(context.Background(), c)
	if err == nil {
		err = r.Err
	}
	return err
}

func incomingProject(t *testing.T, s *Store, now time.Time) string {
	t.Helper()
	pid := model.NewID(now)
	mustPropose(t, s, CmdPutProject, PutProject{Create: true,
		Project: model.Project{UID: pid, Name: "in", Type: model.ProjectIncoming, CreatedAt: now, UpdatedAt: now}}, nil)
	return pid
}

func testSource(pid, mask string, now time.Time) model.Source {
	return model.Source{UID: model.NewID(now), ProjectID: pid, Name: "gh", Type: model.SourceHTTP, MaskID: mask,
		Provider: "github", Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{Secret: "s"}},
		CreatedAt: now, UpdatedAt: now}
}

func TestSourcesAreIndexedByMaskAcrossRestartAndSnapshotRecovery(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) { c.TrailingLogs = 2; c.SnapshotThreshold = 1 << 30 }
	s := openTestStore(t, dir, small)
	now := time.UnixMilli(1_800_000_000_000).UTC()
	pid := incomingProject(t, s, now)

	// The first lookup builds the index; later commits update it through the after-commit hooks.
	if s.SourceByMask("nope") != nil {
		t.Fatal("found a source in an empty index")
	}
	src := testSource(pid, "mask-one", now)
	mustPropose(t, s, CmdPutSource, PutSource{Source: src, Create: true}, nil)
	if got := s.SourceByMask("mask-one"); got == nil || got.UID != src.UID {
		t.Fatalf("SourceByMask = %+v", got)
	}
	if err := tryPropose(t, s, CmdPutSource, PutSource{Source: src, Create: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create = %v, want ErrExists", err)
	}
	moved := src
	moved.MaskID = "other"
	if err := tryPropose(t, s, CmdPutSource, PutSource{Source: moved}); !errors.Is(err, ErrBadCmd) {
		t.Fatalf("mask change = %v, want ErrBadCmd", err)
	}
	renamed := src
	renamed.Name, renamed.UpdatedAt = "renamed", now.Add(time.Second)
	mustPropose(t, s, CmdPutSource, PutSource{Source: renamed}, nil)
	if got := s.Source(pid, src.UID); got == nil || got.Name != "renamed" {
		t.Fatalf("Source after update = %+v", got)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	second := testSource(pid, "mask-two", now.Add(time.Millisecond))
	mustPropose(t, s, CmdPutSource, PutSource{Source: second, Create: true}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Lose the whole state DB: the snapshot is restored and the log after it replayed.
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, small)
	defer s.Close()
	for mask, want := range map[string]string{"mask-one": "renamed", "mask-two": "gh"} {
		if got := s.SourceByMask(mask); got == nil || got.Name != want {
			t.Fatalf("after recovery SourceByMask(%s) = %+v, want name %s", mask, got, want)
		}
	}
	if n := len(s.Sources(pid)); n != 2 {
		t.Fatalf("Sources = %d, want 2", n)
	}
}

func TestDeletingSourceRemovesItsSubscriptionsAndProjectDeletionForgetsIt(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	pid := incomingProject(t, s, now)
	eid := model.NewID(now)
	mustPropose(t, s, CmdPutEndpoint, PutEndpoint{Create: true, Endpoint: model.Endpoint{UID: eid, ProjectID: pid,
		URL: "http://127.0.0.1:1/", Status: model.EndpointActive, CreatedAt: now}}, nil)
	a, b := testSource(pid, "mask-a", now), testSource(pid, "mask-b", now.Add(time.Millisecond))
	mustPropose(t, s, CmdPutSource, PutSource{Source: a, Create: true}, nil)
	mustPropose(t, s, CmdPutSource, PutSource{Source: b, Create: true}, nil)
	subA := model.Subscription{UID: model.NewID(now), ProjectID: pid, EndpointID: eid, SourceID: a.UID, Type: "api"}
	subB := model.Subscription{UID: model.NewID(now.Add(time.Millisecond)), ProjectID: pid, EndpointID: eid, SourceID: b.UID, Type: "api"}
	mustPropose(t, s, CmdPutSubscription, PutSubscription{Subscription: subA, Create: true}, nil)
	mustPropose(t, s, CmdPutSubscription, PutSubscription{Subscription: subB, Create: true}, nil)

	r := mustPropose(t, s, CmdDeleteSource, DeleteRef{ProjectID: pid, ID: a.UID, At: now}, nil)
	if r.Err != nil || r.Count != 1 {
		t.Fatalf("delete source = %+v", r)
	}
	if s.SourceByMask("mask-a") != nil || s.Subscription(pid, subA.UID) != nil || s.Subscription(pid, subB.UID) == nil {
		t.Fatal("deleting a source left it or its subscription, or took another source's")
	}
	if err := tryPropose(t, s, CmdDeleteSource, DeleteRef{ProjectID: pid, ID: a.UID, At: now}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete = %v", err)
	}
	mustPropose(t, s, CmdDeleteProject, DeleteRef{ProjectID: pid, At: now}, nil)
	if s.SourceByMask("mask-b") != nil || s.Sources(pid) != nil {
		t.Fatal("a deleted project's source is still served")
	}
	// Sources belong to incoming projects only.
	f := setupProject(t, s)
	if err := tryPropose(t, s, CmdPutSource, PutSource{Source: testSource(f.pid, "m", now), Create: true}); !errors.Is(err, ErrBadCmd) {
		t.Fatalf("source in an outgoing project = %v", err)
	}
}
