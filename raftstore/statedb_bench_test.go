package raftstore

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/sluice-gw/sluice/model"
)

// BenchmarkStatePointRead measures the state DB's point reads on the ingest and dispatch paths as the
// store grows: an idempotency key never seen before (absent: the common case of a publish's check), a
// recent event (what a lane loads) and a key written before everything else (the project record,
// which each publish read until the catalog answered it: present, but in the oldest, deepest data). Each stored event is written as the FSM writes one (its
// record, its 1 KiB data and its idempotency entry) in batches, then the DB is left to compact for a
// moment. "pebble-defaults" is the state DB's earlier configuration (only the 64 MiB memtable);
// "state" is stateOptions. cpu-ns/op is the process's CPU time per read (the machine is shared, so
// wall time is noisy); run with -benchtime=200000x.
func BenchmarkStatePointRead(b *testing.B) {
	opts := []struct {
		name string
		make func() *pebble.Options
	}{
		{"pebble-defaults", func() *pebble.Options { return &pebble.Options{MemTableSize: 64 << 20} }},
		{"state", stateOptions},
	}
	for _, stored := range []int{100_000, 400_000} {
		for _, o := range opts {
			b.Run(fmt.Sprintf("%s/stored=%d", o.name, stored), func(b *testing.B) {
				po := o.make()
				db, err := pebble.Open(b.TempDir(), po)
				if po.Cache != nil {
					po.Cache.Unref()
				}
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				pid := model.NewID(time.Now())
				if err := db.Set(key(tagProject, pid), []byte(`{"uid":"`+pid+`"}`), pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				evids := fillEvents(b, db, pid, stored)
				rng := rand.New(rand.NewPCG(1, 2))
				for _, kind := range []string{"absent-idempotency-key", "recent-event", "oldest-key"} {
					b.Run(kind, func(b *testing.B) {
						var idem [16]byte
						cpu0 := cpuNow()
						for b.Loop() {
							var k []byte
							switch kind {
							case "recent-event":
								k = key(tagEvent, pid, evids[len(evids)-1-rng.IntN(len(evids)/100+1)])
							case "oldest-key":
								k = key(tagProject, pid)
							default:
								binary.BigEndian.PutUint64(idem[:8], rng.Uint64())
								k = key(tagIdempotency, pid, fmt.Sprintf("%x", idem[:8]))
							}
							v, closer, err := db.Get(k)
							if err == nil {
								_ = v
								closer.Close()
							} else if err != pebble.ErrNotFound {
								b.Fatal(err)
							}
						}
						b.ReportMetric(float64(cpuNow()-cpu0)/float64(b.N), "cpu-ns/op")
					})
				}
			})
		}
	}
}

// fillEvents writes n events as the FSM does (record, data, idempotency entry) and returns their ids.
func fillEvents(b *testing.B, db *pebble.DB, pid string, n int) []string {
	b.Helper()
	data := []byte(`{"sent_ns":1234567890123456789,"pad":"` + strings.Repeat("x", 980) + `"}`)
	var gen model.IDGen
	ids := make([]string, n)
	now := time.Now()
	batch := db.NewBatch()
	for i := range n {
		id := gen.New(now.Add(time.Duration(i) * time.Microsecond))
		ids[i] = id
		rec := fmt.Sprintf(`{"uid":%q,"project_id":%q,"event_type":"bench.stored","idempotency_key":"k-%d","created_at":%q}`,
			id, pid, i, now.Format(time.RFC3339Nano))
		batch.Set(key(tagEvent, pid, id), []byte(rec), nil)
		batch.Set(key(tagEventData, pid, id), data, nil)
		batch.Set(key(tagIdempotency, pid, fmt.Sprintf("k-%d", i)), []byte(id), nil)
		if batch.Count() >= 3000 {
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch = db.NewBatch()
		}
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		b.Fatal(err)
	}
	// Let flushes and compactions catch up a little, as a node's would between bursts.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && db.Metrics().Compact.EstimatedDebt > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	return ids
}

func cpuNow() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
