package sink

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, id, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/hook", strings.NewReader(body))
	if id != "" {
		req.Header.Set(HeaderDeliveryID, id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDedupesByDeliveryID(t *testing.T) {
	s := start(t, Config{})
	for _, id := range []string{"a", "b", "a", "a", "c"} {
		if code := post(t, s.URL(), id, `{"x":1}`); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	post(t, s.URL(), "", `{}`) // no id: counted as unique
	st := s.Stats()
	if st.Requests != 6 || st.Unique != 4 || st.Duplicates != 2 {
		t.Fatalf("stats %+v, want 6 requests, 4 unique, 2 duplicates", st)
	}
}

func TestFailsFirstAttemptsOnlyEvenlySpaced(t *testing.T) {
	s := start(t, Config{FailFirstShare: 0.5})
	var failed []string
	for i := range 10 {
		id := fmt.Sprint("d", i)
		if code := post(t, s.URL(), id, `{}`); code == 500 {
			failed = append(failed, id)
		}
	}
	if len(failed) != 5 || failed[0] != "d1" || failed[1] != "d3" {
		t.Fatalf("failed first attempts %v, want every second id", failed)
	}
	for _, id := range failed {
		if code := post(t, s.URL(), id, `{}`); code != 200 {
			t.Fatalf("retry of %s answered %d, want 200", id, code)
		}
	}
	st := s.Stats()
	if st.Unique != 10 || st.InjectedFailures != 5 || st.Duplicates != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailRandomStillLetsRetriesThrough(t *testing.T) {
	s := start(t, Config{FailFirstShare: 0.5, FailRandom: true})
	for i := range 200 {
		id := fmt.Sprint("d", i)
		if post(t, s.URL(), id, `{}`) != 200 && post(t, s.URL(), id, `{}`) != 200 {
			t.Fatalf("second attempt of %s failed", id)
		}
	}
	st := s.Stats()
	if st.Unique != 200 || st.InjectedFailures < 60 || st.InjectedFailures > 140 {
		t.Fatalf("stats %+v: want 200 unique and roughly half failed first", st)
	}
}

func TestRecordsPublishToDeliveryLatency(t *testing.T) {
	s := start(t, Config{Delay: 20 * time.Millisecond})
	sent := time.Now().UnixNano()
	post(t, s.URL(), "x", fmt.Sprintf(`{"sent_ns":%d,"pad":"zz"}`, sent))
	h := s.Latency()
	if h.Count() != 1 || h.Quantile(0.5) < 20*time.Millisecond {
		t.Fatalf("latency count %d p50 %v, want one value >= the 20ms delay", h.Count(), h.Quantile(0.5))
	}
}

func TestHangHoldsUntilClose(t *testing.T) {
	s, err := Start(Config{Hang: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL()+"/x", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for s.Stats().Hung == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("hung request answered before Close")
	case <-time.After(50 * time.Millisecond):
	}
	s.Close()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("request still hung after Close")
	}
	if st := s.Stats(); st.Unique != 0 {
		t.Fatalf("a hung request counted as delivered: %+v", st)
	}
}

func TestSentNS(t *testing.T) {
	for body, want := range map[string]int64{`{"sent_ns":123,"a":1}`: 123, `{"a":"b","sent_ns": 9}`: 9} {
		if got, ok := SentNS([]byte(body)); !ok || got != want {
			t.Errorf("SentNS(%s) = %d %v", body, got, ok)
		}
	}
	if _, ok := SentNS([]byte(`{"sent":1}`)); ok {
		t.Error("found sent_ns where there is none")
	}
}

func TestResetForgetsIDsAndCounts(t *testing.T) {
	s := start(t, Config{})
	post(t, s.URL(), "a", `{"sent_ns":1}`)
	s.Reset()
	post(t, s.URL(), "a", `{}`)
	if st := s.Stats(); st.Unique != 1 || st.Duplicates != 0 || st.Requests != 1 || s.Latency().Count() != 0 {
		t.Fatalf("after reset: %+v", st)
	}
}

func postPath(t *testing.T, url, path, id string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(`{}`))
	req.Header.Set(HeaderDeliveryID, id)
	req.Header.Set("X-Sluice-Event-Id", "ev-"+id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestFailPerPathKeepsEachEndpointsPatternRegular(t *testing.T) {
	s := start(t, Config{FailFirstShare: 0.8, FailPerPath: true})
	// Two endpoints interleaved unevenly: each still sees at most 4 failures in a row.
	run := map[string]int{}
	worst := 0
	for i := range 200 {
		path := "/a"
		if i%3 == 0 {
			path = "/b"
		}
		if postPath(t, s.URL(), path, fmt.Sprint("d", i)) == 500 {
			run[path]++
			worst = max(worst, run[path])
		} else {
			run[path] = 0
		}
	}
	if worst != 4 {
		t.Fatalf("longest run of failures on one path %d, want 4", worst)
	}
	if st := s.Stats(); st.InjectedFailures != 106+53 { // 133 ids on /a, 67 on /b
		t.Fatalf("injected %d failures of 200 first attempts, want 159", st.InjectedFailures)
	}
}

func TestControlRoutesAndEventTracking(t *testing.T) {
	s := start(t, Config{TrackEvents: true})
	for _, id := range []string{"x", "y", "x"} {
		postPath(t, s.URL(), "/hook", id)
	}
	get := func(path string) string {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		io.Copy(&b, resp.Body)
		return strings.TrimSpace(b.String())
	}
	if got := get("/_unique"); got != "2" {
		t.Fatalf("/_unique %q, want 2", got)
	}
	if got := get("/_events"); !strings.Contains(got, `"ev-x"`) || !strings.Contains(got, `"ev-y"`) {
		t.Fatalf("/_events %s", got)
	}
	if st := s.Stats(); st.Requests != 3 {
		t.Fatalf("control routes were counted: %+v", st)
	}
	resp, err := http.Post(s.URL()+"/_reset", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := get("/_unique"); got != "0" || len(s.EventIDs()) != 0 {
		t.Fatalf("after reset: unique %s, events %v", got, s.EventIDs())
	}
}
