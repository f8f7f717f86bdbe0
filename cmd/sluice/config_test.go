package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseServeBreakerSettings(t *testing.T) {
	cases := []struct {
		name         string
		env          map[string]string
		args         []string
		wantFailures int
		wantCooldown time.Duration
		wantErr      string
	}{
		{name: "defaults", wantFailures: 10, wantCooldown: 30 * time.Second},
		{name: "flags", args: []string{"--breaker-failures", "3", "--breaker-cooldown", "2m"}, wantFailures: 3, wantCooldown: 2 * time.Minute},
		{name: "environment", env: map[string]string{"SLUICE_BREAKER_FAILURES": "25", "SLUICE_BREAKER_COOLDOWN": "5s"}, wantFailures: 25, wantCooldown: 5 * time.Second},
		{name: "flag wins over environment", env: map[string]string{"SLUICE_BREAKER_FAILURES": "25"}, args: []string{"--breaker-failures", "4"}, wantFailures: 4, wantCooldown: 30 * time.Second},
		{name: "zero failures", args: []string{"--breaker-failures", "0"}, wantErr: "--breaker-failures: must be > 0"},
		{name: "negative cooldown", args: []string{"--breaker-cooldown", "-1s"}, wantErr: "--breaker-cooldown: must be > 0"},
		{name: "bad environment value", env: map[string]string{"SLUICE_BREAKER_COOLDOWN": "soon"}, wantErr: "SLUICE_BREAKER_COOLDOWN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var cfg serveConfig
			err := parseServe(c.args, &cfg)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("parseServe(%q) error %v, want one containing %q", c.args, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseServe(%q): %v", c.args, err)
			}
			if cfg.BreakerFailures != c.wantFailures || cfg.BreakerCooldown != c.wantCooldown {
				t.Fatalf("breaker %d / %v, want %d / %v", cfg.BreakerFailures, cfg.BreakerCooldown, c.wantFailures, c.wantCooldown)
			}
		})
	}
}

// With --breaker-failures 2, the second failed attempt in a row opens the endpoint's breaker, and the
// next delivery waits in its lane instead of reaching the receiver. At the default of 10 the breaker
// would stay closed and the third delivery would be sent.
func TestBreakerFlagsReachTheDispatcher(t *testing.T) {
	var requests atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer sink.Close()
	httpAddr := freePort(t)
	p := startProc(t, t.TempDir(), httpAddr, freePort(t), "--breaker-failures", "2", "--breaker-cooldown", "1h")
	var proj, ep struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "b"}, &proj)
	// Retries an hour away: only first attempts happen during the test.
	p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.URL,
		"strategy": map[string]any{"type": "linear", "duration": 3600, "retry_count": 3}}, &ep)
	publish := func(i int) {
		t.Helper()
		if c := p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{"endpoint_id": ep.UID, "event_type": "a", "data": i}, nil); c != 201 {
			t.Fatalf("publish %d: status %d", i, c)
		}
	}
	// One at a time, so the two failures reach the breaker in order.
	for i := 1; i <= 2; i++ {
		publish(i)
		waitFor(t, "attempt reaches the receiver", func() bool { return requests.Load() == int64(i) })
	}
	lane := map[string]string{"endpoint": ep.UID}
	waitFor(t, "breaker open after two failures", func() bool {
		v, ok := value(scrape(t, httpAddr), "sluice_lane_breaker_state", lane)
		return ok && v == 1
	})
	publish(3)
	waitFor(t, "third delivery queued behind the open breaker", func() bool {
		v, _ := value(scrape(t, httpAddr), "sluice_lane_queued", lane)
		return v == 1
	})
	if n := requests.Load(); n != 2 {
		t.Fatalf("receiver got %d requests with the breaker open, want 2", n)
	}
}
