package benchmarks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/benchmarks/sink"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sluiceBin builds ./cmd/sluice from this checkout once per test process (so the benchmark always runs
// the current source, never a stale bin/sluice), or returns $SLUICE_BENCH_BIN when set.
func sluiceBin(b *testing.B) string {
	if p := os.Getenv("SLUICE_BENCH_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sgwbench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sgw-server")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/sluice")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sluice: %v (set SLUICE_BENCH_BIN=$PWD/bin/sluice to benchmark a built binary)\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binPath
}

// BenchmarkPublishHTTP measures acknowledged HTTP publishes (1 KiB event data) against the real binary,
// with 1, 16 and 64 concurrent keep-alive clients, to one paused endpoint (so delivery does not compete
// for the CPU; see docs/benchmarks.md). b.N is the number of publishes; besides ns/op it reports
// events/s, fsyncs/event (synced Raft-log commits per event, from /metrics), cmds/entry (publishes per
// Raft entry) and the ack latency p99.
func BenchmarkPublishHTTP(b *testing.B) {
	ctx := context.Background()
	s, err := harness.Start(ctx, harness.Options{Bin: sluiceBin(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop() })
	sk, err := sink.Start(sink.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sk.Close() })
	proj, err := s.Root().CreateProject(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	eid, err := proj.CreateEndpoint(ctx, harness.Endpoint{URL: sk.URL(), Status: "paused"})
	if err != nil {
		b.Fatal(err)
	}
	body := loadgen.PublishBody(eid, "bench.event", 1024)
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			m0, err := s.Scrape(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(1024)
			b.ResetTimer()
			res, err := loadgen.Run(ctx, loadgen.Config{URL: proj.EventsURL(""), Header: map[string][]string{"Authorization": {"Bearer " + proj.API.Key}},
				Body: body, Conns: clients, MaxRequests: b.N, Duration: 10 * time.Minute})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Fatalf("%d of %d publishes failed, first: %s", res.Errors, res.Sent, res.FirstError)
			}
			m1, err := s.Scrape(ctx)
			if err != nil {
				b.Fatal(err)
			}
			ev := float64(res.OK)
			b.ReportMetric(ev/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(m0.Delta(m1, "sluice_wal_syncs_total")/ev, "fsyncs/event")
			if entries := m0.Delta(m1, "sluice_raft_entries_proposed_total"); entries > 0 {
				b.ReportMetric(m0.Delta(m1, "sluice_raft_commands_proposed_total")/entries, "cmds/entry")
			}
			b.ReportMetric(res.Latency.P99MS, "p99-ms")
		})
	}
}
