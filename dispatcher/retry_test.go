package dispatcher

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

func constRand(v float64) func() float64 { return func() float64 { return v } }

func TestBackoff(t *testing.T) {
	exp := RetryPolicy{Strategy: StrategyExponential, Interval: time.Second}
	lin := RetryPolicy{Strategy: StrategyLinear, Interval: 10 * time.Second}
	cst := RetryPolicy{Strategy: StrategyConstant, Interval: time.Minute}
	sch := RetryPolicy{Strategy: StrategySchedule, Schedule: []time.Duration{time.Second, time.Minute}}
	std := StandardWebhooksRetry()
	capped := exp
	capped.MaxInterval = 10 * time.Second
	tests := []struct {
		name string
		p    RetryPolicy
		n    int
		rnd  float64 // 0.5 = no jitter
		want time.Duration
	}{
		{"exponential n=1", exp, 1, 0.5, time.Second},
		{"exponential n=2", exp, 2, 0.5, 2 * time.Second},
		{"exponential n=5", exp, 5, 0.5, 16 * time.Second},
		{"exponential jitter low", exp, 5, 0, 16 * time.Second * 9 / 10},
		{"exponential jitter high", exp, 5, 1, 16 * time.Second * 11 / 10},
		{"exponential huge n saturates", exp, 500, 0.5, 1 << 62}, // MaxInt64/2, rounded by the jitter float
		{"huge schedule entry does not overflow", RetryPolicy{Strategy: StrategySchedule, Schedule: []time.Duration{maxDuration}}, 1, 1, maxDuration},
		{"exponential capped", capped, 5, 0.5, 10 * time.Second},
		{"exponential capped after jitter", capped, 4, 1, 8800 * time.Millisecond},
		{"linear n=1", lin, 1, 0, 10 * time.Second},
		{"linear n=3 ignores jitter", lin, 3, 1, 30 * time.Second},
		{"constant", cst, 7, 1, time.Minute},
		{"schedule n=1", sch, 1, 0.5, time.Second},
		{"schedule n=2", sch, 2, 0.5, time.Minute},
		{"schedule last entry repeats", sch, 9, 0.5, time.Minute},
		{"schedule jitter", sch, 2, 0.25, 57 * time.Second},
		{"standard webhooks after attempt 1", std, 1, 0.5, 5 * time.Second},
		{"standard webhooks after attempt 2", std, 2, 0.5, 5 * time.Minute},
		{"standard webhooks after attempt 3", std, 3, 0.5, 30 * time.Minute},
		{"standard webhooks after attempt 4", std, 4, 0.5, 2 * time.Hour},
		{"standard webhooks after attempt 5", std, 5, 0.5, 5 * time.Hour},
		{"standard webhooks after attempt 6", std, 6, 0.5, 10 * time.Hour},
		{"standard webhooks after attempt 7", std, 7, 0.5, 10 * time.Hour},
		{"n=0 is treated as 1", exp, 0, 0.5, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Backoff(tc.n, constRand(tc.rnd)); got != tc.want {
				t.Fatalf("Backoff(%d) = %v, want %v", tc.n, got, tc.want)
			}
		})
	}
}

const maxDuration = time.Duration(1<<63 - 1)

