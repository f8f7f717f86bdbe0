package dispatcher

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

var egressProfile = flag.String("egress.cpuprofile", "", "BenchmarkEngineEgress: write a CPU profile of the drain alone (not the publishing before it) to this file")

// egressStdlib sends the engine's plain-http deliveries through net/http (netpool.Config.StdlibHTTP1), for
// A/B runs of the lean HTTP/1.1 client.
var egressStdlib = flag.Bool("egress.stdlib", false, "engine tests and benchmarks: send plain-http deliveries through net/http (netpool Config.StdlibHTTP1)")

// BenchmarkEngineEgress drains a backlog through the whole delivery path: a real store (Raft, Pebble,
// fsync), the engine, netpool and an HTTP sink on 127.0.0.1, as the egress scenario does. The backlog
// is published to paused endpoints, then they are activated and the clock runs until every delivery's
// result is committed. cpu-µs/delivery is the process's CPU (the in-process sink's included): compare
// it across commits, interleaved, rather than ns/op on a shared machine.
//
// The e2e case publishes to active endpoints instead (64 publishers, no backlog): CPU per delivery
// of publishing and delivering together, as in the e2e scenarios.
func BenchmarkEngineEgress(b *testing.B) {
	for _, fanout := range []int{1, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", fanout), func(b *testing.B) { benchEgress(b, fanout, false) })
	}
	b.Run("e2e", func(b *testing.B) { benchEgress(b, 1, true) })
}

func benchEgress(b *testing.B, fanout int, e2e bool) {
	var got atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(sink.Close)
	e := startEngine(b, b.TempDir(), nil)
	e.project()
	eids := make([]string, fanout)
	eps := make([]model.Endpoint, fanout)
	for i := range eids {
		eids[i] = e.endpoint(sink.URL+"/hook", func(ep *model.Endpoint) {
			if !e2e {
				ep.Status = model.EndpointPaused
			}
		})
		eps[i] = *e.st.Endpoint(e.pid, eids[i])
	}
	events := (b.N + fanout - 1) / fanout
	data := raftstore.CompressData([]byte(`{"data":"` + strings.Repeat("x", 1000) + `"}`))
	var wg sync.WaitGroup
	var next atomic.Int64
	publish := func() {
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(events) {
					now := time.Now().UTC()
					ev := model.Event{UID: model.NewID(now), ProjectID: e.pid, EventType: "invoice.paid", CreatedAt: now}
					var ts []raftstore.Target
					for _, eid := range eids {
						ts = append(ts, raftstore.Target{EndpointID: eid, DeliveryID: model.NewID(now)})
					}
					c, _ := raftstore.NewCommand(raftstore.CmdPublish, raftstore.Publish{Event: ev, Targets: ts}, data)
					if r, err := e.st.Propose(context.Background(), c); err != nil || r.Err != nil {
						b.Errorf("publish: %v %v", err, r.Err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	if !e2e {
		publish()
	}
	want := int64(events * fanout)
	succeeded := func() int64 { return int64(e.eng.Dispatcher().Stats().Succeeded) }
	base := succeeded()
	b.ReportAllocs()
	b.ResetTimer()
	if *egressProfile != "" {
		f, err := os.Create(*egressProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	if e2e {
		publish()
	}
	for _, ep := range eps {
		if !e2e {
			ep.Status = model.EndpointActive
			e.propose(raftstorePutEndpoint(ep))
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	// Done when every attempt succeeded and no delivery is pending in the store any more (its
	// result is committed).
	for succeeded()-base < want || e.eng.Pending() > 0 || duePending(e.st) > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("after 5 min: %d of %d delivered, sink saw %d", succeeded()-base, want, got.Load())
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(want), "cpu-µs/delivery")
	b.ReportMetric(0, "ns/op")
}

func duePending(st *raftstore.Store) int {
	n := 0
	st.ForEachDue(func(raftstore.Due) bool { n++; return true })
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
