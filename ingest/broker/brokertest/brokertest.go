package brokertest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/ingest/broker"
)

// WaitFor polls cond until it holds, failing the test after 30 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// Run runs c with h until the test ends or stop is called; stop cancels Run, waits for it and
// returns its error (the same error on every call).
func Run(t testing.TB, c broker.Consumer, h broker.Handler) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	var (
		once sync.Once
		err  error
	)
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// Recorder is a broker.Handler that remembers what it processed and rejects bodies starting with
// "bad" (reason "malformed: " + the message's "why" header).
type Recorder struct {
	Mu     sync.Mutex        // guards the fields below
	Seen   map[string]int    // message id -> times processed
	Bodies map[string]string // message id -> body
	Lags   []int64
	// Block, when set before use, makes Process wait for ctx to end and fail, as a node stopping
	// mid-batch; Entered is closed when such a Process started.
	Block   bool
	Entered chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{Seen: map[string]int{}, Bodies: map[string]string{}, Entered: make(chan struct{})}
}

// Process implements broker.Handler.
func (r *Recorder) Process(ctx context.Context, msgs []broker.Message) ([]broker.Verdict, error) {
	if r.Block {
		close(r.Entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	r.Mu.Lock()
	defer r.Mu.Unlock()
	out := make([]broker.Verdict, len(msgs))
	for i, m := range msgs {
		r.Seen[m.ID]++
		r.Bodies[m.ID] = string(m.Body)
		if strings.HasPrefix(string(m.Body), "bad") {
			out[i] = broker.Verdict{Rejected: true, Reason: "malformed: " + m.Headers["why"]}
		}
	}
	return out, nil
}

// SetLag implements broker.Handler.
func (r *Recorder) SetLag(n int64) {
	r.Mu.Lock()
	r.Lags = append(r.Lags, n)
	r.Mu.Unlock()
}

// Count returns how many distinct messages were processed and how many bodies match pred (all
// when pred is nil).
func (r *Recorder) Count(pred func(body string) bool) (distinct, matching int) {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	for id := range r.Seen {
		if pred == nil || pred(r.Bodies[id]) {
			matching++
		}
	}
	return len(r.Seen), matching
}
