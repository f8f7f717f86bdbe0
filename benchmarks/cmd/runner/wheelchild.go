package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/dispatcher"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/scheduler"
)

// The node's memory per pending delivery is its timing wheel: a restart rebuilds it from the due
// index with one Schedule per pending delivery. scheduler-scale cannot build 1M real pending retries
// in its time budget, so it also measures the wheel alone at the node's N and at 1M, in a process of
// its own (this binary re-executed with wheelChildFlag) whose peak RSS is then the wheel's, GC
// headroom included.
const wheelChildFlag = "-wheel-child"

// wheelStats is what a wheel child reports.
type wheelStats struct {
	N         int     `json:"n"`
	ScheduleS float64 `json:"schedule_s"`
	// HeapLive is the live heap after a GC with the wheel built, minus before.
	HeapLive uint64 `json:"heap_live_bytes"`
	// PeakRSS is the child's VmHWM with the wheel built; BaseRSS its RSS before.
	PeakRSS uint64 `json:"peak_rss_bytes"`
	BaseRSS uint64 `json:"base_rss_bytes"`
}

// wheelChild schedules n deliveries as Engine.rebuild does (the due index's project+endpoint and
// delivery id bytes, as ForEachDueKey hands them out, turned into a dispatcher.DueKey by a
// dispatcher.KeyTable without allocating), due an hour from now, and prints wheelStats.
func wheelChild(arg string) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 0 {
		fmt.Fprintln(os.Stderr, "wheel child: bad n", arg)
		os.Exit(2)
	}
	pid := os.Getpid()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	st := wheelStats{N: n, BaseRSS: harness.ProcRSS(pid)}
	w := scheduler.New[dispatcher.DueKey](scheduler.Config{}, func([]dispatcher.DueKey) {})
	keys := dispatcher.NewKeyTable()
	now := time.Now()
	pair := []byte(model.NewID(now) + model.NewID(now))
	// Delivery ids: 26 bytes like a ULID, made cheaply so that the timing is the wheel's, not id
	// generation.
	did := []byte(model.NewID(now))
	t0 := time.Now()
	for i := range n {
		at := now.Add(time.Hour + time.Duration(i)*50*time.Microsecond) // retries spread over the build
		// i in the last 8 Crockford digits keeps the id well-formed (a raw byte would not be an id).
		for j, v := len(did)-1, i; j >= len(did)-8; j, v = j-1, v>>5 {
			did[j] = crockford[v&0x1F]
		}
		w.Schedule(keys.KeyOfPair(pair, did), at)
	}
	st.ScheduleS = time.Since(t0).Seconds()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	st.HeapLive = ms.HeapAlloc - min(before, ms.HeapAlloc)
	st.PeakRSS = harness.ProcPeakRSS(pid)
	runtime.KeepAlive(w)
	json.NewEncoder(os.Stdout).Encode(st)
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// measureWheel runs a wheel child with n entries.
func measureWheel(n int) (*wheelStats, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(self, wheelChildFlag, strconv.Itoa(n)).Output()
	if err != nil {
		return nil, fmt.Errorf("wheel child %d: %w", n, err)
	}
	var st wheelStats
	return &st, json.Unmarshal(out, &st)
}
