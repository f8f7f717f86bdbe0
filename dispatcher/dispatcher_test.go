package dispatcher

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/netpool"
)

// TestOutcomes sends one attempt per case to a real server and checks the Result: the HTTP status table
// of the package doc, end to end.
func TestOutcomes(t *testing.T) {
	exp := RetryPolicy{Strategy: StrategyExponential, Interval: time.Second, MaxAttempts: 4}
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		retry    RetryPolicy // zero: Config.DefaultRetry (Standard Webhooks)
		attempt  int
		status   Status
		next     time.Duration // NextAttemptAt - now, when status is retry
		code     int
		disable  bool
		errorIs  error
		redirect bool // the handler redirects: the target must not be hit
	}{
		{name: "200 success", handler: status(200), attempt: 1, status: StatusSuccess, code: 200},
		{name: "201 success", handler: status(201), attempt: 1, status: StatusSuccess, code: 201},
		{name: "500 retry after the policy's backoff", handler: status(500), retry: exp, attempt: 1, status: StatusRetry, next: time.Second, code: 500},
		{name: "500 on attempt 3 backs off 4s", handler: status(500), retry: exp, attempt: 3, status: StatusRetry, next: 4 * time.Second, code: 500},
		{name: "500 default policy after attempt 2: 5m", handler: status(500), attempt: 2, status: StatusRetry, next: 5 * time.Minute, code: 500},
		{name: "attempts exhausted: failed", handler: status(500), retry: exp, attempt: 4, status: StatusFailed, code: 500},
		{name: "default policy exhausted after 8", handler: status(502), attempt: 8, status: StatusFailed, code: 502},
		{name: "410 failed and disables", handler: status(410), attempt: 1, status: StatusFailed, code: 410, disable: true},
		{name: "429 Retry-After 120", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, attempt: 1, status: StatusRetry, next: 120 * time.Second, code: 429},
		{name: "503 Retry-After HTTP-date on the Clock", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", t0.Add(15*time.Minute).Format(http.TimeFormat))
			w.WriteHeader(503)
		}, attempt: 1, status: StatusRetry, next: 15 * time.Minute, code: 503},
		{name: "429 Retry-After capped at MaxRetryAfter", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "999999")
			w.WriteHeader(429)
		}, attempt: 1, status: StatusRetry, next: time.Hour, code: 429},
		{name: "302 not followed: failure", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/moved" {
				w.WriteHeader(299) // would be a success if the redirect were followed
				return
			}
			http.Redirect(w, r, "/moved", http.StatusFound)
		}, retry: exp, attempt: 1, status: StatusRetry, next: time.Second, code: 302, redirect: true},
		{name: "404 failure", handler: status(404), retry: exp, attempt: 2, status: StatusRetry, next: 2 * time.Second, code: 404},
		{name: "connection refused", handler: nil, retry: exp, attempt: 1, status: StatusRetry, next: time.Second, code: 0, errorIs: netpool.ErrConnect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, tc.handler)
			url := s.URL + "/hook"
			if tc.handler == nil {
				s.Close() // nothing listens any more
			}
			h := newHarness(t, Config{}, `{"ok":true}`)
			h.jobs.setEndpoint(Endpoint{ID: "ep", URL: url, Secret: "s", Retry: tc.retry})
			h.jobs.setAttempt("d1", tc.attempt)
			h.d.Submit(Ref{ProjectID: "p", EndpointID: "ep", DeliveryID: "d1"})
			r := h.res.wait(t, 1)[0]
			if r.Status != tc.status || r.Attempt.StatusCode != tc.code || r.DisableEndpoint != tc.disable {
				t.Fatalf("got status %s code %d disable %v (err %q), want %s %d %v",
					r.Status, r.Attempt.StatusCode, r.DisableEndpoint, r.Attempt.Error, tc.status, tc.code, tc.disable)
			}
			var wantNext time.Time
			if tc.status == StatusRetry {
				wantNext = t0.Add(tc.next)
			}
			if !r.NextAttemptAt.Equal(wantNext) {
				t.Fatalf("NextAttemptAt = %v, want %v", r.NextAttemptAt, wantNext)
			}
			if tc.errorIs != nil && !errors.Is(r.Err, tc.errorIs) {
				t.Fatalf("Err = %v, want %v", r.Err, tc.errorIs)
			}
			if tc.errorIs == nil && r.Err != nil {
				t.Fatalf("unexpected Err %v", r.Err)
			}
			if tc.redirect {
				if n := s.count.Load(); n != 1 {
					t.Fatalf("sink saw %d requests; the redirect must not be followed", n)
				}
			}
			if r.Attempt.Number != tc.attempt || r.DeliveryID != "d1" || r.EndpointID != "ep" {
				t.Fatalf("result identifies %+v attempt %d", r.Ref, r.Attempt.Number)
			}
		})
	}
}

