package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/dispatcher"
)

// DeliverySeries keeps the last hour of this node's delivery attempts per endpoint and minute: counts
// by outcome and a latency histogram. It feeds the dashboard's chart without touching the store. It
// is node-local and starts empty: in a cluster each node shows what it dispatched itself.
type DeliverySeries struct {
	// Lanes, when set, reports this node's dispatcher lanes (breaker state, queue) for the dashboard.
	Lanes func() []dispatcher.LaneStats

	mu  sync.Mutex // guards eps
	eps map[string]*endpointRing
}

// seriesMinutes is how far back the series reaches.
const seriesMinutes = 60

// latencyBuckets are upper bounds in milliseconds: 1, 2, 4, … 32768, then everything above.
const latencyBuckets = 17

type minuteStats struct {
	minute                   int64 // unix minute this slot holds; stale slots are reset on write
	success, retry, failed   uint32
	latencySumMS             float64
	latency                  [latencyBuckets]uint32
	latencyCount, latencyMax uint32
}

type endpointRing struct {
	project string
	slots   [seriesMinutes]minuteStats
}

// NewDeliverySeries returns an empty series.
func NewDeliverySeries() *DeliverySeries {
	return &DeliverySeries{eps: map[string]*endpointRing{}}
}

// Observe records one attempt. outcome is the attempt's resulting status: success, retry or failed.
func (s *DeliverySeries) Observe(projectID, endpointID, outcome string, latency time.Duration, at time.Time) {
	m := at.Unix() / 60
	ms := float64(latency) / float64(time.Millisecond)
	b := 0
	for b < latencyBuckets-1 && ms > float64(int64(1)<<b) {
		b++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eps == nil {
		s.eps = map[string]*endpointRing{}
	}
	r := s.eps[endpointID]
	if r == nil {
		r = &endpointRing{project: projectID}
		s.eps[endpointID] = r
	}
	sl := &r.slots[m%seriesMinutes]
	if sl.minute != m {
		*sl = minuteStats{minute: m}
	}
	switch outcome {
	case "success":
		sl.success++
	case "retry":
		sl.retry++
	default:
		sl.failed++
	}
	sl.latencySumMS += ms
	sl.latency[b]++
	sl.latencyCount++
	if v := uint32(math.Ceil(ms)); v > sl.latencyMax {
		sl.latencyMax = v
	}
}

// Drop forgets an endpoint (deleted).
func (s *DeliverySeries) Drop(endpointID string) {
	s.mu.Lock()
	delete(s.eps, endpointID)
	s.mu.Unlock()
}

// MinutePoint is one minute of the chart.
type MinutePoint struct {
	Time      time.Time `json:"t"`
	Success   uint32    `json:"success"`
	Retry     uint32    `json:"retry"`
	Failed    uint32    `json:"failed"`
	AvgMS     float64   `json:"latency_avg_ms"`
	P95MS     float64   `json:"latency_p95_ms"`
	MaxMS     uint32    `json:"latency_max_ms"`
	Attempts  uint32    `json:"attempts"`
	histogram [latencyBuckets]uint32
}

// EndpointLive is what this node knows live about an endpoint.
type EndpointLive struct {
	AttemptsLastHour uint32  `json:"attempts_last_hour"`
	SuccessLastHour  uint32  `json:"success_last_hour"`
	PerMinute        float64 `json:"attempts_per_minute"` // over the last 5 minutes
	Breaker          string  `json:"breaker"`
	Queued           int     `json:"queued"`
	InFlight         int     `json:"in_flight"`
}

// read sums the last hour for the endpoints include accepts, one point per minute, oldest first,
// and per endpoint totals.
func (s *DeliverySeries) read(projectID string, include func(eid string) bool, now time.Time) ([]MinutePoint, map[string]*EndpointLive) {
	cur := now.Unix() / 60
	pts := make([]MinutePoint, seriesMinutes)
	for i := range pts {
		pts[i].Time = time.Unix((cur-int64(seriesMinutes-1-i))*60, 0).UTC()
	}
	live := map[string]*EndpointLive{}
	var sum [seriesMinutes]float64
	s.mu.Lock()
	for eid, r := range s.eps {
		if r.project != projectID || !include(eid) {
			continue
		}
		el := &EndpointLive{Breaker: "closed"}
		live[eid] = el
		var recent uint32
		for i := range pts {
			m := cur - int64(seriesMinutes-1-i)
			sl := &r.slots[m%seriesMinutes]
			if sl.minute != m {
				continue
			}
			p := &pts[i]
			p.Success += sl.success
			p.Retry += sl.retry
			p.Failed += sl.failed
			p.Attempts += sl.latencyCount
			sum[i] += sl.latencySumMS
			for b, n := range sl.latency {
				p.histogram[b] += n
			}
			p.MaxMS = max(p.MaxMS, sl.latencyMax)
			el.AttemptsLastHour += sl.latencyCount
			el.SuccessLastHour += sl.success
			if i >= seriesMinutes-5 {
				recent += sl.latencyCount
			}
		}
		el.PerMinute = float64(recent) / 5
	}
	s.mu.Unlock()
	for i := range pts {
		p := &pts[i]
		if p.Attempts == 0 {
			continue
		}
		p.AvgMS = math.Round(sum[i]/float64(p.Attempts)*100) / 100
		want := uint32(math.Ceil(float64(p.Attempts) * 0.95))
		var acc uint32
		for b, n := range p.histogram {
			if acc += n; acc >= want {
				p.P95MS = math.Min(float64(int64(1)<<b), float64(p.MaxMS))
				break
			}
		}
	}
	if s.Lanes != nil {
		for _, l := range s.Lanes() {
			if !include(l.EndpointID) {
				continue
			}
			el := live[l.EndpointID]
			if el == nil {
				continue // not this project's, or no attempt in the last hour on this node
			}
			el.Breaker, el.Queued, el.InFlight = l.Breaker.String(), l.Queued, l.InFlight
		}
	}
	return pts, live
}

// deliveryStats serves the chart and live endpoint figures: GET …/stats/deliveries[?endpointId=].
func (s *Server) deliveryStats(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	_, set, scoped := s.endpointScope(a, q)
	include := func(eid string) bool { return !scoped || set[eid] }
	if eid := q.Get("endpointId"); eid != "" {
		e := s.st.Endpoint(a.project.UID, eid)
		if e == nil || !a.owns(e) || !include(eid) {
			return errf(http.StatusNotFound, "endpoint %s not found", eid)
		}
		include = func(x string) bool { return x == eid }
	}
	series := s.cfg.Series
	if series == nil {
		series = NewDeliverySeries()
	}
	pts, live := series.read(a.project.UID, include, s.clock.Now())
	writeJSON(w, http.StatusOK, "Delivery statistics of this node for the last hour", map[string]any{
		"minutes": pts, "endpoints": live, "node_local": true,
	})
	return nil
}
