package harness

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseMetricsAndDelta(t *testing.T) {
	before, err := ParseMetrics(bufio.NewScanner(strings.NewReader(`# HELP x
sluice_wal_syncs_total 10
sluice_dispatch_outcomes_total{outcome="success"} 3
sluice_dispatch_outcomes_total{outcome="retry"} 1
sluice_lane_queued{endpoint="a b"} 7 1700000000000
`)))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := ParseMetrics(bufio.NewScanner(strings.NewReader(`sluice_wal_syncs_total 25
sluice_dispatch_outcomes_total{outcome="success"} 10
sluice_dispatch_outcomes_total{outcome="retry"} 2
`)))
	if got := before.Delta(after, "sluice_wal_syncs_total"); got != 15 {
		t.Errorf("syncs delta %v, want 15", got)
	}
	if got := before.Delta(after, "sluice_dispatch_outcomes_total"); got != 8 {
		t.Errorf("outcomes delta over all labels %v, want 8", got)
	}
	if got := before.Delta(after, `sluice_dispatch_outcomes_total{outcome="success"}`); got != 7 {
		t.Errorf("success delta %v, want 7", got)
	}
	if got := before[`sluice_lane_queued{endpoint="a b"}`]; got != 7 {
		t.Errorf("label with a space and a timestamp parsed as %v, want 7", got)
	}
	if before.Sum("sluice_wal") != 0 {
		t.Error("Sum matched a name prefix")
	}
}

func TestParallelStopsAtFirstError(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	err := Parallel(1000, 4, func(i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if calls.Load() == 1000 {
		t.Fatal("kept calling after the first error")
	}
	var n atomic.Int64
	if err := Parallel(50, 8, func(int) error { n.Add(1); return nil }); err != nil || n.Load() != 50 {
		t.Fatalf("err %v after %d of 50 calls", err, n.Load())
	}
}

func TestLogFieldAndTime(t *testing.T) {
	line := `time=2026-11-26T22:12:00.123Z level=INFO msg="delivery engine active" pending=1000000`
	if got := LogField(line, "pending"); got != "1000000" {
		t.Fatalf("pending %q", got)
	}
	if got := logTime(line, time.Time{}); got.UnixMilli()%1000 != 123 {
		t.Fatalf("time %v", got)
	}
}

func TestScanLogCountsFromReadyOffset(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/log"
	head := "level=WARN msg=\"election during start-up\"\n"
	body := "level=INFO msg=ok\nlevel=WARN msg=slow\nlevel=ERROR msg=bad\nSIGQUIT: quit\n"
	if err := os.WriteFile(path, []byte(head+body), 0o644); err != nil {
		t.Fatal(err)
	}
	w, e, samples := scanLog(path, [][2]int64{{0, int64(len(head))}})
	if w != 1 || e != 2 || len(samples) != 3 {
		t.Fatalf("warn %d error %d samples %v, want 1, 2 and 3 samples", w, e, samples)
	}
	// A restart appends to the log: its start-up range is skipped too, and an unclosed range (never
	// ready) skips to the end.
	restart := "level=WARN msg=\"election after restart\"\n"
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(restart + "level=ERROR msg=late\n")
	f.Close()
	end := int64(len(head) + len(body))
	if w, e, _ := scanLog(path, [][2]int64{{0, int64(len(head))}, {end, end + int64(len(restart))}}); w != 1 || e != 3 {
		t.Fatalf("after a restart: warn %d error %d, want 1 and 3", w, e)
	}
	if w, e, _ := scanLog(path, [][2]int64{{0, int64(len(head))}, {end, -1}}); w != 1 || e != 2 {
		t.Fatalf("with an open range: warn %d error %d, want 1 and 2", w, e)
	}
}