// TestTimeout: a server that hangs past Endpoint.Timeout yields a failure classified as a timeout.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, hang(release))
	h := newHarness(t, Config{}, `{}`)
	t.Cleanup(func() { close(release) })
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL, Timeout: 100 * time.Millisecond})
	h.d.Submit(Ref{EndpointID: "ep", DeliveryID: "d1"})
	r := h.res.wait(t, 1)[0]
	if r.Status != StatusRetry || r.Attempt.StatusCode != 0 {
		t.Fatalf("status %s code %d, want retry 0", r.Status, r.Attempt.StatusCode)
	}
	if !errors.Is(r.Err, netpool.ErrTimeout) || !strings.Contains(r.Attempt.Error, "timeout") {
		t.Fatalf("Err = %v (text %q), want netpool.ErrTimeout", r.Err, r.Attempt.Error)
	}
	if !r.NextAttemptAt.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("NextAttemptAt = %v, want t0+5s", r.NextAttemptAt)
	}
}

// TestRequestAsSent: the receiver gets the body byte for byte, the header contract holds, the signature
// verifies, and the attempt record shows exactly what was sent and received.
func TestRequestAsSent(t *testing.T) {
	body := "{\"amount\": 12.50,  \"name\":\"Zoë \\u00e9\",\n\t\"nested\":{ \"a\" : [1,2,3] }}  \n"
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Receiver", "yes")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("thanks"))
	})
	h := newHarness(t, Config{UserAgent: "Sluice/test"}, body)
	h.jobs.setEndpoint(Endpoint{
		ID: "ep", URL: s.URL + "/in?x=1", Secret: "whsec_test", EgressPool: "",
		Headers: http.Header{
			"x-endpoint":           {"e1"},
			"X-Both":               {"from-endpoint"},
			"X-Sluice-Delivery-Id": {"spoofed"},
			"Host":                 {"evil.example"},
		},
	})
	h.jobs.headers = http.Header{
		"X-Both":           {"from-event"},
		"X-Multi":          {"a", "b"},
		"x-sluice-attempt": {"99"},
	}
	h.jobs.setAttempt("dlv_1", 3)
	h.d.Submit(Ref{ProjectID: "prj", EndpointID: "ep", DeliveryID: "dlv_1"})
	r := h.res.wait(t, 1)[0]
	if r.Status != StatusSuccess {
		t.Fatalf("status %s: %s", r.Status, r.Attempt.Error)
	}
	got := s.received()
	if len(got) != 1 {
		t.Fatalf("sink got %d requests", len(got))
	}
	rx := got[0]
	if !bytes.Equal(rx.body, []byte(body)) {
		t.Fatalf("body differs:\n got %q\nwant %q", rx.body, body)
	}
	want := map[string]string{
		"Content-Type":         "application/json",
		"User-Agent":           "Sluice/test",
		"X-Sluice-Delivery-Id": "dlv_1",
		"X-Sluice-Event-Id":    "evt_dlv_1",
		"X-Sluice-Event-Type":  "invoice.paid",
		"X-Sluice-Attempt":     "3",
		"X-Sluice-Signature":   SignHex("whsec_test", []byte(body)),
		"X-Endpoint":           "e1",
		"X-Both":               "from-event",
	}
	for k, v := range want {
		if vs := rx.header[k]; len(vs) != 1 || vs[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, vs, v)
		}
	}
	if vs := rx.header["X-Multi"]; len(vs) != 2 || vs[0] != "a" || vs[1] != "b" {
		t.Errorf("X-Multi = %q", vs)
	}
	// The receiver's own verification: hex HMAC-SHA256 of the raw body.
	sig := rx.header.Get("X-Sluice-Signature")
	if sig != strings.ToLower(sig) || !hmac.Equal([]byte(sig), []byte(SignHex("whsec_test", rx.body))) {
		t.Errorf("signature %q does not verify", sig)
	}
	// The attempt record holds the headers as sent: every one arrived with the same values.
	a := r.Attempt
	for k, vs := range a.RequestHeaders {
		if fmt.Sprint(rx.header[k]) != fmt.Sprint(vs) {
			t.Errorf("recorded header %s = %q, received %q", k, vs, rx.header[k])
		}
	}
	// IDs are monotonic per process, so the id's time is t0 or later (other tests ran on the real clock).
	if _, err := model.ParseID(a.ID); err != nil || model.IDTime(a.ID).Before(t0) {
		t.Errorf("attempt id %q: %v, time %v", a.ID, err, model.IDTime(a.ID))
	}
	if a.Number != 3 || a.Method != http.MethodPost || a.URL != s.URL+"/in?x=1" || !a.StartedAt.Equal(t0) {
		t.Errorf("attempt %+v", a)
	}
	if a.StatusCode != 200 || string(a.ResponseBody) != "thanks" || a.ResponseHeaders.Get("X-Receiver") != "yes" ||
		a.BodyTruncated || a.Latency <= 0 || a.EgressIP != "127.0.0.1" || a.Error != "" {
		t.Errorf("attempt response fields %+v", a)
	}
}

