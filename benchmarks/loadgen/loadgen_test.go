package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/sink"
)

func TestBodyIsValidJSONWithSendTime(t *testing.T) {
	body := PublishBody("01ABC", "bench.event", 1024)
	var got struct {
		Data json.RawMessage `json:"data"`
	}
	stamp(body[len(`{"endpoint_id":"01ABC","event_type":"bench.event","data":{"sent_ns":`):][:19], 42)
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	if len(got.Data) != 1024 {
		t.Fatalf("data is %d bytes, want 1024", len(got.Data))
	}
	if v, ok := sink.SentNS(got.Data); !ok || v != 42 {
		t.Fatalf("sent_ns = %d %v, want 42", v, ok)
	}
}

func TestClosedLoopStopsAtCount(t *testing.T) {
	s, err := sink.Start(sink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := Run(context.Background(), Config{URL: s.URL() + "/x", Body: PublishBody("", "t", 256), Conns: 8, MaxRequests: 500, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 500 || res.OK != 500 || res.StoppedBy != "count" || s.Unique() != 500 {
		t.Fatalf("sent %d ok %d stopped by %s, sink saw %d; want exactly 500 by count", res.Sent, res.OK, res.StoppedBy, s.Unique())
	}
	if res.Latency.Count != 500 {
		t.Fatalf("latency count %d", res.Latency.Count)
	}
	// Every request carried a send time the sink could read.
	if s.Latency().Count() != 500 {
		t.Fatalf("sink read sent_ns from %d of 500 bodies", s.Latency().Count())
	}
}

func TestClosedLoopStopsAtDuration(t *testing.T) {
	s, err := sink.Start(sink.Config{Delay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	res, err := Run(context.Background(), Config{URL: s.URL(), Body: PublishBody("", "t", 128), Conns: 2, MaxRequests: 1_000_000, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.StoppedBy != "time" || time.Since(start) > 5*time.Second || res.Sent == 0 || res.Sent >= 1_000_000 {
		t.Fatalf("stopped by %s after %v with %d sent", res.StoppedBy, time.Since(start), res.Sent)
	}
}

func TestOpenLoopSendsNoMoreThanScheduled(t *testing.T) {
	s, err := sink.Start(sink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := Run(context.Background(), Config{URL: s.URL(), Body: PublishBody("", "t", 128), Conns: 4, Rate: 200, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 0.3 s schedules requests 0..59 (start + i*5ms < deadline).
	if res.Sent > 60 || res.Mode != "open" || res.Target != 200 {
		t.Fatalf("open loop sent %d (mode %s, target %v), want at most 60", res.Sent, res.Mode, res.Target)
	}
}

func TestCountsErrorsSeparately(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1)%2 == 0 {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: PublishBody("", "t", 128), Conns: 1, MaxRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 5 || res.Errors != 5 || res.Statuses[503] != 5 || res.Latency.Count != 5 {
		t.Fatalf("ok %d errors %d statuses %v latency count %d", res.OK, res.Errors, res.Statuses, res.Latency.Count)
	}
}
