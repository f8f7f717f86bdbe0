package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// A seeder fills a stopped node's store quickly for the scale scenarios, through the same code the
// node itself runs: the runner opens the node's data directory as that node (same node id, Raft
// address and directory), publishes with api.Server.Publish (the one publish path HTTP and TCP ingest
// call: idempotency check, subscription matching, a CmdPublish through the Raft log and the FSM) and
// records attempt results with the CmdResults command the delivery engine proposes. What is on disk
// afterwards is what the node would have written had the same publishes and attempts come over the
// network; only the network round trips (and, for attempts, the HTTP request itself) are skipped,
// which is what made 1M pending retries and 10M stored events unreachable in a benchmark's time.
type seeder struct {
	st  *raftstore.Store
	api *api.Server
}

// openSeeder opens s's data directory in this process; s must be stopped (Terminate) first.
func openSeeder(ctx context.Context, s *harness.Sluice) (*seeder, error) {
	if s.Running() {
		return nil, errors.New("seeder: the node is running")
	}
	nodeID := s.NodeID
	if nodeID == "" {
		nodeID = "node1" // `sluice serve`'s default --node-id
	}
	quiet := slog.New(slog.DiscardHandler)
	st, err := raftstore.Open(raftstore.Config{NodeID: nodeID, DataDir: s.DataDir, RaftAddr: s.RaftAddr, FastElections: true, Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("seeder: open %s: %w", s.DataDir, err)
	}
	if err := waitUntil(ctx, time.Minute, st.Ready); err != nil {
		st.Close()
		return nil, fmt.Errorf("seeder: store %s never ready: %w", s.DataDir, err)
	}
	return &seeder{st: st, api: api.New(st, api.Config{Logger: quiet, WriteTimeout: time.Minute})}, nil
}

func (sd *seeder) close() error { return sd.st.Close() }

// seedStats is how a seeding step went.
type seedStats struct {
	N        int64
	Elapsed  time.Duration
	Err      error // the first publish error, if any (seeding stops at it)
	Complete bool  // N reached the count asked for
}

// publish broadcasts n events of eventType (data as given, each with its own idempotency key as the
// TCP client adds) to project pid from conc goroutines, bounded by limit. Concurrent publishes share
// the proposer's Raft entries exactly as concurrent clients do.
func (sd *seeder) publish(ctx context.Context, pid, eventType string, data []byte, n int64, conc int, limit time.Duration) seedStats {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t0 := time.Now()
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	prefix := "seed-" + strconv.FormatInt(t0.UnixNano(), 36) + "-"
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				in := &api.PublishRequest{EventType: eventType, Data: data, IdempotencyKey: prefix + strconv.FormatInt(i, 36)}
				if _, err := sd.api.Publish(ctx, pid, in); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = fmt.Errorf("seed publish %d: %w", i, err); cancel() })
					}
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return seedStats{N: done.Load(), Elapsed: time.Since(t0), Err: firstErr, Complete: done.Load() >= n}
}

// failFirstAttempts records a failed first attempt (HTTP 500) for every delivery due by now, with its
// retry due at retryAt plus up to spread (in delivery order, like retries of a build that took that
// long), as CmdResults batches of batch results with 4 in flight: the engine's own batching. tmpl is
// the attempt record of a real failed attempt of the same deployment (its headers and response are
// copied; ids, number, URL and times are set per delivery), so the stored records have the real shape.
func (sd *seeder) failFirstAttempts(ctx context.Context, tmpl *model.Attempt, retryAt time.Time, spread time.Duration, batch int, limit time.Duration) seedStats {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t0 := time.Now()
	now := t0.UTC()
	batches := make(chan []raftstore.AttemptResult, 4)
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if ctx.Err() != nil {
					continue // drain
				}
				cmd, err := raftstore.NewCommand(raftstore.CmdResults, raftstore.Results{Results: b}, nil)
				if err == nil {
					var res raftstore.Result
					if res, err = sd.st.Propose(ctx, cmd); err == nil {
						err = res.Err
					}
				}
				if err != nil {
					if ctx.Err() == nil { // past the bound is not an error: the stats say how far it got
						fail(fmt.Errorf("seed results (%d): %w", len(b), err))
					}
					continue
				}
				done.Add(int64(len(b)))
			}
		}()
	}
	// The due index is read through one iterator (a point-in-time view), so the results applied
	// meanwhile, which move each delivery an hour on, are not seen again.
	var i int64
	cur := make([]raftstore.AttemptResult, 0, batch)
	err := sd.st.ForEachDue(func(d raftstore.Due) bool {
		if ctx.Err() != nil || d.At.After(now) {
			return false
		}
		ep := sd.st.Endpoint(d.ProjectID, d.EndpointID)
		if ep == nil {
			return true
		}
		a := *tmpl
		a.UID = model.NewID(now)
		a.DeliveryID, a.ProjectID, a.EndpointID = d.DeliveryID, d.ProjectID, d.EndpointID
		a.Number, a.URL, a.CreatedAt = 1, ep.URL, now
		a.RequestHeaders = tmpl.RequestHeaders.Clone()
		a.RequestHeaders.Set("X-Sluice-Delivery-Id", d.DeliveryID)
		a.RequestHeaders.Set("X-Sluice-Attempt", "1")
		next := retryAt
		if spread > 0 {
			next = next.Add(time.Duration(i%1_000_000) * spread / 1_000_000)
		}
		i++
		cur = append(cur, raftstore.AttemptResult{ProjectID: d.ProjectID, DeliveryID: d.DeliveryID, Status: model.StatusRetry,
			NextAttemptAt: next.UTC(), Attempt: &a, At: now.Add(time.Duration(a.LatencyMS * float64(time.Millisecond)))})
		if len(cur) == batch {
			select {
			case batches <- cur:
			case <-ctx.Done():
				return false
			}
			cur = make([]raftstore.AttemptResult, 0, batch)
		}
		return true
	})
	if len(cur) > 0 && ctx.Err() == nil {
		batches <- cur
	}
	close(batches)
	wg.Wait()
	if err != nil && firstErr == nil && ctx.Err() == nil {
		firstErr = fmt.Errorf("seed: read due index: %w", err)
	}
	return seedStats{N: done.Load(), Elapsed: time.Since(t0), Err: firstErr, Complete: ctx.Err() == nil && firstErr == nil}
}

// failedAttemptTemplate is the record of a real failed (5xx) attempt among project pid's deliveries in
// retry, or a record of the same shape when there is none.
func (sd *seeder) failedAttemptTemplate(pid string) *model.Attempt {
	ds, _, err := sd.st.ListDeliveries(pid, raftstore.DeliveryFilter{Status: []model.DeliveryStatus{model.StatusRetry}, Page: raftstore.Page{Limit: 20}})
	if err == nil {
		for _, d := range ds {
			as, err := sd.st.Attempts(pid, d.UID)
			if err != nil {
				continue
			}
			for _, a := range as {
				if a.StatusCode >= 500 {
					return a
				}
			}
		}
	}
	h := http.Header{}
	for k, v := range map[string]string{"Content-Type": "application/json", "User-Agent": "Sluice/bench",
		"X-Sluice-Event-Type": eventType, "X-Sluice-Signature": strings.Repeat("0", 64)} {
		h.Set(k, v)
	}
	return &model.Attempt{Method: http.MethodPost, RequestHeaders: h, StatusCode: 500,
		ResponseHeaders: http.Header{"Content-Length": {"0"}, "Date": {time.Now().UTC().Format(http.TimeFormat)}}, LatencyMS: 0.3}
}
