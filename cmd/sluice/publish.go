package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/ingest/client"
)

const publishUsage = `Usage: sluice publish --tcp-addr HOST:PORT --project ID [--key KEY] [flags] [FILE]

Publishes events over the TCP ingest protocol, pipelined. FILE (or stdin when FILE is absent or
"-") holds one JSON object per line, each an HTTP publish body:

  {"endpoint_id": "...", "event_type": "invoice.paid", "data": {...}}   one endpoint
  {"owner_id": "...", "event_type": "...", "data": ...}                 every endpoint of an owner
  {"event_type": "...", "data": ...}                                    broadcast to subscribers

with optional "custom_headers", "idempotency_key", and, over TCP, "project_id" (root key only) and
"target" ("endpoint", "owner" or "broadcast"). Lines without an idempotency key get a generated one,
so publishes resent after a reconnect are stored once. Blank lines are skipped.

Progress is shown on stderr when it is a terminal; a summary is printed at the end. The exit status
is 1 when any line was not acknowledged.

Flags:
`

// publishCmd implements `sluice publish`.
func publishCmd(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), publishUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("tcp-addr", envOr("SLUICE_TCP_ADDR", "127.0.0.1:5006"), "TCP ingest address of a node")
	project := fs.String("project", os.Getenv("SLUICE_PROJECT"), "project id (required with the root key unless every line has project_id)")
	key := fs.String("key", "", "API key (default $SLUICE_ROOT_KEY, else $SLUICE_API_KEY)")
	inFlight := fs.Int("in-flight", 1024, "publishes awaiting their acknowledgement at once")
	batch := fs.Int("batch", 256, "most publishes per PUBLISH_BATCH frame (1: one frame each)")
	compress := fs.Bool("compress", false, "S2-compress frames")
	maxLine := fs.Int("max-line-bytes", 8<<20, "longest accepted input line")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("publish: one FILE at most, got %d arguments", fs.NArg())
	}
	if *key == "" {
		*key = envOr("SLUICE_ROOT_KEY", os.Getenv("SLUICE_API_KEY"))
	}
	if *key == "" {
		return errors.New("publish: no API key: pass --key or set SLUICE_ROOT_KEY or SLUICE_API_KEY")
	}
	if *inFlight <= 0 || *batch <= 0 || *maxLine <= 0 {
		return errors.New("publish: --in-flight, --batch and --max-line-bytes must be positive")
	}
	var in io.Reader = os.Stdin
	name := "stdin"
	if f := fs.Arg(0); f != "" && f != "-" {
		file, err := os.Open(f)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		defer file.Close()
		in, name = file, f
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second Ctrl-C kills, even while stdin blocks
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	cl, err := client.Dial(dctx, *addr, client.Options{
		Key: *key, Project: *project, Compress: *compress, MaxInFlight: *inFlight, MaxBatch: *batch,
		Name: "sluice-cli/" + version, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	cancel()
	if err != nil {
		return fmt.Errorf("publish: connect to %s: %w", *addr, err)
	}
	defer cl.Close()

	var tally publishTally
	start := time.Now()
	pending := make(chan publishPending, *inFlight)
	collected := make(chan struct{})
	go func() { // answers arrive in any order; waiting in line order is fine inside the window
		defer close(collected)
		for p := range pending {
			ack, err := p.fut.Result()
			tally.record(p.line, ack, err)
		}
	}()
	var progressWG sync.WaitGroup
	stopProgress := make(chan struct{})
	if isTerminal(os.Stderr) {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					fmt.Fprint(os.Stderr, "\r\033[K")
					return
				case <-t.C:
					fmt.Fprintf(os.Stderr, "\r\033[K%s", tally.progress(time.Since(start)))
				}
			}
		}()
	}

	readErr := readPublishLines(ctx, in, *maxLine, func(line int, req *client.Request) {
		tally.sent()
		pending <- publishPending{line: line, fut: cl.PublishAsync(req)}
	}, tally.invalid)
	close(pending)
	<-collected
	close(stopProgress)
	progressWG.Wait()
	elapsed := time.Since(start)

	fmt.Print(tally.summary(name, elapsed))
	if readErr != nil {
		return fmt.Errorf("publish: reading %s: %w", name, readErr)
	}
	if ctx.Err() != nil {
		return errors.New("publish: interrupted; lines after the last one read were not sent")
	}
	if bad := tally.failures(); bad > 0 {
		return fmt.Errorf("publish: %d line(s) were not acknowledged", bad)
	}
	return nil
}

