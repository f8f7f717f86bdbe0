package dispatcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/netpool"
)

// waitFor is the polling deadline of every wait in these tests: generous, because under -race on two
// cores a loaded machine is slow, and never reached when things work.
const waitFor = 10 * time.Second

// loaderFunc is a fake Loader with a function field.
type loaderFunc func(ctx context.Context, ref Ref) (*Job, error)

func (f loaderFunc) Load(ctx context.Context, ref Ref) (*Job, error) { return f(ctx, ref) }

// jobs is an in-memory Loader: endpoints by id, a fixed body, and per-delivery attempt numbers.
type jobs struct {
	mu        sync.Mutex // guards the fields below
	endpoints map[string]Endpoint
	attempt   map[string]int // next attempt number per delivery id (default 1)
	body      []byte
	headers   http.Header
	loads     int
}

func newJobs(body string) *jobs {
	return &jobs{endpoints: map[string]Endpoint{}, attempt: map[string]int{}, body: []byte(body)}
}

func (j *jobs) setEndpoint(ep Endpoint) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.endpoints[ep.ID] = ep
}

func (j *jobs) setAttempt(deliveryID string, n int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.attempt[deliveryID] = n
}

func (j *jobs) Load(_ context.Context, ref Ref) (*Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.loads++
	ep, ok := j.endpoints[ref.EndpointID]
	if !ok {
		return nil, fmt.Errorf("endpoint %s: %w", ref.EndpointID, ErrNotPending)
	}
	n := j.attempt[ref.DeliveryID]
	if n == 0 {
		n = 1
	}
	return &Job{
		Ref:       ref,
		EventID:   "evt_" + ref.DeliveryID,
		EventType: "invoice.paid",
		Attempt:   n,
		Body:      j.body,
		Headers:   j.headers,
		Endpoint:  ep,
	}, nil
}

// collector is a Results that keeps every result and lets tests wait for a count without sleeping.
type collector struct {
	mu      sync.Mutex // guards results and changed
	results []Result
	changed chan struct{} // closed and replaced on every Record
}

func newCollector() *collector { return &collector{changed: make(chan struct{})} }

func (c *collector) Record(r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results = append(c.results, r)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *collector) snapshot() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Result(nil), c.results...)
}

// wait blocks until at least n results arrived, failing the test at the deadline.
func (c *collector) wait(t testing.TB, n int) []Result {
	t.Helper()
	end := time.NewTimer(waitFor)
	defer end.Stop()
	for {
		c.mu.Lock()
		if len(c.results) >= n {
			out := append([]Result(nil), c.results...)
			c.mu.Unlock()
			return out
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-end.C:
			t.Fatalf("timed out waiting for %d results; have %d", n, len(c.snapshot()))
		}
	}
}

// eventually polls cond every millisecond until it holds, failing the test at the deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// sink is a real HTTP server on 127.0.0.1 that counts and records requests.
type sink struct {
	*httptest.Server
	count   atomic.Int64
	mu      sync.Mutex // guards reqs
	reqs    []sunk
	handler atomic.Pointer[http.HandlerFunc]
}

type sunk struct {
	header http.Header
	body   []byte
}

func newSink(t testing.TB, h http.HandlerFunc) *sink {
	s := &sink{}
	s.setHandler(h)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, sunk{header: r.Header.Clone(), body: body})
		s.mu.Unlock()
		s.count.Add(1)
		(*s.handler.Load())(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) setHandler(h http.HandlerFunc) {
	if h == nil {
		h = func(http.ResponseWriter, *http.Request) {}
	}
	s.handler.Store(&h)
}

func (s *sink) received() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.reqs...)
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// hang returns a handler that blocks until release is closed or the client goes away.
func hang(release <-chan struct{}) http.HandlerFunc {
	return func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
}

func newPool(t testing.TB) *netpool.Pool {
	t.Helper()
	p, err := netpool.New(netpool.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// harness is a dispatcher over a real netpool.Pool, a jobs Loader and a collector.
type harness struct {
	d    *Dispatcher
	jobs *jobs
	res  *collector
	clk  *clock.Fake // nil when the real clock is used
	stop func()      // cancels Run and waits for it; idempotent
}

// newHarness builds a dispatcher; a nil cfg.Clock gets a Fake clock at t0 (pass clock.Real{} for real
// time). Run is started and stopped at cleanup.
func newHarness(t testing.TB, cfg Config, body string) *harness {
	t.Helper()
	h := &harness{jobs: newJobs(body), res: newCollector()}
	if cfg.Clock == nil {
		h.clk = clock.NewFake(t0)
		cfg.Clock = h.clk
	}
	if cfg.Rand == nil {
		cfg.Rand = constRand(0.5)
	}
	d, err := New(cfg, h.jobs, newPool(t), h.res)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitFor):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

func refs(endpointID string, n int) []Ref {
	out := make([]Ref, n)
	for i := range out {
		out[i] = Ref{ProjectID: "prj", EndpointID: endpointID, DeliveryID: fmt.Sprintf("%s-dlv-%04d", endpointID, i)}
	}
	return out
}

func laneOf(s Stats, endpointID string) (LaneStats, bool) {
	for _, l := range s.Lanes {
		if l.EndpointID == endpointID {
			return l, true
		}
	}
	return LaneStats{}, false
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
