package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/latency"
)

// Placeholder marks where the send time goes in a body template: it is as wide as any Unix time in
// nanoseconds until the year 2286, and the digits are written over it (padded with spaces, valid JSON).
const Placeholder = `"sent_ns":0000000000000000000`

// Config is one load run. Body and URL are required; at least one of MaxRequests and Duration must be set.
type Config struct {
	URL    string
	Header http.Header
	// Body is the request body; it must contain Placeholder once.
	Body []byte
	// Conns is the number of concurrent clients (and keep-alive connections). Default 1.
	Conns int
	// Rate, when > 0, is the open-loop schedule in requests per second; 0 is closed loop.
	Rate float64
	// MaxRequests bounds the requests sent.
	MaxRequests int
	// Duration bounds the time requests are started in; requests in flight at the end are awaited.
	Duration time.Duration
	// Timeout bounds each request. Default 30 s.
	Timeout time.Duration
	// Client overrides the HTTP client (for tests); by default one is built with Conns connections.
	Client *http.Client
}

// Result is what a run measured.
type Result struct {
	Mode       string         `json:"mode"` // "closed" or "open"
	Conns      int            `json:"conns"`
	Sent       uint64         `json:"sent"`
	OK         uint64         `json:"ok"`
	Errors     uint64         `json:"errors"`
	Statuses   map[int]uint64 `json:"statuses,omitempty"` // non-2xx answers by status
	FirstError string         `json:"first_error,omitempty"`
	StoppedBy  string         `json:"stopped_by"` // "count", "time" or "context"
	ElapsedS   float64        `json:"elapsed_s"`  // start to the last answer
	// PerSecond is OK / ElapsedS.
	PerSecond float64 `json:"per_second"`
	// Target and Achieved (OK per second over the scheduled window) are set in open loop.
	Target   float64 `json:"target_per_second,omitempty"`
	Achieved float64 `json:"achieved_per_second,omitempty"`
	// Latency is the ack latency of 2xx answers; in open loop it is measured from the scheduled time.
	Latency latency.Summary `json:"ack_latency"`
	// ServiceLatency is measured from the moment the request was actually sent; in closed loop it is
	// Latency. Latency much above it means the generator itself ran late (a starved CPU).
	ServiceLatency latency.Summary `json:"service_latency"`
	// ClientCPUPerReqUS is this process's CPU time (user+sys) per request sent, in microseconds; it
	// includes anything else the process did meanwhile (the sink, when it runs in the same process).
	ClientCPUPerReqUS float64 `json:"process_cpu_us_per_request"`

	hist *latency.Histogram
}

// Histogram is the ack latency histogram of the run.
func (r *Result) Histogram() *latency.Histogram { return r.hist }

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("loadgen: bad config")

// NewClient returns a keep-alive client that holds up to conns connections to one host.
func NewClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

// Run sends the load and returns when every started request has been answered or timed out.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.URL == "" || (cfg.MaxRequests <= 0 && cfg.Duration <= 0) || cfg.Rate < 0 {
		return nil, fmt.Errorf("%w: need URL and a count or duration bound", ErrConfig)
	}
	off := bytes.Index(cfg.Body, []byte(Placeholder))
	if off < 0 {
		return nil, fmt.Errorf("%w: body has no %s placeholder", ErrConfig, Placeholder)
	}
	off += len(`"sent_ns":`)
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = int(^uint(0) >> 1)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 24 * time.Hour
	}
	client := cfg.Client
	if client == nil {
		client = NewClient(cfg.Conns, cfg.Timeout)
		defer client.CloseIdleConnections()
	}

	r := &run{cfg: cfg, client: client, off: off, hist: latency.New(), svc: latency.New(), statuses: map[int]uint64{}}
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	res := &Result{Conns: cfg.Conns, hist: r.hist}
	var wg sync.WaitGroup
	if cfg.Rate == 0 {
		res.Mode = "closed"
		for range cfg.Conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := bytes.Clone(cfg.Body)
				for {
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						return
					}
					if r.claimed.Add(1) > int64(cfg.MaxRequests) {
						return
					}
					r.do(ctx, body, time.Now())
				}
			}()
		}
		wg.Wait()
	} else {
		res.Mode = "open"
		res.Target = cfg.Rate
		jobs := make(chan time.Time, cfg.Conns)
		for range cfg.Conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := bytes.Clone(cfg.Body)
				for at := range jobs {
					r.do(ctx, body, at)
				}
			}()
		}
		r.pace(ctx, jobs, start, deadline)
		close(jobs)
		wg.Wait()
	}
	end := time.Now()
	if last := r.lastDone.Load(); last != 0 {
		end = time.Unix(0, last)
	}
	res.ElapsedS = end.Sub(start).Seconds()
	res.Sent = uint64(r.sent.Load())
	res.OK = r.ok.Load()
	res.Errors = r.errs.Load()
	r.mu.Lock()
	if len(r.statuses) > 0 {
		res.Statuses = r.statuses
	}
	res.FirstError = r.firstErr
	r.mu.Unlock()
	res.finish(ctx.Err(), cfg.MaxRequests, cfg.Rate, cfg.Duration, processCPU()-cpu0, r.hist, r.svc)
	return res, ctx.Err()
}

