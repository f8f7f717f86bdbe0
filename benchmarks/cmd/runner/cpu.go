package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
)

// CPUUse splits the machine's busy CPU over a measurement between Sluice (every node), the sink
// process, this runner (the load generator) and everything else. Others is what the shared machine's
// other tenants took: the larger it is, the less the absolute figures mean (ratios to a baseline
// measured next to them hold up better). Loopback networking done in softirq context is charged to
// whichever process was running, so the split is approximate.
type CPUUse struct {
	ElapsedS    float64 `json:"elapsed_s"`
	MachineBusy float64 `json:"machine_busy_cores"`
	Sluice      float64 `json:"sluice_cores"`
	Sink        float64 `json:"sink_cores"`
	Runner      float64 `json:"runner_cores"`
	Others      float64 `json:"others_cores"`
}

// procSet is what a measurement window watches: the Sluice nodes and the sink processes.
type procSet struct {
	sluices []*harness.Sluice
	sinks   []*sinkProc
}

type cpuSample struct {
	at           time.Time
	busy, total  uint64 // /proc/stat jiffies
	self         time.Duration
	sluice, sink time.Duration
}

func sampleCPU(ps procSet) cpuSample {
	c := cpuSample{at: time.Now(), self: selfCPU()}
	for _, s := range ps.sluices {
		if s.Running() {
			c.sluice += s.CPU()
		}
	}
	for _, k := range ps.sinks {
		c.sink += k.CPU()
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		c.total += v
		if i != 4 && i != 5 {
			c.busy += v
		}
	}
	return c
}

func (a cpuSample) until(b cpuSample) CPUUse {
	el := b.at.Sub(a.at).Seconds()
	if el <= 0 {
		return CPUUse{}
	}
	const hz = 100.0
	u := CPUUse{
		ElapsedS:    round(el, 2),
		MachineBusy: float64(b.busy-a.busy) / hz / el,
		Sluice:      max(0, (b.sluice-a.sluice).Seconds()/el),
		Sink:        max(0, (b.sink-a.sink).Seconds()/el),
		Runner:      (b.self - a.self).Seconds() / el,
	}
	u.Others = max(0, u.MachineBusy-u.Sluice-u.Sink-u.Runner)
	u.MachineBusy, u.Sluice, u.Sink, u.Runner, u.Others = round(u.MachineBusy, 2), round(u.Sluice, 2), round(u.Sink, 2), round(u.Runner, 2), round(u.Others, 2)
	return u
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
