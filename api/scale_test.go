package api

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// TestDashboardQueriesAtScale stores SLUICE_SCALE_DELIVERIES deliveries (e.g. 1000000) and times the
// API requests the dashboard makes on page load, as an operator and through a portal link. It is a
// measurement, skipped unless the variable is set; docs/dashboard.md records its figures.
func TestDashboardQueriesAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SLUICE_SCALE_DELIVERIES"))
	if n <= 0 {
		t.Skip("set SLUICE_SCALE_DELIVERIES=1000000 to measure dashboard queries over that many deliveries")
	}
	e := newEnv(t)
	r := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "scale"}, 201)
	pid, key := field(t, r.Data, "uid"), field(t, r.Data, "api_key", "key")
	p := "/projects/" + pid
	const endpoints = 100 // owners o0..o9, ten endpoints each
	eps := make([]string, endpoints)
	for i := range eps {
		eps[i] = field(t, e.mustDo("POST", p+"/endpoints", key, map[string]any{"url": "http://127.0.0.1:9/x", "owner_id": fmt.Sprintf("o%d", i%10), "status": "paused"}, 201).Data, "uid")
	}
	// Events broadcast to every endpoint, proposed straight to the store from a few writers.
	events := n / endpoints
	start := time.Now()
	base := time.Now().Add(-time.Duration(events) * time.Millisecond)
	var wg sync.WaitGroup
	var failedIDs sync.Map
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < events; i += 8 {
				at := base.Add(time.Duration(i) * time.Millisecond)
				ev := model.Event{UID: model.NewID(at), ProjectID: pid, EventType: fmt.Sprintf("type.%d", i%20), CreatedAt: at}
				ts := make([]raftstore.Target, endpoints)
				for j := range ts {
					ts[j] = raftstore.Target{EndpointID: eps[j], DeliveryID: model.NewID(at), OwnerID: fmt.Sprintf("o%d", j%10)}
				}
				if i%100 == 0 {
					failedIDs.Store(ts[i%endpoints].DeliveryID, true)
				}
				data := raftstore.CompressData([]byte(fmt.Sprintf(`{"order":"ord_%d","amount":%d,"note":"scale test payload"}`, i, i%5000)))
				cmd, _ := raftstore.NewCommand(raftstore.CmdPublish, raftstore.Publish{Event: ev, Targets: ts}, data)
				if _, err := e.st.Propose(context.Background(), cmd); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var res raftstore.Results
	now := time.Now().UTC()
	failedIDs.Range(func(k, _ any) bool {
		res.Results = append(res.Results, raftstore.AttemptResult{ProjectID: pid, DeliveryID: k.(string), Status: model.StatusFailed, At: now})
		return true
	})
	cmd, _ := raftstore.NewCommand(raftstore.CmdResults, res, nil)
	if _, err := e.st.Propose(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	t.Logf("stored %d events, %d deliveries (%d failed) in %v", events, events*endpoints, len(res.Results), time.Since(start).Round(time.Millisecond))

	tok := field(t, e.mustDo("POST", p+"/portal-links", key, map[string]any{"owner_id": "o3"}, 201).Data, "token")
	var anyDelivery string
	failedIDs.Range(func(k, _ any) bool { anyDelivery = k.(string); return false })
	cases := []struct{ name, key, path string }{
		{"overview: failed deliveries", key, p + "/eventdeliveries?status=failed&perPage=5"},
		{"overview: endpoints page", key, p + "/endpoints?perPage=100"},
		{"overview: chart", key, p + "/stats/deliveries"},
		{"deliveries, newest", key, p + "/eventdeliveries?perPage=50"},
		{"deliveries, failed", key, p + "/eventdeliveries?status=failed&perPage=50"},
		{"deliveries, one endpoint", key, p + "/eventdeliveries?perPage=50&endpointId=" + eps[7]},
		{"deliveries, one owner (10 endpoints)", key, p + "/eventdeliveries?perPage=50&ownerId=o7"},
		{"deliveries, event type (no index: scan budget)", key, p + "/eventdeliveries?perPage=50&eventType=type.3"},
		{"deliveries, time range", key, p + "/eventdeliveries?perPage=50&startDate=" + base.Add(time.Duration(events/2)*time.Millisecond).UTC().Format(time.RFC3339) + "&endDate=" + base.Add(time.Duration(events/2+1000)*time.Millisecond).UTC().Format(time.RFC3339)},
		{"events, newest", key, p + "/events?perPage=50"},
		{"events, payload search (scan budget)", key, p + "/events?perPage=50&q=ord_4242"},
		{"delivery detail", key, p + "/eventdeliveries/" + anyDelivery},
		{"delivery attempts", key, p + "/eventdeliveries/" + anyDelivery + "/deliveryattempts"},
		{"portal: deliveries", tok, p + "/eventdeliveries?perPage=50"},
		{"portal: failed deliveries", tok, p + "/eventdeliveries?status=failed&perPage=50"},
		{"portal: events", tok, p + "/events?perPage=50"},
		{"portal: endpoints", tok, p + "/endpoints"},
	}
	for _, c := range cases {
		var ds []time.Duration
		for i := 0; i < 5; i++ {
			t0 := time.Now()
			rep := e.do("GET", c.path, c.key, nil)
			ds = append(ds, time.Since(t0))
			if rep.Code != http.StatusOK {
				t.Fatalf("%s: %d %s", c.name, rep.Code, rep.Message)
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("%-50s median %7.2f ms  max %7.2f ms", c.name, float64(ds[2].Microseconds())/1000, float64(ds[4].Microseconds())/1000)
	}
}
