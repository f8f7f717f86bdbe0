package main

import "time"

// plan is every count and duration of a run; standardPlan fits in a few minutes, quickPlan in about one.
// Every load loop is bounded by a count and a time.
type plan struct {
	Payload int // bytes of event data

	UpstreamConns []int
	UpstreamDur   time.Duration
	BaselineDur   time.Duration // the upstream re-measure just before each ingest and egress case

	IngestClients []int
	IngestDur     time.Duration
	IngestMax     int // requests per client level

	Egress       []egressCase
	DrainTimeout time.Duration // bound on waiting for a backlog to be delivered

	SlowEvents    int
	FailingEvents int

	E2ERates   []float64
	E2EStretch []float64 // run only when this run's ingest ceiling reaches them
	E2EDur     time.Duration

	Warmup time.Duration
}

type egressCase struct {
	Endpoints int
	Events    int           // each event goes to every endpoint
	Timeout   time.Duration // bound on the drain (0: plan.DrainTimeout)
}

func standardPlan() plan {
	return plan{
		Payload:       1024,
		UpstreamConns: []int{1, 16, 32, 64},
		UpstreamDur:   4 * time.Second,
		BaselineDur:   2 * time.Second,
		IngestClients: []int{1, 16, 64},
		IngestDur:     8 * time.Second,
		IngestMax:     500_000,
		Egress:        []egressCase{{1, 20_000, 0}, {100, 300, 0}, {10_000, 1, 75 * time.Second}},
		DrainTimeout:  90 * time.Second,
		SlowEvents:    3_000,
		FailingEvents: 2_000,
		E2ERates:      []float64{1_000, 5_000},
		E2EStretch:    []float64{10_000},
		E2EDur:        15 * time.Second,
		Warmup:        time.Second,
	}
}

func quickPlan() plan {
	return plan{
		Payload:       1024,
		UpstreamConns: []int{1, 16, 32, 64},
		UpstreamDur:   1500 * time.Millisecond,
		BaselineDur:   time.Second,
		IngestClients: []int{1, 16, 64},
		IngestDur:     2500 * time.Millisecond,
		IngestMax:     100_000,
		Egress:        []egressCase{{1, 4_000, 0}, {100, 40, 0}},
		DrainTimeout:  30 * time.Second,
		SlowEvents:    640,
		FailingEvents: 400,
		E2ERates:      []float64{1_000, 5_000},
		E2EDur:        3 * time.Second,
		Warmup:        500 * time.Millisecond,
	}
}
