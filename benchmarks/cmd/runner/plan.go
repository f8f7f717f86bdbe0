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

	// ingest-tcp: each case is measured right after an ingest-http run at 64 clients on the same node
	// (TCPBaselineDur), its same-run baseline.
	TCPCases       []tcpCase
	TCPDur         time.Duration
	TCPMax         int
	TCPBaselineDur time.Duration

	// e2e-tcp: E2EEvents published as fast as TCP (E2ETCP) or HTTP (64 clients) allow, all delivered.
	E2EEvents int
	E2ETCP    tcpCase

	// cluster: TCP publishing to the leader and an e2e burst, single node then three nodes; failover
	// under FailoverDepth publishes in flight per node, the leader killed after FailoverBefore.
	ClusterIngestDur time.Duration
	ClusterE2EEvents int
	FailoverBefore   time.Duration
	FailoverAfter    time.Duration
	FailoverDepth    int

	// scheduler-scale: deliveries pending retry, built by broadcasts to SchedEndpoints endpoints whose
	// sink fails two in three first attempts, up to SchedTarget or for at most SchedBuild; the rest up
	// to SchedTarget is seeded through the node's store (at most SchedSeed).
	SchedTarget    int
	SchedBuild     time.Duration
	SchedSeed      time.Duration
	SchedEndpoints int

	// backlog-growth: e2e at BacklogRate (open loop, BacklogDur) and a closed-loop burst of
	// BacklogE2E events, with an empty store and then with each of BacklogTargets events stored: TCP
	// publishing for at most BacklogFill, the rest seeded through the node's store (at most
	// BacklogSeed per target). -scale adds 10M.
	BacklogTargets []int
	BacklogFill    time.Duration
	BacklogSeed    time.Duration
	BacklogRate    float64
	BacklogDur     time.Duration
	BacklogE2E     int
}

// tcpCase is a TCP ingest load shape: connections × publishes in flight on each.
type tcpCase struct{ Conns, Depth int }

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
		E2EDur:        10 * time.Second,
		Warmup:        time.Second,

		TCPCases:       []tcpCase{{1, 1}, {1, 64}, {4, 64}, {4, 1024}, {16, 1024}},
		TCPDur:         5 * time.Second,
		TCPMax:         2_000_000,
		TCPBaselineDur: 2 * time.Second,

		E2EEvents: 30_000,
		E2ETCP:    tcpCase{4, 256},

		ClusterIngestDur: 5 * time.Second,
		ClusterE2EEvents: 15_000,
		FailoverBefore:   2 * time.Second,
		FailoverAfter:    6 * time.Second,
		FailoverDepth:    16,

		SchedTarget:    1_000_000,
		SchedBuild:     10 * time.Second,
		SchedSeed:      12 * time.Minute,
		SchedEndpoints: 50,

		BacklogTargets: []int{1_000_000},
		BacklogFill:    10 * time.Second,
		BacklogSeed:    8 * time.Minute,
		BacklogRate:    2_000,
		BacklogDur:     8 * time.Second,
		BacklogE2E:     20_000,
	}
}

func quickPlan() plan {
	return plan{
		Payload:       1024,
		UpstreamConns: []int{1, 16, 32, 64},
		UpstreamDur:   time.Second,
		BaselineDur:   time.Second,
		IngestClients: []int{1, 16, 64},
		IngestDur:     1500 * time.Millisecond,
		IngestMax:     100_000,
		Egress:        []egressCase{{1, 4_000, 0}, {100, 40, 0}},
		DrainTimeout:  30 * time.Second,
		SlowEvents:    640,
		FailingEvents: 400,
		E2ERates:      []float64{1_000},
		E2EDur:        2 * time.Second,
		Warmup:        500 * time.Millisecond,

		TCPCases:       []tcpCase{{1, 1}, {4, 1024}},
		TCPDur:         1500 * time.Millisecond,
		TCPMax:         500_000,
		TCPBaselineDur: time.Second,

		E2EEvents: 2_000,
		E2ETCP:    tcpCase{4, 256},

		ClusterIngestDur: time.Second,
		ClusterE2EEvents: 2_000,
		FailoverBefore:   time.Second,
		FailoverAfter:    2500 * time.Millisecond,
		FailoverDepth:    8,

		SchedTarget:    20_000,
		SchedBuild:     4 * time.Second,
		SchedSeed:      time.Minute,
		SchedEndpoints: 50,

		BacklogTargets: []int{30_000},
		BacklogFill:    2 * time.Second,
		BacklogSeed:    time.Minute,
		BacklogRate:    1_000,
		BacklogDur:     time.Second,
		BacklogE2E:     1_500,
	}
}
