package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestStandardWebhooksThroughTheAPIAcrossARotation creates a Standard Webhooks endpoint over the
// REST API, checks every delivery with the official library, rotates the secret with expire_secret
// and checks deliveries verify with either secret during the overlap.
func TestStandardWebhooksThroughTheAPIAcrossARotation(t *testing.T) {
	type got struct {
		h    http.Header
		body []byte
	}
	reqs := make(chan got, 10)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- got{r.Header.Clone(), b}
	}))
	defer sink.Close()
	p := startProc(t, t.TempDir(), freePort(t), freePort(t))
	var proj struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "sw"}, &proj)
	var ep struct {
		UID     string
		Secrets []struct{ Value string } `json:"secrets"`
	}
	if c := p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.URL, "signature_scheme": "standard"}, &ep); c != 201 {
		t.Fatalf("create endpoint: %d", c)
	}
	if len(ep.Secrets) != 1 || !strings.HasPrefix(ep.Secrets[0].Value, "whsec_") {
		t.Fatalf("standard endpoint secret = %+v, want one whsec_ secret", ep.Secrets)
	}
	oldSecret := ep.Secrets[0].Value
	verify := func(secret string, g got) error {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		return wh.Verify(g.body, g.h)
	}
	publish := func() got {
		t.Helper()
		if c := p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{"endpoint_id": ep.UID, "event_type": "a", "data": map[string]int{"n": 1}}, nil); c != 201 {
			t.Fatalf("publish: %d", c)
		}
		return <-reqs
	}
	g := publish()
	if err := verify(oldSecret, g); err != nil {
		t.Fatalf("official library rejects the delivery: %v", err)
	}
	if g.h.Get("Webhook-Id") == "" || g.h.Get("X-Sluice-Delivery-Id") != g.h.Get("Webhook-Id") {
		t.Fatalf("webhook-id %q is not the delivery id %q", g.h.Get("Webhook-Id"), g.h.Get("X-Sluice-Delivery-Id"))
	}

	if c := p.call("PUT", "/projects/"+proj.UID+"/endpoints/"+ep.UID+"/expire_secret", map[string]any{"expiration": 2}, &ep); c != 202 {
		t.Fatalf("expire_secret: %d", c)
	}
	if len(ep.Secrets) != 2 {
		t.Fatalf("after rotation %d secrets, want 2 live during the overlap", len(ep.Secrets))
	}
	newSecret := ep.Secrets[1].Value
	g = publish()
	for _, sec := range []string{oldSecret, newSecret} {
		if err := verify(sec, g); err != nil {
			t.Fatalf("during the rotation a delivery does not verify with %s…: %v", sec[:10], err)
		}
	}
	if n := len(strings.Fields(g.h.Get("Webhook-Signature"))); n != 2 {
		t.Fatalf("webhook-signature carries %d signatures during the rotation, want 2", n)
	}
}

// TestSSRFGuardRefusesLoopbackByDefault: without --egress-allow-cidrs a delivery to 127.0.0.1 (by IP
// or by a name resolving to it) is refused at dial time and the refusal is on the attempt.
func TestSSRFGuardRefusesLoopbackByDefault(t *testing.T) {
	hits := make(chan struct{}, 10)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits <- struct{}{} }))
	defer sink.Close()
	dataDir := t.TempDir()
	// startRaw adds an allow-list; this node runs with the default policy instead.
	p := startProcArgs(t, dataDir, freePort(t), freePort(t), false)
	var proj struct{ UID string }
	p.call("POST", "/projects", map[string]any{"name": "ssrf"}, &proj)
	port := sink.URL[strings.LastIndex(sink.URL, ":"):]
	for _, u := range []string{sink.URL, "http://localhost" + port} {
		var ep struct{ UID string }
		p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": u}, &ep)
		var ev struct{ UID string }
		p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{"endpoint_id": ep.UID, "event_type": "a", "data": 1}, &ev)
		var attempts []struct{ Error string }
		waitFor(t, "a refused attempt for "+u, func() bool {
			var page struct {
				Content []struct{ UID string } `json:"content"`
			}
			p.call("GET", "/projects/"+proj.UID+"/eventdeliveries?eventId="+ev.UID, nil, &page)
			if len(page.Content) != 1 {
				return false
			}
			p.call("GET", "/projects/"+proj.UID+"/eventdeliveries/"+page.Content[0].UID+"/deliveryattempts", nil, &attempts)
			return len(attempts) > 0
		})
		if !strings.Contains(attempts[0].Error, "forbidden address") {
			t.Fatalf("attempt to %s: error %q does not name the refusal", u, attempts[0].Error)
		}
	}
	select {
	case <-hits:
		t.Fatal("a refused delivery reached the sink")
	default:
	}
}
