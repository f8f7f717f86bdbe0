package raftstore

import (
	"context"
	"flag"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	proposeRate = flag.Float64("propose.rate", 1600, "BenchmarkProposeFixedRate: proposals per second")
	proposeDur  = flag.Duration("propose.dur", 3*time.Second, "BenchmarkProposeFixedRate: length of one measurement")
)

// BenchmarkProposeFixedRate is the commit half of e2e-fixed-rate's ack latency without HTTP, the
// load generator or the sink: 1 KiB publishes proposed open loop on a real store (proposal i is due
// at start + i/rate and its latency counts from then, so a stall is charged to every proposal it
// delayed), reporting commit latency percentiles and fsyncs per proposal. On a shared machine the
// fsync's latency moves with the other tenants' disk writes: compare two builds by alternating
// single runs (-benchtime 1x), not by -count of one then the other.
func BenchmarkProposeFixedRate(b *testing.B) {
	s := openTestStore(b, b.TempDir(), nil)
	defer s.Close()
	f := setupProject(b, s)
	data := CompressData([]byte(`{"d":"` + strings.Repeat("x", 1000) + `"}`))
	n := int(*proposeRate * proposeDur.Seconds())
	if n < 1 {
		b.Fatalf("-propose.rate %v for -propose.dur %v is no proposal", *proposeRate, *proposeDur)
	}
	lat := make([]time.Duration, 0, n*b.N)
	var mu sync.Mutex
	syncs0 := s.log.Stats().Syncs
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			due := start.Add(time.Duration(float64(i) / *proposeRate * float64(time.Second)))
			time.Sleep(time.Until(due)) // pacing the open loop, not waiting for state
			p, _ := publishCmd(f, i, "")
			c, err := NewCommand(CmdPublish, p, data)
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := s.Propose(ctx, c)
				if err == nil {
					err = r.Err
				}
				if err != nil {
					b.Errorf("propose %d: %v", i, err)
				}
				d := time.Since(due)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(0.999), "p999-ms")
	b.ReportMetric(float64(s.log.Stats().Syncs-syncs0)/float64(len(lat)), "fsyncs/op")
}