// TestBreakerStopsAndProbes: after FailureThreshold consecutive failures the lane stops sending and keeps
// its refs queued; each Cooldown on the Fake clock lets exactly one probe through; a successful probe
// drains the queue.
func TestBreakerStopsAndProbes(t *testing.T) {
	var healthy atomic.Bool
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request) {
		if healthy.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(500)
	})
	h := newHarness(t, Config{
		MaxInFlightPerEndpoint: 1, // sequential, so the counts below are exact
		Breaker:                BreakerConfig{FailureThreshold: 3, Cooldown: 30 * time.Second},
	}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
	h.d.Submit(refs("ep", 10)...)

	h.res.wait(t, 3)
	if !h.clk.WaitTimers(1, waitFor) { // the lane parks on the cooldown
		t.Fatal("lane did not park on the breaker cooldown")
	}
	checkParked := func(sent int64, queued int, state BreakerState) {
		t.Helper()
		if n := s.count.Load(); n != sent {
			t.Fatalf("sink count %d, want %d", n, sent)
		}
		ls, _ := laneOf(h.d.Stats(), "ep")
		if ls.Queued != queued || ls.Breaker != state || ls.InFlight != 0 {
			t.Fatalf("lane %+v, want queued %d breaker %s", ls, queued, state)
		}
		if n := len(h.res.snapshot()); n != int(sent) {
			t.Fatalf("%d results, want %d", n, sent)
		}
	}
	checkParked(3, 7, BreakerOpen)

	h.clk.Advance(29 * time.Second)
	if !h.clk.WaitTimers(1, waitFor) {
		t.Fatal("lane not parked")
	}
	checkParked(3, 7, BreakerOpen)

	h.clk.Advance(time.Second) // cooldown over: one probe, which fails
	h.res.wait(t, 4)
	if !h.clk.WaitTimers(1, waitFor) {
		t.Fatal("lane did not park after the failed probe")
	}
	checkParked(4, 6, BreakerOpen)

	healthy.Store(true)
	h.clk.Advance(30 * time.Second) // probe succeeds, breaker closes, the rest drains
	rs := h.res.wait(t, 10)
	if n := s.count.Load(); n != 10 {
		t.Fatalf("sink count %d, want 10", n)
	}
	succ := 0
	for _, r := range rs {
		if r.Status == StatusSuccess {
			succ++
		}
	}
	if succ != 6 {
		t.Fatalf("%d successes, want 6", succ)
	}
	eventually(t, "lane idle", func() bool {
		ls, _ := laneOf(h.d.Stats(), "ep")
		return ls.Queued == 0 && ls.InFlight == 0 && ls.Breaker == BreakerClosed && !ls.Active
	})
}

