package dispatcher

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
)

// TestBreaker runs circuit-breaker scenarios written one command per line (in the spirit of etcd-io/raft's
// interaction tests):
//
//	advance <duration>          move the Fake clock
//	begin -> ok|probe|refused   admit a request; "probe" means it is the half-open probe
//	ok | fail                   finish the oldest admitted request with success or failure
//	abort                       finish the oldest admitted request without a verdict
//	ready -> ok|wait <d>|wait probe
//	state -> closed|open|half-open
func TestBreaker(t *testing.T) {
	tests := []struct {
		name   string
		cfg    BreakerConfig
		script string
	}{
		{"opens after threshold consecutive failures", BreakerConfig{FailureThreshold: 3, Cooldown: 30 * time.Second}, `
			begin -> ok
			fail
			begin -> ok
			fail
			state -> closed
			begin -> ok
			fail
			state -> open
			ready -> wait 30s
			begin -> refused
			advance 10s
			ready -> wait 20s
			begin -> refused
		`},
		{"a success resets the streak", BreakerConfig{FailureThreshold: 3, Cooldown: time.Second}, `
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			ok
			begin -> ok
			fail
			begin -> ok
			fail
			state -> closed
		`},
		{"exactly one probe after cooldown; success closes", BreakerConfig{FailureThreshold: 1, Cooldown: 30 * time.Second}, `
			begin -> ok
			fail
			state -> open
			advance 29s
			begin -> refused
			advance 1s
			state -> half-open
			ready -> ok
			begin -> probe
			ready -> wait probe
			begin -> refused
			advance 1h
			begin -> refused
			ok
			state -> closed
			begin -> ok
			begin -> ok
		`},
		{"a failed probe re-opens for a full cooldown", BreakerConfig{FailureThreshold: 1, Cooldown: 30 * time.Second}, `
			begin -> ok
			fail
			advance 30s
			begin -> probe
			advance 5s
			fail
			state -> open
			ready -> wait 30s
			advance 29s
			begin -> refused
			advance 1s
			begin -> probe
			ok
			state -> closed
		`},
		{"late results of requests started before opening are ignored", BreakerConfig{FailureThreshold: 2, Cooldown: 10 * time.Second}, `
			begin -> ok
			begin -> ok
			begin -> ok
			begin -> ok
			fail
			fail
			state -> open
			ok
			state -> open
			fail
			advance 10s
			begin -> probe
			fail
			state -> open
			ready -> wait 10s
		`},
		{"an aborted probe hands the probe to the next request", BreakerConfig{FailureThreshold: 1, Cooldown: 10 * time.Second}, `
			begin -> ok
			fail
			advance 10s
			begin -> probe
			abort
			state -> half-open
			begin -> probe
			ok
			state -> closed
		`},
		{"defaults: 10 failures, 30s", BreakerConfig{}, `
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			begin -> ok
			fail
			state -> closed
			begin -> ok
			fail
			state -> open
			ready -> wait 30s
		`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			b := newBreaker(tc.cfg)
			var admitted []bool // probe flag of each admitted, unfinished request, oldest first
			finish := func() bool {
				if len(admitted) == 0 {
					t.Fatalf("no admitted request to finish")
				}
				p := admitted[0]
				admitted = admitted[1:]
				return p
			}
			for n, line := range strings.Split(strings.TrimSpace(tc.script), "\n") {
				line = strings.TrimSpace(line)
				cmd, want, _ := strings.Cut(line, " -> ")
				now := clk.Now()
				fail := func(got string) { t.Fatalf("line %d %q: got %q", n+1, line, got) }
				switch {
				case strings.HasPrefix(cmd, "advance "):
					d, err := time.ParseDuration(strings.TrimPrefix(cmd, "advance "))
					if err != nil {
						t.Fatal(err)
					}
					clk.Advance(d)
				case cmd == "begin":
					probe, ok := b.begin(now)
					got := "refused"
					if ok {
						got = "ok"
						if probe {
							got = "probe"
						}
						admitted = append(admitted, probe)
					}
					if got != want {
						fail(got)
					}
				case cmd == "ok":
					b.done(now, true, finish())
				case cmd == "fail":
					b.done(now, false, finish())
				case cmd == "abort":
					b.abort(now, finish())
				case cmd == "ready":
					wait, ok := b.ready(now)
					got := "ok"
					switch {
					case !ok && wait == 0:
						got = "wait probe"
					case !ok:
						got = "wait " + wait.String()
					}
					if got != want {
						fail(got)
					}
				case cmd == "state":
					if got := b.stateAt(now).String(); got != want {
						fail(got)
					}
				default:
					t.Fatalf("line %d: unknown command %q", n+1, line)
				}
			}
		})
	}
}

func TestBreakerIdle(t *testing.T) {
	b := newBreaker(BreakerConfig{FailureThreshold: 2, Cooldown: 10 * time.Second})
	if !b.idle(t0, time.Minute) {
		t.Fatal("fresh breaker not idle")
	}
	b.begin(t0)
	b.done(t0, false, false)
	if b.idle(t0, time.Minute) {
		t.Fatal("breaker with a failure streak is idle")
	}
	b.begin(t0)
	b.done(t0, false, false)
	if b.idle(t0.Add(time.Minute), time.Minute) {
		t.Fatal("open breaker idle before cooldown+linger")
	}
	if !b.idle(t0.Add(10*time.Second+time.Minute), time.Minute) {
		t.Fatal("open breaker not idle after cooldown+linger")
	}
}
