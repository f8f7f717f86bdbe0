package dispatcher

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/netpool"
)

// countResults is a Results that counts successes and closes done at target.
type countResults struct {
	n, failed atomic.Int64
	target    int64
	done      chan struct{}
}

func (c *countResults) Record(r Result) {
	if r.Status != StatusSuccess {
		c.failed.Add(1)
	}
	if c.n.Add(1) == c.target {
		close(c.done)
	}
}

var benchBody = []byte(`{"data":"` + strings.Repeat("x", 1000) + `"}`) // ~1 KiB

func instantSink(b *testing.B) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(s.Close)
	return s
}

// BenchmarkDispatch measures Submit -> Result throughput to a local instant sink through a real
// netpool.Pool, with 1 and 100 endpoints (default Workers 256, 32 in flight per endpoint).
func BenchmarkDispatch(b *testing.B) {
	for _, endpoints := range []int{1, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", endpoints), func(b *testing.B) { benchDispatch(b, endpoints) })
	}
}

func benchDispatch(b *testing.B, endpoints int) {
	s := instantSink(b)
	eps := make(map[string]*Endpoint, endpoints)
	for i := 0; i < endpoints; i++ {
		id := fmt.Sprintf("ep%03d", i)
		eps[id] = &Endpoint{ID: id, URL: s.URL, Secret: "secret"}
	}
	loader := loaderFunc(func(_ context.Context, ref Ref) (*Job, error) {
		return &Job{Ref: ref, EventID: "evt", EventType: "t", Attempt: 1, Body: benchBody, Endpoint: *eps[ref.EndpointID]}, nil
	})
	pool, err := netpool.New(netpool.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	res := &countResults{target: int64(b.N), done: make(chan struct{})}
	d, err := New(Config{Clock: clock.Real{}}, loader, pool, res)
	if err != nil {
		b.Fatal(err)
	}
	refs := make([]Ref, b.N)
	for i := range refs {
		ep := fmt.Sprintf("ep%03d", i%endpoints)
		refs[i] = Ref{ProjectID: "p", EndpointID: ep, DeliveryID: fmt.Sprintf("d%09d", i)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = d.Run(ctx)
	}()
	defer func() { cancel(); wg.Wait() }()

	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	start := time.Now()
	const batch = 512
	for i := 0; i < len(refs); i += batch {
		d.Submit(refs[i:min(i+batch, len(refs))]...)
	}
	select {
	case <-res.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d results", res.n.Load(), b.N)
	}
	el := time.Since(start)
	b.StopTimer()
	if f := res.failed.Load(); f != 0 {
		b.Fatalf("%d attempts failed", f)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
}

// BenchmarkBaselinePool is the naive baseline: the same requests sent straight through netpool.Pool.Do
// by a fixed set of goroutines, no lanes, buckets, breakers or results. The gap to BenchmarkDispatch is
// the dispatcher's overhead.
func BenchmarkBaselinePool(b *testing.B) {
	for _, conc := range []int{32, 256} {
		b.Run(fmt.Sprintf("goroutines=%d", conc), func(b *testing.B) {
			s := instantSink(b)
			pool, err := netpool.New(netpool.DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(int64(len(benchBody)))
			b.ResetTimer()
			start := time.Now()
			for g := 0; g < conc; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						h := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Sluice"}}
						r := pool.Do(context.Background(), &netpool.Request{URL: s.URL, Header: h, Body: benchBody, Key: "ep"})
						if r.Err != nil || r.StatusCode != http.StatusNoContent {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f != 0 {
				b.Fatalf("%d requests failed", f)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
		})
	}
}
