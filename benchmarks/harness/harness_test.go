package harness

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
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

func TestScanLogCountsFromReadyOffset(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/log"
	head := "level=WARN msg=\"election during start-up\"\n"
	body := "level=INFO msg=ok\nlevel=WARN msg=slow\nlevel=ERROR msg=bad\nSIGQUIT: quit\n"
	if err := os.WriteFile(path, []byte(head+body), 0o644); err != nil {
		t.Fatal(err)
	}
	w, e, samples := scanLog(path, int64(len(head)))
	if w != 1 || e != 2 || len(samples) != 3 {
		t.Fatalf("warn %d error %d samples %v, want 1, 2 and 3 samples", w, e, samples)
	}
}