// TestBreakerSingleProbe: with several in-flight slots, the half-open breaker still lets only one
// request out until the probe answers.
func TestBreakerSingleProbe(t *testing.T) {
	var mode atomic.Int32 // 0 fail, 1 hold then succeed, 2 succeed
	release := make(chan struct{})
	s := newSink(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 0:
			w.WriteHeader(500)
		case 1:
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	h := newHarness(t, Config{
		Workers:                16,
		MaxInFlightPerEndpoint: 4,
		Breaker:                BreakerConfig{FailureThreshold: 2, Cooldown: 10 * time.Second},
	}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
	h.d.Submit(refs("ep", 20)...)
	if !h.clk.WaitTimers(1, waitFor) {
		t.Fatal("breaker never opened")
	}
	// At most FailureThreshold-1 + 4 in-flight requests leave before it opens; they all finish.
	eventually(t, "in-flight failures recorded", func() bool {
		ls, _ := laneOf(h.d.Stats(), "ep")
		return ls.InFlight == 0 && int(s.count.Load()) == len(h.res.snapshot())
	})
	sent := s.count.Load()
	if sent < 2 || sent > 5 {
		t.Fatalf("%d sent before the breaker opened, want 2..5", sent)
	}

	mode.Store(1)
	h.clk.Advance(10 * time.Second)
	eventually(t, "probe arrives", func() bool { return s.count.Load() == sent+1 })
	ls, _ := laneOf(h.d.Stats(), "ep")
	if ls.InFlight != 1 || ls.Breaker != BreakerHalfOpen {
		t.Fatalf("during the probe: %+v", ls)
	}
	mode.Store(2)
	close(release)
	h.res.wait(t, 20)
	if n := s.count.Load(); n != 20 {
		t.Fatalf("sink count %d, want 20", n)
	}
}

// TestRateLimit: RateLimit 5 per second on the Fake clock sends 5 per second of clock time.
func TestRateLimit(t *testing.T) {
	s := newSink(t, status(200))
	h := newHarness(t, Config{}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL, RateLimit: 5, RateLimitDuration: time.Second})
	h.d.Submit(refs("ep", 20)...)
	for sent := 5; sent <= 20; sent += 5 {
		h.res.wait(t, sent)
		if sent < 20 {
			if !h.clk.WaitTimers(1, waitFor) {
				t.Fatalf("after %d: lane did not park on the bucket", sent)
			}
		} else {
			eventually(t, "lane goroutine exits", func() bool {
				ls, _ := laneOf(h.d.Stats(), "ep")
				return !ls.Active && ls.InFlight == 0
			})
		}
		if n := s.count.Load(); n != int64(sent) {
			t.Fatalf("sink count %d, want %d", n, sent)
		}
		st := h.d.Stats()
		if st.Queued != 20-sent {
			t.Fatalf("queued %d, want %d", st.Queued, 20-sent)
		}
		h.clk.Advance(time.Second)
	}
	for i, r := range h.res.snapshot() {
		if r.Status != StatusSuccess {
			t.Fatalf("result %d: %s", i, r.Status)
		}
	}
}

// TestIsolation: a hung endpoint holds at most its lane's share of a small worker budget; 20 healthy
// endpoints complete every delivery meanwhile.
func TestIsolation(t *testing.T) {
	release := make(chan struct{})
	hung := newSink(t, hang(release))
	healthy := newSink(t, status(204))
	h := newHarness(t, Config{Workers: 8, Clock: clock.Real{}}, `{"x":1}`)
	t.Cleanup(func() { close(release) })
	if h.d.laneCap != 2 {
		t.Fatalf("lane cap %d with 8 workers, want 2", h.d.laneCap)
	}
	h.jobs.setEndpoint(Endpoint{ID: "hung", URL: hung.URL, Timeout: time.Minute})
	h.d.Submit(refs("hung", 50)...)
	eventually(t, "hung lane saturated", func() bool { return hung.count.Load() == 2 })

	const endpoints, each = 20, 5
	for i := 0; i < endpoints; i++ {
		id := fmt.Sprintf("ok%02d", i)
		h.jobs.setEndpoint(Endpoint{ID: id, URL: healthy.URL})
		h.d.Submit(refs(id, each)...)
	}
	rs := h.res.wait(t, endpoints*each)
	for _, r := range rs {
		if r.EndpointID == "hung" || r.Status != StatusSuccess {
			t.Fatalf("unexpected result %+v", r)
		}
	}
	st := h.d.Stats()
	ls, _ := laneOf(st, "hung")
	if ls.InFlight != 2 || ls.Queued != 48 || hung.count.Load() != 2 {
		t.Fatalf("hung lane %+v, sink count %d", ls, hung.count.Load())
	}
	if st.WorkersBusy > 2 {
		t.Fatalf("%d workers busy after healthy lanes finished, want <= 2", st.WorkersBusy)
	}
}

// TestDedupe: a delivery id already queued or in flight is ignored; after its result it is accepted again.
func TestDedupe(t *testing.T) {
	release := make(chan struct{})
	var holding atomic.Bool
	holding.Store(true)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request) {
		if holding.Load() {
			hang(release)(w, r)
		}
	})
	h := newHarness(t, Config{MaxInFlightPerEndpoint: 1}, `{}`)
	t.Cleanup(func() {
		if holding.Load() {
			close(release)
		}
	})
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
	a := Ref{EndpointID: "ep", DeliveryID: "a"}
	b := Ref{EndpointID: "ep", DeliveryID: "b"}
	h.d.Submit(a, a, b)
	eventually(t, "a in flight", func() bool { return s.count.Load() == 1 })
	h.d.Submit(a, b, b) // a in flight, b queued
	st := h.d.Stats()
	if st.Submitted != 2 || st.Duplicates != 4 || st.Queued != 1 || st.InFlight != 1 {
		t.Fatalf("stats %+v", st)
	}
	holding.Store(false)
	close(release)
	h.res.wait(t, 2)
	eventually(t, "lane idle", func() bool { return h.d.Stats().InFlight == 0 })
	h.d.Submit(a) // finished: accepted again (the scheduler's retry)
	rs := h.res.wait(t, 3)
	if rs[2].DeliveryID != "a" || s.count.Load() != 3 {
		t.Fatalf("third result %+v, sink count %d", rs[2].Ref, s.count.Load())
	}
}

