package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestIngestURLIsServedByTheBinary: the binary mounts /ingest/ beside the API, a verified GitHub
// webhook reaches the subscribed service, and the outcomes are counted in /metrics.
func TestIngestURLIsServedByTheBinary(t *testing.T) {
	got := make(chan []byte, 4)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer sink.Close()
	httpAddr := freePort(t)
	p := startProc(t, t.TempDir(), httpAddr, freePort(t))
	var proj, ep, src struct {
		UID    string `json:"uid"`
		MaskID string `json:"mask_id"`
	}
	p.call("POST", "/projects", map[string]any{"name": "in", "type": "incoming"}, &proj)
	p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.URL}, &ep)
	if c := p.call("POST", "/projects/"+proj.UID+"/sources", map[string]any{"name": "gh", "provider": "github",
		"verifier": map[string]any{"hmac": map[string]any{"secret": "s3"}}}, &src); c != 201 {
		t.Fatalf("create source: %d", c)
	}
	if c := p.call("POST", "/projects/"+proj.UID+"/subscriptions", map[string]any{"endpoint_id": ep.UID, "source_id": src.UID}, nil); c != 201 {
		t.Fatalf("create subscription: %d", c)
	}
	body := []byte(`{"ref":"refs/heads/main"}`)
	send := func(secret string) int {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		req, _ := http.NewRequest("POST", "http://"+httpAddr+"/ingest/"+src.MaskID, bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := send("wrong"); c != 401 {
		t.Fatalf("wrongly signed webhook: %d", c)
	}
	if c := send("s3"); c != 200 {
		t.Fatalf("signed webhook: %d", c)
	}
	if b := <-got; !bytes.Equal(b, body) {
		t.Fatalf("delivered %q, want %q", b, body)
	}
	fams := scrape(t, httpAddr)
	for outcome, want := range map[string]float64{"accepted": 1, "verify_failed": 1} {
		if v, ok := value(fams, "sluice_ingest_requests_total", map[string]string{"source": src.UID, "outcome": outcome}); !ok || v != want {
			t.Errorf("sluice_ingest_requests_total{outcome=%q} = %v (present %v), want %v", outcome, v, ok, want)
		}
	}
}
