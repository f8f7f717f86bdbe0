package raftstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func TestKeyFilterNeverMissesAKey(t *testing.T) {
	for _, n := range []int{0, 1, 1000, 3*filterFirstCap + 7} { // the last one grows two segments
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newKeyFilter()
			if f.absent([]byte("Ianything")) {
				t.Fatal("a filter that is not built yet claimed a key absent")
			}
			f.ready.Store(true)
			for i := 0; i < n; i++ {
				f.add(fmt.Appendf(nil, "Ipid-%d", i))
			}
			for i := 0; i < n; i++ {
				if k := fmt.Appendf(nil, "Ipid-%d", i); f.absent(k) {
					t.Fatalf("added key %s reported absent", k)
				}
			}
			const probes = 20000
			fp := 0
			for i := 0; i < probes; i++ {
				if !f.absent(fmt.Appendf(nil, "Iother-%d", i)) {
					fp++
				}
			}
			if rate := float64(fp) / probes; rate > 0.02 {
				t.Fatalf("false positive rate %.3f with %d keys, want < 0.02", rate, n)
			}
		})
	}
}

// TestKeyFilterBuildReadsStoredKeys: keys already in the state DB (more than one scan chunk) are all
// in the filter once it is ready, and a replaced filter stops building.
func TestKeyFilterBuildReadsStoredKeys(t *testing.T) {
	st, err := openStateDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	const n = 2*filterScanChunk + 100
	err = st.view(func(db *pebble.DB) error {
		b := db.NewBatch()
		for i := 0; i < n; i++ {
			b.Set(key(tagIdempotency, "p", fmt.Sprintf("k%06d", i)), []byte("ev"), nil)
		}
		b.Set(key(tagEvent, "p", "not-an-idempotency-key"), nil, nil)
		return b.Commit(pebble.NoSync)
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newKeyFilter()
	f.build(st, func() *keyFilter { return f })
	if !f.ready.Load() {
		t.Fatal("filter not ready after a complete build")
	}
	for i := 0; i < n; i++ {
		if k := key(tagIdempotency, "p", fmt.Sprintf("k%06d", i)); f.absent(k) {
			t.Fatalf("stored key %s reported absent", k)
		}
	}
	stale := newKeyFilter()
	stale.build(st, func() *keyFilter { return f })
	if stale.ready.Load() {
		t.Fatal("a filter that was replaced finished building")
	}
}

// TestIdempotencyKeysSurviveRestartWithFilter: after a restart, keys stored before it are found both
// by the API's lookup and by the FSM (no second event), and new keys are not.
func TestIdempotencyKeysSurviveRestartWithFilter(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	f := setupProject(t, s)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		p, blob := publishCmd(f, i, fmt.Sprintf("k%d", i))
		ids[i] = mustPropose(t, s, CmdPublish, p, blob).EventID
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, nil)
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !s.fsm.idem.Load().ready.Load() {
		if time.Now().After(deadline) {
			t.Fatal("idempotency filter not built after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, want := range ids {
		if got, ok := s.IdempotentEvent(f.pid, fmt.Sprintf("k%d", i)); !ok || got != want {
			t.Fatalf("IdempotentEvent(k%d) = %q, %v; want %s", i, got, ok, want)
		}
	}
	if id, ok := s.IdempotentEvent(f.pid, "never-used"); ok {
		t.Fatalf("unused key found: %s", id)
	}
	p, blob := publishCmd(f, n+1, "k3")
	if r := mustPropose(t, s, CmdPublish, p, blob); !r.Duplicate || r.EventID != ids[3] {
		t.Fatalf("republish of k3 after restart = %+v, want duplicate of %s", r, ids[3])
	}
	p, blob = publishCmd(f, n+2, "fresh")
	r := mustPropose(t, s, CmdPublish, p, blob)
	if r.Duplicate || r.Err != nil {
		t.Fatalf("publish with a new key = %+v", r)
	}
	if got, ok := s.IdempotentEvent(f.pid, "fresh"); !ok || got != r.EventID {
		t.Fatalf("IdempotentEvent(fresh) = %q, %v; want %s", got, ok, r.EventID)
	}
}
