package raftstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestProposeAllAnswersEachCommandInOrder: outcomes line up with the commands, a command too large
// for an entry fails alone, and a repeated idempotency key within one call creates one event.
func TestProposeAllAnswersEachCommandInOrder(t *testing.T) {
	s := openTestStore(t, t.TempDir(), func(c *Config) { c.Proposer.MaxBatchBytes = 64 << 10 })
	defer s.Close()
	f := setupProject(t, s)
	var cmds []Command
	for i := 0; i < 40; i++ {
		idem := fmt.Sprintf("k%d", i)
		if i == 30 {
			idem = "k3" // repeats command 3's key
		}
		p, blob := publishCmd(f, i, idem)
		if i == 20 {
			blob = []byte(strings.Repeat("x", 128<<10))
		}
		c, err := NewCommand(CmdPublish, p, blob)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	outs := s.ProposeAll(ctx, cmds)
	if len(outs) != len(cmds) {
		t.Fatalf("%d outcomes for %d commands", len(outs), len(cmds))
	}
	for i, o := range outs {
		switch i {
		case 20:
			if !errors.Is(o.Err, ErrTooLarge) {
				t.Fatalf("oversized command 20: %+v, want ErrTooLarge", o)
			}
		case 30:
			if o.Err != nil || !o.Result.Duplicate || o.Result.EventID != outs[3].Result.EventID {
				t.Fatalf("command 30 = %+v, want a duplicate of %s", o, outs[3].Result.EventID)
			}
		default:
			var p Publish
			if err := decode(&cmds[i], &p); err != nil {
				t.Fatal(err)
			}
			if o.Err != nil || o.Result.Duplicate || o.Result.EventID != p.Event.UID || o.Result.Matched != 1 {
				t.Fatalf("command %d = %+v, want event %s with 1 delivery", i, o, p.Event.UID)
			}
		}
	}
	evs, _, err := s.ListEvents(f.pid, EventFilter{Page: Page{Limit: 100}})
	if err != nil || len(evs) != 38 {
		t.Fatalf("%d events stored (%v), want 38", len(evs), err)
	}
}

// TestLingerGathersProposalsUnderLoad: with a linger, concurrent proposers below MaxInFlight share
// entries (without it each entry would usually carry one command, as every slot is free).
func TestLingerGathersProposalsUnderLoad(t *testing.T) {
	s := openTestStore(t, t.TempDir(), func(c *Config) { c.Proposer.Linger = 20 * time.Millisecond })
	defer s.Close()
	f := setupProject(t, s)
	b0, c0 := s.Stats().Batches.Load(), s.Stats().Commands.Load()
	const workers, each = 16, 5
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				p, blob := publishCmd(f, w*each+i, "")
				c, err := NewCommand(CmdPublish, p, blob)
				if err == nil {
					_, err = s.Propose(context.Background(), c)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	batches, cmds := s.Stats().Batches.Load()-b0, s.Stats().Commands.Load()-c0
	if cmds != workers*each || batches*2 > cmds {
		t.Fatalf("%d commands in %d entries, want %d commands at 2 or more per entry", cmds, batches, workers*each)
	}
}
