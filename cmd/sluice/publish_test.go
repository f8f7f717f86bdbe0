package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestPublishCLIOverTCP pipes JSON lines through `sluice publish` to a real node's TCP ingest port:
// good lines are acknowledged and stored, a bad one is refused with its reason, nothing twice.
func TestPublishCLIOverTCP(t *testing.T) {
	tcpAddr := freePort(t)
	p := startProc(t, t.TempDir(), freePort(t), freePort(t), "--tcp-addr", tcpAddr)
	var proj, ep struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "tcp"}, &proj)
	p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/x", "status": "paused"}, &ep)
	var lines []string
	for i := 0; i < 50; i++ {
		lines = append(lines, fmt.Sprintf(`{"endpoint_id":%q,"event_type":"tcp.test","data":{"i":%d},"idempotency_key":"k%d"}`, ep.UID, i, i))
	}
	lines = append(lines, `{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"tcp.test","data":1}`) // unknown endpoint
	run := func() string {
		cmd := exec.Command(binPath, "publish", "--tcp-addr", tcpAddr, "--project", proj.UID, "--key", p.key)
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := run()
	if !strings.Contains(out, "50 acknowledged") || !strings.Contains(out, "not_found") {
		t.Fatalf("summary does not count 50 acknowledged publishes:\n%s", out)
	}
	var page struct {
		Content []struct{ UID string } `json:"content"`
	}
	p.call("GET", "/projects/"+proj.UID+"/events?perPage=1000", nil, &page)
	if len(page.Content) != 50 {
		t.Fatalf("%d events stored, want 50:\n%s", len(page.Content), out)
	}
	// Sending the same lines again creates nothing: the idempotency keys dedupe.
	run()
	p.call("GET", "/projects/"+proj.UID+"/events?perPage=1000", nil, &page)
	if len(page.Content) != 50 {
		t.Fatalf("after a resend %d events stored, want 50", len(page.Content))
	}
	t.Logf("sluice publish output:\n%s", out)
}
