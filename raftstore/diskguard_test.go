package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/sluice-gw/sluice/model"
)

// TestDiskGuardRefusesOnlyNewEvents: below the free-space minimum a publish is refused with
// ErrDiskFull and stores nothing, while other writes (small, and what keeps delivery and management
// going) still commit; ProposeAll refuses only its publishes.
func TestDiskGuardRefusesOnlyNewEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		min     int64
		refused bool
	}{
		{"guard off", 0, false},
		{"plenty of space", 1 << 20, false},
		{"below the minimum", 1 << 62, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, t.TempDir(), func(c *Config) { c.MinFreeDisk = tc.min })
			defer s.Close()
			if s.DiskFree() <= 0 {
				t.Fatalf("DiskFree = %d after open", s.DiskFree())
			}
			f := setupProject(t, s) // project and endpoint writes are never refused
			p, blob := publishCmd(f, 0, "k0")
			pub, err := NewPublishCommand(p, blob)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Propose(context.Background(), pub)
			if got := errors.Is(err, ErrDiskFull); got != tc.refused {
				t.Fatalf("Propose(publish) err = %v, refused %v, want %v", err, got, tc.refused)
			}
			other, err := NewCommand(CmdPutProject, PutProject{Project: model.Project{UID: f.pid, Name: "renamed", CreatedAt: f.now}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p2, blob2 := publishCmd(f, 1, "k1")
			pub2, err := NewPublishCommand(p2, blob2)
			if err != nil {
				t.Fatal(err)
			}
			out := s.ProposeAll(context.Background(), []Command{pub2, other})
			if got := errors.Is(out[0].Err, ErrDiskFull); got != tc.refused {
				t.Fatalf("ProposeAll publish err = %v, want refused %v", out[0].Err, tc.refused)
			}
			if out[1].Err != nil || out[1].Result.Err != nil {
				t.Fatalf("ProposeAll project update: %v %v", out[1].Err, out[1].Result.Err)
			}
			// A publish a follower forwards is held to the leader's disk as well, and the follower
			// gets ErrDiskFull back.
			p3, blob3 := publishCmd(f, 2, "k2")
			pub3, err := NewPublishCommand(p3, blob3)
			if err != nil {
				t.Fatal(err)
			}
			var reply wireResult
			if err := json.Unmarshal(s.ServeForwarded(context.Background(), encodeEntry([]*Command{&pub3})), &reply); err != nil {
				t.Fatal(err)
			}
			if got := errors.Is(decodeErr(reply.ErrCode, reply.ErrMsg), ErrDiskFull); got != tc.refused {
				t.Fatalf("forwarded publish reply %+v, want refused %v", reply, tc.refused)
			}
			if tc.refused {
				for _, k := range []string{"k0", "k1", "k2"} {
					if _, ok := s.IdempotentEvent(f.pid, k); ok {
						t.Fatalf("refused publish %s stored its event", k)
					}
				}
			}
		})
	}
}
