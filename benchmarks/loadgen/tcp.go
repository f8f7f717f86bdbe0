package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/latency"
	"github.com/sluice-gw/sluice/ingest/client"
)

// TCPConfig is one load run over Sluice's TCP ingest (docs/tcp-protocol.md) with the project's own Go
// client (ingest/client): Conns clients, one connection each, each keeping Depth publishes in flight
// (Depth goroutines calling the blocking Publish, so ack latency is per publish and includes the
// client's own queueing and batching). Addr (or Clients) and Data are required; at least one of
// MaxRequests and Duration must be set.
type TCPConfig struct {
	// Addr is the node's --tcp-addr. Ignored when Clients is set.
	Addr string
	// Key and Project authenticate the connections (a project key needs no Project).
	Key, Project string
	// Clients, when set, are used instead of dialling Conns new ones (connection i%len serves client
	// goroutine group i); they are not closed. Lets a caller spread load over several nodes.
	Clients []*client.Client
	// Conns is the number of connections (default 1); Depth the publishes in flight on each (default 1).
	Conns, Depth int
	// MaxBatch caps publishes per PUBLISH_BATCH frame (0: the client's default, 256).
	MaxBatch int
	// EndpointID targets one endpoint; "" broadcasts (every endpoint whose subscriptions match).
	EndpointID string
	EventType  string
	// Data is the event data, a JSON value; when it contains Placeholder, the send time is written
	// into it before each publish (for publish-to-delivery latency at the sink).
	Data []byte
	// Rate, when > 0, is an open-loop schedule in publishes per second over all connections (latency
	// is then measured from the scheduled time); 0 is closed loop.
	Rate        float64
	MaxRequests int
	Duration    time.Duration
	// Timeout bounds each publish (default 30 s); a publish still unanswered then counts as an error.
	Timeout time.Duration
	// OnAck, when set, is called for every acknowledged publish (from many goroutines).
	OnAck func(ack client.Ack, sent, done time.Time)
	// OnError, when set, is called for every failed publish.
	OnError func(err error, sent, done time.Time)
	// Before, when set, is called before publish number i (0-based, closed loop) and may wait (flow
	// control by the caller); an error ends that goroutine.
	Before func(ctx context.Context, i int64) error
}

// RunTCP sends the load and returns when every started publish has been answered or timed out.
func RunTCP(ctx context.Context, cfg TCPConfig) (*Result, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	if cfg.Depth <= 0 {
		cfg.Depth = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if (cfg.Addr == "" && len(cfg.Clients) == 0) || len(cfg.Data) == 0 || (cfg.MaxRequests <= 0 && cfg.Duration <= 0) || cfg.Rate < 0 {
		return nil, fmt.Errorf("%w: need Addr or Clients, Data and a count or duration bound", ErrConfig)
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = int(^uint(0) >> 1)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 24 * time.Hour
	}
	off := bytes.Index(cfg.Data, []byte(Placeholder))
	if off >= 0 {
		off += len(`"sent_ns":`)
	}
	clients := cfg.Clients
	if len(clients) == 0 {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		for range cfg.Conns {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			cl, err := client.Dial(dctx, cfg.Addr, client.Options{Key: cfg.Key, Project: cfg.Project,
				MaxInFlight: cfg.Depth, MaxBatch: cfg.MaxBatch, Name: "sluice-bench", Logger: quiet})
			cancel()
			if err != nil {
				for _, c := range clients {
					c.Close()
				}
				return nil, err
			}
			clients = append(clients, cl)
		}
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
	}

	r := &tcpRun{cfg: cfg, hist: latency.New(), svc: latency.New()}
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	res := &Result{Mode: "tcp-closed", Conns: cfg.Conns, hist: r.hist}
	var jobs chan time.Time
	if cfg.Rate > 0 {
		res.Mode, res.Target = "tcp-open", cfg.Rate
		jobs = make(chan time.Time, cfg.Conns*cfg.Depth)
	}
	var wg sync.WaitGroup
	for c := range cfg.Conns {
		cl := clients[c%len(clients)]
		for range cfg.Depth {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := bytes.Clone(cfg.Data)
				req := &client.Request{EndpointID: cfg.EndpointID, EventType: cfg.EventType, Data: data}
				if jobs != nil {
					for at := range jobs {
						r.do(ctx, cl, req, off, at)
					}
					return
				}
				for {
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						return
					}
					i := r.claimed.Add(1)
					if i > int64(cfg.MaxRequests) {
						return
					}
					if cfg.Before != nil && cfg.Before(ctx, i-1) != nil {
						return
					}
					r.do(ctx, cl, req, off, time.Now())
				}
			}()
		}
	}
	if jobs != nil {
		pacer := &run{cfg: Config{Rate: cfg.Rate, MaxRequests: cfg.MaxRequests}}
		pacer.pace(ctx, jobs, start, deadline)
		close(jobs)
	}
	wg.Wait()
	end := time.Now()
	if last := r.lastDone.Load(); last != 0 {
		end = time.Unix(0, last)
	}
	res.ElapsedS = end.Sub(start).Seconds()
	res.Sent = uint64(r.sent.Load())
	res.OK = r.ok.Load()
	res.Errors = r.errs.Load()
	r.mu.Lock()
	res.FirstError = r.firstErr
	r.mu.Unlock()
	res.finish(ctx.Err(), cfg.MaxRequests, cfg.Rate, cfg.Duration, processCPU()-cpu0, r.hist, r.svc)
	return res, ctx.Err()
}

type tcpRun struct {
	cfg       TCPConfig
	hist, svc *latency.Histogram
	claimed   atomic.Int64
	sent      atomic.Int64
	ok, errs  atomic.Uint64
	lastDone  atomic.Int64

	mu       sync.Mutex
	firstErr string // guarded by mu
}

func (r *tcpRun) do(ctx context.Context, cl *client.Client, req *client.Request, off int, scheduled time.Time) {
	r.sent.Add(1)
	sent := time.Now()
	if off >= 0 {
		stamp(req.Data[off:off+19], sent.UnixNano())
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	ack, err := cl.Publish(pctx, req)
	cancel()
	done := time.Now()
	for ns := done.UnixNano(); ; {
		cur := r.lastDone.Load()
		if ns <= cur || r.lastDone.CompareAndSwap(cur, ns) {
			break
		}
	}
	if err != nil {
		r.errs.Add(1)
		r.mu.Lock()
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
		r.mu.Unlock()
		if r.cfg.OnError != nil {
			r.cfg.OnError(err, sent, done)
		}
		return
	}
	r.ok.Add(1)
	r.hist.Record(done.Sub(scheduled))
	r.svc.Record(done.Sub(sent))
	if r.cfg.OnAck != nil {
		r.cfg.OnAck(ack, sent, done)
	}
}