type publishPending struct {
	line int
	fut  *client.Future
}

// readPublishLines decodes each non-blank line as a publish and passes it on; a line that is not a
// valid publish object goes to bad with the reason, and reading continues. It stops early when ctx
// ends.
func readPublishLines(ctx context.Context, in io.Reader, maxLine int, good func(int, *client.Request), bad func(int, string)) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		if ctx.Err() != nil {
			return nil
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var req client.Request
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			bad(line, "invalid JSON line: "+strings.TrimPrefix(err.Error(), "json: "))
			continue
		}
		if dec.More() {
			bad(line, "invalid JSON line: more than one value")
			continue
		}
		good(line, &req)
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("a line is longer than --max-line-bytes=%d", maxLine)
	}
	return sc.Err()
}

// publishTally counts outcomes; the collector and the reader update it, the progress line reads it.
type publishTally struct {
	mu       sync.Mutex // guards the fields below
	nSent    int
	acked    int
	dups     int
	reasons  map[string]int    // "nacked: code" / "invalid" / "failed" -> count
	examples map[string]string // reason -> first message, with its line
}

func (t *publishTally) sent() {
	t.mu.Lock()
	t.nSent++
	t.mu.Unlock()
}

func (t *publishTally) invalid(line int, msg string) { t.add("invalid line", line, msg) }

func (t *publishTally) record(line int, ack client.Ack, err error) {
	var ne *client.NackError
	switch {
	case err == nil:
		t.mu.Lock()
		t.acked++
		if ack.Duplicate {
			t.dups++
		}
		t.mu.Unlock()
	case errors.As(err, &ne):
		t.add("nacked "+ne.Code.String(), line, ne.Message)
	default:
		t.add("failed", line, err.Error())
	}
}

func (t *publishTally) add(reason string, line int, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reasons == nil {
		t.reasons, t.examples = map[string]int{}, map[string]string{}
	}
	t.reasons[reason]++
	if _, ok := t.examples[reason]; !ok {
		t.examples[reason] = fmt.Sprintf("line %d: %s", line, msg)
	}
}

func (t *publishTally) failures() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.reasons {
		n += c
	}
	return n
}

func (t *publishTally) progress(elapsed time.Duration) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	bad := 0
	for _, c := range t.reasons {
		bad += c
	}
	return fmt.Sprintf("sent %d  acked %d  refused %d  %.0f events/s", t.nSent, t.acked, bad, rate(t.acked, elapsed))
}

func (t *publishTally) summary(name string, elapsed time.Duration) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sb strings.Builder
	bad := 0
	for _, c := range t.reasons {
		bad += c
	}
	fmt.Fprintf(&sb, "%s: %d acknowledged (%d duplicates of earlier idempotency keys), %d refused, in %s: %.0f events/s\n",
		name, t.acked, t.dups, bad, elapsed.Round(time.Millisecond), rate(t.acked, elapsed))
	reasons := make([]string, 0, len(t.reasons))
	for r := range t.reasons {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return t.reasons[reasons[i]] > t.reasons[reasons[j]] })
	for _, r := range reasons {
		fmt.Fprintf(&sb, "  %-28s %d  (first: %s)\n", r, t.reasons[r], t.examples[r])
	}
	return sb.String()
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// isTerminal reports whether f is a character device (a terminal), without a terminal library.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
