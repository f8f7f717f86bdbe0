package dispatcher

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
)

// withFakeClock runs the engine (wheel, buckets, backoff) on a fake clock so retries are driven by
// the test, not by waiting. HTTP timeouts stay real.
func withFakeClock(clk *clock.Fake) func(*EngineConfig) {
	return func(c *EngineConfig) { c.Dispatcher.Clock = clk }
}

// drive advances the fake clock to each pending retry until the delivery satisfies done (or stops
// changing for a bounded number of steps), and returns it.
func (e *engineEnv) drive(clk *clock.Fake, did string, done func(*model.Delivery) bool) *model.Delivery {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := e.st.Delivery(e.pid, did)
		if err == nil && done(d) {
			return d
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("delivery %s never reached the expected state; last %+v %v", did, d, err)
		}
		if err == nil && d.Status == model.StatusRetry && d.NextAttemptAt != nil && d.NextAttemptAt.After(clk.Now()) {
			clk.Set(*d.NextAttemptAt)
			continue
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

func terminal(d *model.Delivery) bool {
	return d.Status == model.StatusSuccess || d.Status == model.StatusFailed || d.Status == model.StatusDiscarded
}

func TestEngineAgainstHostileEndpoints(t *testing.T) {
	linear := &model.RetryStrategy{Type: "linear", Duration: 10, RetryCount: 3} // 4 attempts at most
	cases := []struct {
		name         string
		handler      func(n int, w http.ResponseWriter, r *http.Request)
		timeout      int // endpoint http_timeout seconds
		wantStatus   model.DeliveryStatus
		wantAttempts int
		wantDisabled bool
		wantErr      string // substring of the last attempt's error
		check        func(t *testing.T, e *engineEnv, did string)
	}{
		{name: "500 twice then 200", handler: func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= 2 {
				w.WriteHeader(500)
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 3},
		{name: "always 500", handler: func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			wantStatus: model.StatusFailed, wantAttempts: 4},
		{name: "410 gone disables the endpoint", handler: func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) },
			wantStatus: model.StatusFailed, wantAttempts: 1, wantDisabled: true},
		{name: "302 is not followed", handler: func(n int, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere" {
				panic("redirect followed")
			}
			if n == 1 {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 2},
		{name: "hang past the timeout", timeout: 1, handler: func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				<-r.Context().Done()
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 2, check: func(t *testing.T, e *engineEnv, did string) {
			as, _ := e.st.Attempts(e.pid, did)
			if !strings.Contains(as[0].Error, "timeout") {
				t.Fatalf("first attempt error %q does not name the timeout", as[0].Error)
			}
		}},
		{name: "reset before the response", handler: func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				c, _, _ := w.(http.Hijacker).Hijack()
				c.(*net.TCPConn).SetLinger(0) // RST, not FIN
				c.Close()
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 2},
		{name: "reset mid-body after a 200 counts as delivered", handler: func(n int, w http.ResponseWriter, r *http.Request) {
			// The receiver answered 2xx: it accepted the event, whatever happened to the rest of its body.
			c, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			buf.Flush()
			c.Close()
		}, wantStatus: model.StatusSuccess, wantAttempts: 1, check: func(t *testing.T, e *engineEnv, did string) {
			as, _ := e.st.Attempts(e.pid, did)
			if as[0].StatusCode != 200 || as[0].Error == "" {
				t.Fatalf("attempt = status %d error %q, want 200 with the body error recorded", as[0].StatusCode, as[0].Error)
			}
		}},
		{name: "100 MB response is capped", handler: func(n int, w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat("x", 64<<10))
			for i := 0; i < 1600; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 1, check: func(t *testing.T, e *engineEnv, did string) {
			as, _ := e.st.Attempts(e.pid, did)
			if len(as[0].ResponseBody) > 64<<10 || !as[0].BodyTruncated {
				t.Fatalf("attempt kept %d body bytes (truncated=%v), want at most 64 KiB", len(as[0].ResponseBody), as[0].BodyTruncated)
			}
		}},
		{name: "slow drip of the status line is cut by the timeout", timeout: 1, handler: func(n int, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				return
			}
			c, buf, _ := w.(http.Hijacker).Hijack()
			defer c.Close()
			for _, b := range []byte("HTTP/1.1 200 OK\r\n\r\n") {
				time.Sleep(100 * time.Millisecond) // the drip itself, not a wait for state
				buf.WriteByte(b)
				if buf.Flush() != nil {
					return
				}
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 2, check: func(t *testing.T, e *engineEnv, did string) {
			as, _ := e.st.Attempts(e.pid, did)
			if !strings.Contains(as[0].Error, "timeout") {
				t.Fatalf("first attempt error %q does not name the timeout", as[0].Error)
			}
		}},
		{name: "429 with Retry-After", handler: func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				w.Header().Set("Retry-After", "120")
				w.WriteHeader(429)
			}
		}, wantStatus: model.StatusSuccess, wantAttempts: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Now())
			e := startEngine(t, t.TempDir(), withFakeClock(clk))
			e.project()
			sk := newRecSink(t, tc.handler)
			eid := e.endpoint(sk.srv.URL+"/hook", func(ep *model.Endpoint) { ep.Strategy = linear; ep.HTTPTimeout = tc.timeout })
			_, did := e.publish(eid, `{"k":"v"}`)
			d := e.drive(clk, did, terminal)
			if d.Status != tc.wantStatus || d.Attempts != tc.wantAttempts {
				t.Fatalf("ended %s after %d attempts, want %s after %d", d.Status, d.Attempts, tc.wantStatus, tc.wantAttempts)
			}
			as, _ := e.st.Attempts(e.pid, did)
			if len(as) != tc.wantAttempts {
				t.Fatalf("%d attempts logged, want %d", len(as), tc.wantAttempts)
			}
			if disabled := e.st.Endpoint(e.pid, eid).Status == model.EndpointDisabled; disabled != tc.wantDisabled {
				t.Fatalf("endpoint disabled = %v, want %v", disabled, tc.wantDisabled)
			}
			// Nothing is delivered after the final state: move time far ahead and recheck.
			seen := sk.count()
			clk.Advance(48 * time.Hour)
			if e.eng.Pending() != 0 {
				t.Fatalf("%d deliveries still in the wheel after a terminal state", e.eng.Pending())
			}
			if sk.count() != seen {
				t.Fatalf("sink got %d more requests after the delivery ended", sk.count()-seen)
			}
			if tc.check != nil {
				tc.check(t, e, did)
			}
		})
	}
}