// finish fills the figures every run reports the same way, HTTP or TCP: why it stopped, the rates,
// client CPU per request and the latency summaries.
func (res *Result) finish(ctxErr error, maxRequests int, rate float64, duration, cpuUsed time.Duration, hist, svc *latency.Histogram) {
	switch {
	case ctxErr != nil:
		res.StoppedBy = "context"
	case res.Sent >= uint64(maxRequests):
		res.StoppedBy = "count"
	default:
		res.StoppedBy = "time"
	}
	if res.ElapsedS > 0 {
		res.PerSecond = float64(res.OK) / res.ElapsedS
	}
	if rate > 0 {
		window := min(duration.Seconds(), float64(maxRequests)/rate)
		res.Achieved = float64(res.OK) / max(window, res.ElapsedS)
	}
	if res.Sent > 0 {
		res.ClientCPUPerReqUS = cpuUsed.Seconds() * 1e6 / float64(res.Sent)
	}
	res.Latency = hist.Summary()
	res.ServiceLatency = svc.Summary()
}

type run struct {
	cfg    Config
	client *http.Client
	off    int
	hist   *latency.Histogram
	svc    *latency.Histogram

	claimed  atomic.Int64 // closed loop: requests claimed by clients (may exceed MaxRequests by Conns)
	sent     atomic.Int64
	ok, errs atomic.Uint64
	lastDone atomic.Int64 // Unix ns of the last answer

	mu sync.Mutex
	// statuses and firstErr are guarded by mu.
	statuses map[int]uint64
	firstErr string
}

// pace schedules request i at start+i/Rate, handing out every request that is due each time it wakes.
// A full jobs channel (every client busy) blocks it: the requests it then hands out late are charged
// their lateness because their scheduled time travels with them.
func (r *run) pace(ctx context.Context, jobs chan<- time.Time, start, deadline time.Time) {
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	for i := 0; i < r.cfg.MaxRequests; {
		now := time.Now()
		if !now.Before(deadline) || ctx.Err() != nil {
			return
		}
		due := min(int(now.Sub(start)/interval)+1, r.cfg.MaxRequests)
		for ; i < due; i++ {
			at := start.Add(time.Duration(i) * interval)
			if !at.Before(deadline) {
				return
			}
			select {
			case jobs <- at:
			case <-ctx.Done():
				return
			}
		}
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
	}
}

func (r *run) do(ctx context.Context, body []byte, scheduled time.Time) {
	r.sent.Add(1)
	sent := time.Now()
	stamp(body[r.off:r.off+19], sent.UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(body))
	if err != nil {
		r.fail(0, err)
		return
	}
	for k, v := range r.cfg.Header {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.fail(0, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	done := time.Now()
	for ns := done.UnixNano(); ; {
		cur := r.lastDone.Load()
		if ns <= cur || r.lastDone.CompareAndSwap(cur, ns) {
			break
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		r.fail(resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode))
		return
	}
	r.ok.Add(1)
	r.hist.Record(done.Sub(scheduled))
	r.svc.Record(done.Sub(sent))
}

func (r *run) fail(status int, err error) {
	r.errs.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if status != 0 {
		r.statuses[status]++
	}
	if r.firstErr == "" {
		r.firstErr = err.Error()
	}
}

// Stamp writes the current time into data's Placeholder (if it has one), as the load generators do
// before each request; data with the Placeholder's zeros unreplaced is not valid JSON.
func Stamp(data []byte, t time.Time) {
	if i := bytes.Index(data, []byte(`"sent_ns":`)); i >= 0 && len(data) >= i+len(Placeholder) {
		off := i + len(`"sent_ns":`)
		stamp(data[off:off+19], t.UnixNano())
	}
}

// stamp writes v in decimal into dst (19 bytes), padding with spaces on the right.
func stamp(dst []byte, v int64) {
	var tmp [20]byte
	b := strconv.AppendInt(tmp[:0], v, 10)
	n := copy(dst, b)
	for i := n; i < len(dst); i++ {
		dst[i] = ' '
	}
}

// PublishBody returns a Sluice publish request body whose "data" is a JSON object of exactly dataBytes
// bytes carrying the Placeholder. endpointID "" omits endpoint_id (for /events/broadcast).
func PublishBody(endpointID, eventType string, dataBytes int) []byte {
	data := Data(dataBytes)
	var b strings.Builder
	b.WriteString(`{`)
	if endpointID != "" {
		fmt.Fprintf(&b, `"endpoint_id":%q,`, endpointID)
	}
	fmt.Fprintf(&b, `"event_type":%q,"data":%s}`, eventType, data)
	return []byte(b.String())
}

// Data returns a JSON object of exactly n bytes (at least 64) with the Placeholder and padding.
func Data(n int) []byte {
	head := `{` + Placeholder + `,"pad":"`
	tail := `"}`
	pad := max(n-len(head)-len(tail), 0)
	return []byte(head + strings.Repeat("x", pad) + tail)
}
