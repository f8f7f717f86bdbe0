package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse as Prometheus text: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsCountKnownTraffic(t *testing.T) {
	var got sync.Map
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("X-Sluice-Delivery-Id"), true)
	}))
	defer sink.Close()
	httpAddr := freePort(t)
	p := startProc(t, t.TempDir(), httpAddr, freePort(t))
	var proj, ep struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "m"}, &proj)
	p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.URL}, &ep)
	const n = 7
	for i := 0; i < n; i++ {
		if c := p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{"endpoint_id": ep.UID, "event_type": "a", "data": i}, nil); c != 201 {
			t.Fatalf("publish: %d", c)
		}
	}
	waitFor(t, "all deliveries counted", func() bool {
		v, _ := value(scrape(t, httpAddr), "sluice_deliveries_total", map[string]string{"endpoint": ep.UID, "outcome": "success"})
		return v == n
	})
	fams := scrape(t, httpAddr)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_events_ingested_total", map[string]string{"project": proj.UID, "protocol": "http"}, n},
		{"sluice_deliveries_total", map[string]string{"project": proj.UID, "endpoint": ep.UID, "outcome": "success"}, n},
		{"sluice_attempt_duration_seconds", map[string]string{"endpoint": ep.UID}, n},
		{"sluice_raft_is_leader", nil, 1},
		{"sluice_raft_peers", nil, 1},
		{"sluice_scheduler_pending", nil, 0},
	}
	for _, c := range checks {
		if v, ok := value(fams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if v, _ := value(fams, "sluice_wal_syncs_total", nil); v == 0 {
		t.Error("sluice_wal_syncs_total is 0 after writes")
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("Go runtime and process metrics are missing")
	}
	// Deleting the endpoint removes its series.
	if c := p.call("DELETE", "/projects/"+proj.UID+"/endpoints/"+ep.UID, nil, nil); c != 200 {
		t.Fatalf("delete endpoint: %d", c)
	}
	waitFor(t, "endpoint series removed", func() bool {
		_, ok := value(scrape(t, httpAddr), "sluice_deliveries_total", map[string]string{"endpoint": ep.UID})
		return !ok
	})
}

// smtpSink is a minimal SMTP server that records each message's recipients and body.
type smtpSink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func newSMTPSink(t *testing.T) *smtpSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, "220 sink ESMTP\r\n")
	var msg strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			io.WriteString(c, "250 sink\r\n")
		case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
			msg.WriteString(line)
			io.WriteString(c, "250 ok\r\n")
		case cmd == "DATA":
			io.WriteString(c, "354 go ahead\r\n")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, msg.String())
			s.mu.Unlock()
			msg.Reset()
			io.WriteString(c, "250 queued\r\n")
		case cmd == "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func TestDisabledEndpointAlertsOwnerByWebhookAndEmail(t *testing.T) {
	const metaSecret = "meta-s3cret"
	type metaReq struct {
		typ, sig string
		body     []byte
	}
	metas := make(chan metaReq, 10)
	metaSink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		metas <- metaReq{r.Header.Get("X-Sluice-Meta-Event-Type"), r.Header.Get("X-Sluice-Signature"), b}
	}))
	defer metaSink.Close()
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer gone.Close()
	mail := newSMTPSink(t)

	httpAddr := freePort(t)
	p := startProc(t, t.TempDir(), httpAddr, freePort(t), "--smtp-addr", mail.ln.Addr().String(), "--smtp-from", "alerts@sluice.test")
	var proj, ep struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "alerts", "config": map[string]any{
		"meta_event": map[string]any{"url": metaSink.URL, "secret": metaSecret, "event_types": []string{"endpoint.disabled", "eventdelivery.failed"}},
	}}, &proj)
	p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": gone.URL, "support_email": "owner@customer.test"}, &ep)
	p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{"endpoint_id": ep.UID, "event_type": "a", "data": 1}, nil)

	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case m := <-metas:
			mac := hmac.New(sha256.New, []byte(metaSecret))
			mac.Write(m.body)
			if want := hex.EncodeToString(mac.Sum(nil)); m.sig != want {
				t.Fatalf("meta event %s signature %q, want %q", m.typ, m.sig, want)
			}
			var body struct {
				EventType string `json:"event_type"`
				Data      struct {
					Endpoint struct{ UID, Status string } `json:"endpoint"`
				} `json:"data"`
			}
			json.Unmarshal(m.body, &body)
			if body.EventType != m.typ {
				t.Fatalf("meta body type %q, header %q", body.EventType, m.typ)
			}
			if m.typ == "endpoint.disabled" && (body.Data.Endpoint.UID != ep.UID || body.Data.Endpoint.Status != "disabled") {
				t.Fatalf("endpoint.disabled names %+v", body.Data.Endpoint)
			}
			seen[m.typ] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("meta events received: %v", seen)
		}
	}
	waitFor(t, "alert email", func() bool { return len(mail.messages()) > 0 })
	if m := mail.messages()[0]; !strings.Contains(m, "owner@customer.test") || !strings.Contains(m, "disabled") || !strings.Contains(m, ep.UID) {
		t.Fatalf("email does not tell the owner: %q", m)
	}
	var got struct {
		Status string
		Health struct {
			LastStatus int     `json:"last_http_status"`
			Rate       float64 `json:"success_rate"`
		} `json:"health"`
	}
	p.call("GET", "/projects/"+proj.UID+"/endpoints/"+ep.UID, nil, &got)
	if got.Status != "disabled" || got.Health.LastStatus != 410 || got.Health.Rate >= 1 {
		t.Fatalf("endpoint after 410: %+v", got)
	}
	var list struct {
		Content []struct{ EventType, Status string } `json:"content"`
	}
	waitFor(t, "meta events recorded as sent", func() bool {
		p.call("GET", "/projects/"+proj.UID+"/meta-events", nil, &list)
		done := 0
		for _, m := range list.Content {
			if m.Status == "success" {
				done++
			}
		}
		return done == 2
	})
}

func TestReadyzBeforeStoreAndWithoutLeader(t *testing.T) {
	// Before the store opens, the listener already answers: alive, not ready.
	var h swapHandler
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/api/v1/projects": 503} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("%s before the store opens = %d, want %d", path, rec.Code, want)
		}
	}
	// A node that does not bootstrap has no leader: alive, not ready.
	httpAddr := freePort(t)
	cmd := startRaw(t, t.TempDir(), httpAddr, freePort(t), "--bootstrap=false")
	_ = cmd
	var body map[string]any
	waitFor(t, "readyz answers", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode == 503 && body["has_leader"] == false && body["store_open"] == true
	})
}