// TestDropEndpoint: queued refs are forgotten and the lane is gone; a later Submit starts a fresh lane.
func TestDropEndpoint(t *testing.T) {
	s := newSink(t, status(200))
	h := newHarness(t, Config{}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL, RateLimit: 1, RateLimitDuration: time.Hour})
	h.d.Submit(refs("ep", 5)...)
	h.res.wait(t, 1)
	if !h.clk.WaitTimers(1, waitFor) {
		t.Fatal("lane did not park on its bucket")
	}
	if st := h.d.Stats(); st.Queued != 4 {
		t.Fatalf("queued %d, want 4", st.Queued)
	}
	h.d.DropEndpoint("ep")
	eventually(t, "lane timer released", func() bool { return h.clk.Timers() == 0 })
	st := h.d.Stats()
	if len(st.Lanes) != 0 || st.Queued != 0 || st.Dropped != 4 {
		t.Fatalf("after drop: %+v", st)
	}
	h.d.DropEndpoint("ep")      // idempotent
	h.d.DropEndpoint("unknown") // harmless

	// A fresh lane: fresh bucket, and the dropped ids are accepted again.
	h.d.Submit(refs("ep", 2)[1])
	rs := h.res.wait(t, 2)
	if rs[1].DeliveryID != "ep-dlv-0001" || s.count.Load() != 2 {
		t.Fatalf("after resubmit: %+v, sink count %d", rs[1].Ref, s.count.Load())
	}
}

// TestLoaderDrops: ErrNotPending drops silently; other errors drop, log and count; the lane carries on.
func TestLoaderDrops(t *testing.T) {
	s := newSink(t, status(200))
	res := newCollector()
	loader := loaderFunc(func(_ context.Context, ref Ref) (*Job, error) {
		switch ref.DeliveryID {
		case "done":
			return nil, fmt.Errorf("delivery %s succeeded already: %w", ref.DeliveryID, ErrNotPending)
		case "broken":
			return nil, errors.New("store: corrupt record")
		}
		return &Job{Ref: ref, Attempt: 1, Body: []byte(`{}`), Endpoint: Endpoint{ID: ref.EndpointID, URL: s.URL}}, nil
	})
	d, err := New(Config{Clock: clock.NewFake(t0), Rand: constRand(0.5), Logger: discardLogger()}, loader, newPool(t), res)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d.Submit(Ref{EndpointID: "ep", DeliveryID: "done"}, Ref{EndpointID: "ep", DeliveryID: "broken"}, Ref{EndpointID: "ep", DeliveryID: "ok"})
	go func() { done <- d.Run(ctx) }() // refs submitted before Run wait for it
	rs := res.wait(t, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].DeliveryID != "ok" || s.count.Load() != 1 {
		t.Fatalf("results %+v, sink count %d", rs, s.count.Load())
	}
	st := d.Stats()
	if st.NotPending != 1 || st.LoadErrors != 1 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := d.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
		t.Fatalf("second Run = %v, want ErrAlreadyRun", err)
	}
	d.Submit(Ref{EndpointID: "ep", DeliveryID: "late"})
	if st := d.Stats(); st.Rejected != 1 || st.Queued != 0 {
		t.Fatalf("Submit after Run returned: %+v", st)
	}
}

// TestShutdown: cancelling Run with requests in flight cancels them, records nothing for them, and returns
// only after every dispatcher goroutine has exited.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, hang(release))
	defer close(release)
	h := newHarness(t, Config{Workers: 64, MaxInFlightPerEndpoint: 8}, `{}`)
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("ep%d", i)
		h.jobs.setEndpoint(Endpoint{ID: id, URL: s.URL, Timeout: time.Hour})
		h.d.Submit(refs(id, 20)...)
	}
	eventually(t, "32 requests in flight", func() bool { return s.count.Load() == 32 })
	start := time.Now()
	h.stop()
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("shutdown took %v", el)
	}
	if n := len(h.res.snapshot()); n != 0 {
		t.Fatalf("%d results recorded for aborted attempts", n)
	}
	st := h.d.Stats()
	if st.Aborted != 32 || st.InFlight != 0 || st.WorkersBusy != 0 {
		t.Fatalf("stats after shutdown: aborted %d in flight %d busy %d", st.Aborted, st.InFlight, st.WorkersBusy)
	}
	// wg.Done runs in a deferred call, so a goroutine may still be on its way out: poll briefly.
	eventually(t, "lane and attempt goroutines gone", func() bool {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "dispatcher.(*lane).run(") || strings.Contains(g, "dispatcher.(*lane).attempt(") ||
				strings.Contains(g, "dispatcher.(*Dispatcher).attemptLoop(") {
				return false
			}
		}
		return true
	})
}