func TestRetryPolicyValidateAndAttempts(t *testing.T) {
	tests := []struct {
		name     string
		p        RetryPolicy
		valid    bool
		attempts int
	}{
		{"standard webhooks", StandardWebhooksRetry(), true, 8},
		{"exponential default attempts", RetryPolicy{Strategy: StrategyExponential, Interval: time.Second}, true, DefaultMaxAttempts},
		{"schedule defaults to len+1", RetryPolicy{Strategy: StrategySchedule, Schedule: []time.Duration{1, 2, 3}}, true, 4},
		{"explicit max", RetryPolicy{Strategy: StrategyLinear, Interval: time.Second, MaxAttempts: 3}, true, 3},
		{"one attempt", RetryPolicy{Strategy: StrategyConstant, Interval: time.Second, MaxAttempts: 1}, true, 1},
		{"zero", RetryPolicy{}, false, DefaultMaxAttempts},
		{"unknown strategy", RetryPolicy{Strategy: "fibonacci", Interval: time.Second}, false, DefaultMaxAttempts},
		{"no interval", RetryPolicy{Strategy: StrategyExponential}, false, DefaultMaxAttempts},
		{"empty schedule", RetryPolicy{Strategy: StrategySchedule}, false, DefaultMaxAttempts},
		{"negative schedule entry", RetryPolicy{Strategy: StrategySchedule, Schedule: []time.Duration{-1}}, false, 2},
		{"negative max", RetryPolicy{Strategy: StrategyConstant, Interval: 1, MaxAttempts: -1}, false, DefaultMaxAttempts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if (err == nil) != tc.valid {
				t.Fatalf("Validate() = %v, want valid=%v", err, tc.valid)
			}
			if err != nil && !errors.Is(err, ErrBadRetryPolicy) {
				t.Fatalf("Validate() = %v, want ErrBadRetryPolicy", err)
			}
			if got := tc.p.Attempts(); got != tc.attempts {
				t.Fatalf("Attempts() = %d, want %d", got, tc.attempts)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := t0
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 120 * time.Second, true},
		{" 0 ", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Wednesday, 26-Nov-26 12:05:00 GMT", 5 * time.Minute, true}, // RFC 850
		{"99999999999999999999999", maxDuration, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestDecide is the outcome table: HTTP status (0 = no response) and headers to the next step.
func TestDecide(t *testing.T) {
	clk := clock.NewFake(t0)
	now := clk.Now()
	exp := RetryPolicy{Strategy: StrategyExponential, Interval: time.Second, MaxAttempts: 5}
	std := StandardWebhooksRetry()
	ra := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	tests := []struct {
		name    string
		p       RetryPolicy
		attempt int
		code    int
		hdr     http.Header
		want    outcome
	}{
		{"200", exp, 1, 200, nil, outcome{Status: StatusSuccess}},
		{"204 on the last attempt", exp, 5, 204, nil, outcome{Status: StatusSuccess}},
		{"500 retries per policy", exp, 1, 500, nil, outcome{Status: StatusRetry, NextAttemptAt: now.Add(time.Second)}},
		{"500 on attempt 3", exp, 3, 500, nil, outcome{Status: StatusRetry, NextAttemptAt: now.Add(4 * time.Second)}},
		{"500 on the last attempt fails", exp, 5, 500, nil, outcome{Status: StatusFailed}},
		{"beyond the last attempt fails", exp, 9, 500, nil, outcome{Status: StatusFailed}},
		{"no response (timeout) retries", exp, 2, 0, nil, outcome{Status: StatusRetry, NextAttemptAt: now.Add(2 * time.Second)}},
		{"302 is a failure", exp, 1, 302, http.Header{"Location": {"/elsewhere"}}, outcome{Status: StatusRetry, NextAttemptAt: now.Add(time.Second)}},
		{"404 is a failure", exp, 1, 404, nil, outcome{Status: StatusRetry, NextAttemptAt: now.Add(time.Second)}},
		{"410 disables", exp, 1, 410, nil, outcome{Status: StatusFailed, DisableEndpoint: true}},
		{"410 on the last attempt disables", exp, 5, 410, nil, outcome{Status: StatusFailed, DisableEndpoint: true}},
		{"429 Retry-After seconds", std, 1, 429, ra("120"), outcome{Status: StatusRetry, NextAttemptAt: now.Add(120 * time.Second)}},
		{"503 Retry-After date", std, 1, 503, ra(now.Add(10 * time.Minute).Format(http.TimeFormat)), outcome{Status: StatusRetry, NextAttemptAt: now.Add(10 * time.Minute)}},
		{"Retry-After shorter than backoff keeps backoff", std, 2, 429, ra("1"), outcome{Status: StatusRetry, NextAttemptAt: now.Add(5 * time.Minute)}},
		{"Retry-After capped", std, 1, 429, ra("86400"), outcome{Status: StatusRetry, NextAttemptAt: now.Add(time.Hour)}},
		{"Retry-After cap never shortens the backoff", std, 5, 503, ra("86400"), outcome{Status: StatusRetry, NextAttemptAt: now.Add(5 * time.Hour)}},
		{"Retry-After ignored on 500", std, 1, 500, ra("120"), outcome{Status: StatusRetry, NextAttemptAt: now.Add(5 * time.Second)}},
		{"Retry-After garbage ignored", std, 1, 429, ra("later"), outcome{Status: StatusRetry, NextAttemptAt: now.Add(5 * time.Second)}},
		{"429 on the last attempt fails", std, 8, 429, ra("1"), outcome{Status: StatusFailed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(tc.p, tc.attempt, tc.code, tc.hdr, now, time.Hour, constRand(0.5))
			if got != tc.want {
				t.Fatalf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}
