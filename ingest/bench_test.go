package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/ingest/client"
)

// BenchmarkPublish measures acknowledged (committed and applied) publishes per second over TCP at
// several connection counts and pipeline depths, next to HTTP publishes against the same store in
// the same run. Every publish carries an idempotency key on both protocols (the TCP client
// generates one), targets one endpoint and has ~250 bytes of data.
//
//	go test ./ingest -run '^$' -bench BenchmarkPublish -benchtime 1s
func BenchmarkPublish(b *testing.B) {
	e := newEnv(b, Config{})
	data := json.RawMessage(fmt.Sprintf(`{"order":12345,"status":"paid","pad":%q}`, strings.Repeat("x", 200)))
	hs := httptest.NewServer(e.api.Handler())
	defer hs.Close()
	tcp := func(conns, depth int) {
		b.Run(fmt.Sprintf("tcp/conns=%d/depth=%d", conns, depth), func(b *testing.B) { benchTCP(b, e, conns, depth, data) })
	}
	http := func(conc int) {
		b.Run(fmt.Sprintf("http/concurrency=%d", conc), func(b *testing.B) { benchHTTP(b, e, hs.URL, conc, data) })
	}
	direct := func(conc int) {
		b.Run(fmt.Sprintf("direct/concurrency=%d", conc), func(b *testing.B) { benchDirect(b, e, conc, data) })
	}
	// Interleaved, so that neither protocol always runs against the bigger store. "direct" calls
	// api.Server.Publish in-process: the store's ceiling, with no protocol at all.
	direct(1024)
	tcp(1, 1)
	http(1)
	tcp(1, 64)
	tcp(4, 1)
	http(16)
	tcp(1, 1024)
	tcp(4, 64)
	http(64)
	tcp(16, 1)
	tcp(4, 1024)
	http(256)
	tcp(16, 64)
	tcp(16, 1024)
	direct(1024)
}

func benchTCP(b *testing.B, e *env, conns, depth int, data json.RawMessage) {
	cls := make([]*client.Client, conns)
	for i := range cls {
		cls[i] = dialClient(b, e.addr, client.Options{Key: e.key, MaxInFlight: depth, MaxBatch: min(depth, 256)})
	}
	type pending struct {
		fut *client.Future
		t0  time.Time
	}
	lat := make([][]time.Duration, conns)
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, cl := range cls {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		ch := make(chan pending, depth)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(ch)
			for j := 0; j < n; j++ {
				t0 := time.Now()
				ch <- pending{cl.PublishAsync(&client.Request{EndpointID: e.ep1, EventType: "order.paid", Data: data}), t0}
			}
		}()
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, n)
			for p := range ch {
				if _, err := p.fut.Result(); err != nil {
					failed.Add(1)
				}
				l = append(l, time.Since(p.t0))
			}
			lat[i] = l
		}()
	}
	wg.Wait()
	report(b, time.Since(start), slices.Concat(lat...), failed.Load())
}

func benchHTTP(b *testing.B, e *env, base string, conc int, data json.RawMessage) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer hc.CloseIdleConnections()
	url := base + "/api/v1/projects/" + e.pid + "/events"
	lat := make([][]time.Duration, conc)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var l []time.Duration
			for {
				k := next.Add(1)
				if k > int64(b.N) {
					break
				}
				body, _ := json.Marshal(map[string]any{"endpoint_id": e.ep1, "event_type": "order.paid", "data": data,
					"idempotency_key": client.NewIdempotencyKey()})
				t0 := time.Now()
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+e.key)
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					failed.Add(1)
				}
				l = append(l, time.Since(t0))
			}
			lat[i] = l
		}()
	}
	wg.Wait()
	report(b, time.Since(start), slices.Concat(lat...), failed.Load())
}

func benchDirect(b *testing.B, e *env, conc int, data json.RawMessage) {
	lat := make([][]time.Duration, conc)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var l []time.Duration
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				in := &api.PublishRequest{EndpointID: e.ep1, EventType: "order.paid", Data: data, IdempotencyKey: client.NewIdempotencyKey()}
				if _, err := e.api.Publish(context.Background(), e.pid, in); err != nil {
					failed.Add(1)
				}
				l = append(l, time.Since(t0))
			}
			lat[i] = l
		}()
	}
	wg.Wait()
	report(b, time.Since(start), slices.Concat(lat...), failed.Load())
}

func report(b *testing.B, elapsed time.Duration, lat []time.Duration, failed int64) {
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d publishes failed", failed, b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