// Attempt goroutines are reused from one attempt to the next (of any lane) rather than started per
// attempt, and all of them exit when Run's context ends.
func TestAttemptGoroutinesReused(t *testing.T) {
	for _, tt := range []struct {
		name            string
		workers, lanes  int
		perLane, maxNew int64
	}{
		{"one lane, one worker", 1, 1, 100, 10},
		{"four lanes, two workers", 2, 4, 50, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSink(t, status(http.StatusNoContent))
			h := newHarness(t, Config{Workers: tt.workers, Clock: clock.Real{}}, `{}`)
			for i := 0; i < tt.lanes; i++ {
				id := fmt.Sprintf("ep%d", i)
				h.jobs.setEndpoint(Endpoint{ID: id, URL: s.URL})
				h.d.Submit(refs(id, int(tt.perLane))...)
			}
			total := int(tt.perLane) * tt.lanes
			for _, r := range h.res.wait(t, total) {
				if r.Status != StatusSuccess {
					t.Fatalf("result %s: %s %v", r.DeliveryID, r.Status, r.Err)
				}
			}
			if n := h.d.attemptGoroutines.Load(); n < 1 || n > tt.maxNew {
				t.Fatalf("%d attempt goroutines started for %d attempts with %d workers, want 1..%d",
					n, total, tt.workers, tt.maxNew)
			}
			h.stop()
			eventually(t, "attempt goroutines gone", func() bool {
				buf := make([]byte, 1<<20)
				return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "dispatcher.(*Dispatcher).attemptLoop(")
			})
		})
	}
}

// TestIdleLaneForgotten: a lane with nothing to do is forgotten after LaneIdleTimeout, unless its
// breaker still has something to remember.
func TestIdleLaneForgotten(t *testing.T) {
	good := newSink(t, status(200))
	bad := newSink(t, status(500))
	h := newHarness(t, Config{LaneIdleTimeout: time.Minute, Breaker: BreakerConfig{FailureThreshold: 1, Cooldown: time.Hour}}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "good", URL: good.URL})
	h.jobs.setEndpoint(Endpoint{ID: "bad", URL: bad.URL})
	h.d.Submit(Ref{EndpointID: "good", DeliveryID: "g"}, Ref{EndpointID: "bad", DeliveryID: "b"})
	h.res.wait(t, 2)
	eventually(t, "lanes idle", func() bool { return h.d.Stats().InFlight == 0 })
	if n := len(h.d.Stats().Lanes); n != 2 {
		t.Fatalf("%d lanes, want 2", n)
	}
	h.clk.Advance(2 * time.Minute)
	st := h.d.Stats()
	if len(st.Lanes) != 1 || st.Lanes[0].EndpointID != "bad" || st.Lanes[0].Breaker != BreakerOpen {
		t.Fatalf("lanes after idle timeout: %+v", st.Lanes)
	}
	h.clk.Advance(2 * time.Hour)
	// The cooldown's timer wakes the lane's goroutine, which then stops; a sweep that runs while it is
	// still up keeps the lane (a failure seen once in CI), and sweeps run at most once per idle
	// timeout of clock time, so each poll moves the clock on by one.
	eventually(t, "the lane forgotten after its cooldown and idle timeout", func() bool {
		if len(h.d.Stats().Lanes) == 0 {
			return true
		}
		h.clk.Advance(time.Minute)
		return false
	})
}

func TestConfig(t *testing.T) {
	def := DefaultConfig()
	if def.Workers != 256 || def.MaxInFlightPerEndpoint != 32 || def.Breaker.FailureThreshold != 10 ||
		def.Breaker.Cooldown != 30*time.Second || def.MaxRetryAfter != time.Hour || def.UserAgent != "Sluice" ||
		def.DefaultRetry.Attempts() != 8 || def.laneInFlightCap() != 32 {
		t.Fatalf("DefaultConfig = %+v", def)
	}
	caps := []struct{ workers, perEndpoint, want int }{
		{256, 32, 32}, {8, 32, 2}, {8, 1, 1}, {2, 32, 1}, {1, 0, 1}, {100, 10, 10},
	}
	for _, c := range caps {
		cfg := Config{Workers: c.workers, MaxInFlightPerEndpoint: c.perEndpoint}
		cfg.ensureDefaults()
		if got := cfg.laneInFlightCap(); got != c.want {
			t.Errorf("cap(workers %d, per endpoint %d) = %d, want %d", c.workers, c.perEndpoint, got, c.want)
		}
	}
	bad := []Config{
		{Workers: -1},
		{MaxInFlightPerEndpoint: -1},
		{MaxRetryAfter: -1},
		{LaneIdleTimeout: -1},
		{Breaker: BreakerConfig{FailureThreshold: -1}},
		{Breaker: BreakerConfig{Cooldown: -1}},
		{DefaultRetry: RetryPolicy{Strategy: "nope"}},
	}
	for _, c := range bad {
		if _, err := New(c, &jobs{}, newPool(t), newCollector()); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", c, err)
		}
	}
	if _, err := New(Config{}, nil, newPool(t), newCollector()); !errors.Is(err, ErrBadConfig) {
		t.Errorf("New without a loader = %v", err)
	}
}