func TestEngineHonoursRetryAfterTime(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := startEngine(t, t.TempDir(), withFakeClock(clk))
	e.project()
	sk := newRecSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}
	})
	eid := e.endpoint(sk.srv.URL, nil)
	start := clk.Now()
	_, did := e.publish(eid, `{}`)
	d := e.waitDelivery(did, "retry", func(d *model.Delivery) bool { return d.Status == model.StatusRetry })
	if got := d.NextAttemptAt.Sub(start); got < 120*time.Second || got > 121*time.Second {
		t.Fatalf("next attempt %v after the 429, want 120 s (Retry-After)", got)
	}
	clk.Advance(60 * time.Second)
	if sk.count() != 1 {
		t.Fatalf("attempted again before Retry-After elapsed")
	}
	clk.Set(*d.NextAttemptAt)
	e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
}

// TestEngineRestartAttemptsPendingRetries stops the node with a delivery waiting for its retry and
// checks a new node on the same data dir attempts it at its due time.
func TestEngineRestartAttemptsPendingRetries(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Now())
	var fail atomic.Bool
	fail.Store(true)
	sk := newRecSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(500)
		}
	})
	e := startEngine(t, dir, withFakeClock(clk))
	e.project()
	eid := e.endpoint(sk.srv.URL, func(ep *model.Endpoint) {
		ep.Strategy = &model.RetryStrategy{Type: "linear", Duration: 600, RetryCount: 5}
	})
	_, did := e.publish(eid, `{}`)
	d := e.waitDelivery(did, "retry", func(d *model.Delivery) bool { return d.Status == model.StatusRetry })
	due := *d.NextAttemptAt
	pid := e.pid
	e.stop()
	fail.Store(false)

	e2 := startEngine(t, dir, withFakeClock(clk))
	e2.pid = pid
	if e2.eng.Pending() != 1 {
		t.Fatalf("rebuilt wheel holds %d deliveries, want 1", e2.eng.Pending())
	}
	clk.Set(due.Add(-time.Second))
	if sk.count() != 1 {
		t.Fatal("retry attempted before its due time")
	}
	clk.Set(due)
	d = e2.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
	if d.Attempts != 2 {
		t.Fatalf("attempts = %d, want 2", d.Attempts)
	}
}

// TestEngineIsolatesAHungEndpoint: one endpoint that never answers must not stop the others.
func TestEngineIsolatesAHungEndpoint(t *testing.T) {
	e := startEngine(t, t.TempDir(), func(c *EngineConfig) { c.Dispatcher.Workers = 8 })
	e.project()
	release := make(chan struct{})
	defer close(release)
	hung := newRecSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	bad := e.endpoint(hung.srv.URL, func(ep *model.Endpoint) { ep.HTTPTimeout = 300 })
	for i := 0; i < 20; i++ {
		e.publish(bad, `{}`)
	}
	ok := newRecSink(t, nil)
	var dids []string
	for i := 0; i < 10; i++ {
		eid := e.endpoint(ok.srv.URL, nil)
		for j := 0; j < 5; j++ {
			_, did := e.publish(eid, `{}`)
			dids = append(dids, did)
		}
	}
	for _, did := range dids {
		e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
	}
	if ok.count() != len(dids) {
		t.Fatalf("healthy sink got %d requests, want %d", ok.count(), len(dids))
	}
}

// TestEnginePauseKeepsDeliveriesUntilActivate: a paused endpoint's deliveries wait, then go.
func TestEnginePauseKeepsDeliveriesUntilActivate(t *testing.T) {
	e := startEngine(t, t.TempDir(), nil)
	e.project()
	sk := newRecSink(t, nil)
	eid := e.endpoint(sk.srv.URL, func(ep *model.Endpoint) { ep.Status = model.EndpointPaused })
	_, did := e.publish(eid, `{}`)
	if d, _ := e.st.Delivery(e.pid, did); d.Status != model.StatusScheduled {
		t.Fatalf("status %s, want scheduled", d.Status)
	}
	ep := *e.st.Endpoint(e.pid, eid)
	ep.Status = model.EndpointActive
	e.propose(raftstorePutEndpoint(ep))
	e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
}