// TestInvalidEndpointPolicyFallsBack: an endpoint policy that does not validate uses Config.DefaultRetry.
func TestInvalidEndpointPolicyFallsBack(t *testing.T) {
	s := newSink(t, status(500))
	h := newHarness(t, Config{DefaultRetry: RetryPolicy{Strategy: StrategyConstant, Interval: 42 * time.Second}}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL, Retry: RetryPolicy{Strategy: StrategyLinear}})
	h.d.Submit(Ref{EndpointID: "ep", DeliveryID: "d"})
	if r := h.res.wait(t, 1)[0]; !r.NextAttemptAt.Equal(t0.Add(42 * time.Second)) {
		t.Fatalf("NextAttemptAt %v, want t0+42s", r.NextAttemptAt)
	}
}

// TestSignerError: a signer failure fails the attempt without sending it and without tripping the breaker.
func TestSignerError(t *testing.T) {
	s := newSink(t, status(200))
	h := newHarness(t, Config{Signer: signerFunc(func(http.Header, *Job, time.Time) error {
		return errors.New("no usable secret")
	}), Breaker: BreakerConfig{FailureThreshold: 1}}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
	h.d.Submit(refs("ep", 3)...)
	rs := h.res.wait(t, 3)
	for _, r := range rs {
		if r.Status != StatusRetry || !strings.Contains(r.Attempt.Error, "no usable secret") {
			t.Fatalf("result %+v", r)
		}
	}
	if s.count.Load() != 0 {
		t.Fatalf("sink got %d requests", s.count.Load())
	}
	eventually(t, "idle", func() bool { return h.d.Stats().InFlight == 0 })
	if ls, _ := laneOf(h.d.Stats(), "ep"); ls.Breaker != BreakerClosed {
		t.Fatalf("breaker %s", ls.Breaker)
	}
}

type signerFunc func(http.Header, *Job, time.Time) error

func (f signerFunc) Sign(h http.Header, j *Job, now time.Time) error { return f(h, j, now) }

// TestLaneQueueFIFO: popping with interleaved appends keeps FIFO order through compactions.
func TestLaneQueueFIFO(t *testing.T) {
	d, err := New(Config{Clock: clock.NewFake(t0)}, &jobs{}, newPool(t), newCollector())
	if err != nil {
		t.Fatal(err)
	}
	l := newLane(d, "ep", t0)
	next, want := 0, 0
	push := func(n int) {
		for i := 0; i < n; i++ {
			l.queue = append(l.queue, Ref{DeliveryID: fmt.Sprint(next)})
			next++
		}
	}
	push(3000)
	for round := 0; round < 5000; round++ { // bounded: 3000 + 5000/3 pushes, 5000 pops at most
		if l.queuedLocked() == 0 {
			break
		}
		if got := l.queue[l.head].DeliveryID; got != fmt.Sprint(want) {
			t.Fatalf("pop %d: got %s", want, got)
		}
		l.popLocked()
		want++
		if round%3 == 0 {
			push(1)
		}
		if l.head > 1024 && l.head*2 >= len(l.queue) {
			t.Fatalf("queue not compacted: head %d len %d", l.head, len(l.queue))
		}
	}
	if l.queuedLocked() != next-want {
		t.Fatalf("queued %d, want %d", l.queuedLocked(), next-want)
	}
}

// The fixed request headers share one backing array: a later owner of the attempt's header map
// (Results.Record's callee) appending to one value must not change another.
func TestRequestHeaderValuesIndependent(t *testing.T) {
	d, err := New(Config{UserAgent: "Sluice/test"}, loaderFunc(nil), newPool(t), newCollector())
	if err != nil {
		t.Fatal(err)
	}
	job := &Job{Ref: Ref{ProjectID: "prj", EndpointID: "ep", DeliveryID: "dlv"}, EventID: "evt", EventType: "t", Attempt: 2}
	keys := []string{"Content-Type", "User-Agent", HeaderDeliveryID, HeaderEventID, HeaderEventType, HeaderAttempt}
	want := []string{"application/json", "Sluice/test", "dlv", "evt", "t", "2"}
	for i, k := range keys {
		t.Run(k, func(t *testing.T) {
			h := d.requestHeader(job)
			h[k] = append(h[k], "appended")
			for j, other := range keys {
				if j == i {
					continue
				}
				if got := h[other]; len(got) != 1 || got[0] != want[j] {
					t.Fatalf("after appending to %s, %s = %q, want [%q]", k, other, got, want[j])
				}
			}
			if got := h[k]; len(got) != 2 || got[0] != want[i] {
				t.Fatalf("%s = %q", k, got)
			}
		})
	}
}

func BenchmarkRequestHeader(b *testing.B) {
	d, err := New(Config{}, loaderFunc(nil), newPool(b), newCollector())
	if err != nil {
		b.Fatal(err)
	}
	job := &Job{Ref: Ref{ProjectID: "prj", EndpointID: "ep", DeliveryID: "dlv"}, EventID: "evt", EventType: "t", Attempt: 2,
		Endpoint: Endpoint{Headers: http.Header{"X-Endpoint": {"e"}}}}
	b.ReportAllocs()
	for b.Loop() {
		d.requestHeader(job)
	}
}

// resubmitter is a Results that, on a delivery's first result, submits the delivery again before
// returning: what happens when the result commits at once with a retry already due and the timing
// wheel fires it before the attempt goroutine has moved on.
type resubmitter struct {
	*collector
	d    atomic.Pointer[Dispatcher]
	once sync.Once
}

func (r *resubmitter) Record(res Result) {
	r.once.Do(func() { r.d.Load().Submit(res.Ref) })
	r.collector.Record(res)
}

// TestResubmitFromResultIsNotDropped: a delivery submitted again from its own result is a new attempt,
// not a duplicate of the one that just finished (it would stay pending in the store until the next
// wheel rebuild).
func TestResubmitFromResultIsNotDropped(t *testing.T) {
	s := newSink(t, status(500))
	j := newJobs(`{}`)
	res := &resubmitter{collector: newCollector()}
	d, err := New(Config{Clock: clock.NewFake(t0), Rand: constRand(0.5)}, j, newPool(t), res)
	if err != nil {
		t.Fatal(err)
	}
	res.d.Store(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	j.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
	d.Submit(Ref{EndpointID: "ep", DeliveryID: "d1"})
	res.wait(t, 2)
	if n := s.count.Load(); n != 2 {
		t.Fatalf("sink saw %d requests, want 2", n)
	}
	if dup := d.Stats().Duplicates; dup != 0 {
		t.Fatalf("%d submits dropped as duplicates", dup)
	}
}

// TestSubmitAfterDropWhileInFlight: an endpoint reactivated while its old lane still has an attempt
// out gets its deliveries back as new Submits (the store still says pending: the result is not
// committed yet). The endpoint's next lane must not start a second attempt of the one in flight.
func TestSubmitAfterDropWhileInFlight(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, hang(release))
	h := newHarness(t, Config{Clock: clock.Real{}}, `{}`)
	h.jobs.setEndpoint(Endpoint{ID: "ep", URL: s.URL})
	rs := refs("ep", 2)
	h.d.Submit(rs[0])
	eventually(t, "the first attempt reached the sink", func() bool { return s.count.Load() == 1 })

	h.d.DropEndpoint("ep") // paused: the attempt in flight goes on
	s.setHandler(status(200))
	h.d.Submit(rs...) // reactivated: both pending deliveries come back
	got := h.res.wait(t, 1)
	if got[0].DeliveryID != rs[1].DeliveryID {
		t.Fatalf("first result %s, want %s (the one not in flight)", got[0].DeliveryID, rs[1].DeliveryID)
	}
	close(release)
	got = h.res.wait(t, 2)
	if got[1].DeliveryID != rs[0].DeliveryID {
		t.Fatalf("second result %s, want %s", got[1].DeliveryID, rs[0].DeliveryID)
	}
	if n := s.count.Load(); n != 2 {
		t.Fatalf("the sink got %d requests, want 2: the delivery in flight was sent twice", n)
	}
	if st := h.d.Stats(); st.Duplicates != 1 {
		t.Fatalf("duplicates %d, want 1", st.Duplicates)
	}

	// Once the old lane's attempt is over, the id is accepted again (a retry's Submit).
	h.d.Submit(rs[0])
	h.res.wait(t, 3)
	if n := s.count.Load(); n != 3 {
		t.Fatalf("the sink got %d requests after the resubmit, want 3", n)
	}
}
