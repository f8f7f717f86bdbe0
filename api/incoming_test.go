package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	stripewebhook "github.com/stripe/stripe-go/v82/webhook"

	"github.com/sluice-gw/sluice/dispatcher"
	"github.com/sluice-gw/sluice/incoming"
	"github.com/sluice-gw/sluice/netpool"
	"github.com/sluice-gw/sluice/raftstore"
)

// newIncomingEnv is newEnv plus the delivery engine (so events reach real sinks) and the ingest
// handler mounted beside the API, as the binary mounts them.
func newIncomingEnv(t *testing.T, maxPayload int64) (*env, *Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := l.Addr().String()
	l.Close()
	var eng atomic.Pointer[dispatcher.Engine]
	st, err := raftstore.Open(raftstore.Config{DataDir: t.TempDir(), RaftAddr: raftAddr, Bootstrap: true, FastElections: true,
		Observe: func(ef raftstore.Effects) {
			if x := eng.Load(); x != nil {
				x.Observe(ef)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureRootKey(ctx, st, rootKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	pool, err := netpool.New(netpool.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	x, err := dispatcher.NewEngine(dispatcher.EngineConfig{}, st, pool)
	if err != nil {
		t.Fatal(err)
	}
	eng.Store(x)
	x.SetActive(true)
	x.SetLeader(true)
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); x.Run(rctx) }()
	api := New(st, Config{MaxPayloadBytes: maxPayload})
	mux := http.NewServeMux()
	mux.Handle("/api/", api.Handler())
	mux.Handle("/ingest/", api.IngestHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); rcancel(); <-done; st.Close() })
	return &env{t: t, st: st, srv: srv, base: srv.URL + "/api/v1"}, api
}

// sink is an internal service: it records what it receives.
type sink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []received
	hits atomic.Int64
}

type received struct {
	header http.Header
	body   []byte
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, received{header: r.Header.Clone(), body: b})
		s.mu.Unlock()
		s.hits.Add(1)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// post sends a raw request to an ingest URL.
func (e *env) post(rawURL string, hdr http.Header, body []byte) (int, string, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rawURL, bytes.NewReader(body))
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

type incomingWorld struct {
	pid, key string
}

func incomingProject(e *env) incomingWorld {
	r := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "receiver", "type": "incoming"}, 201)
	return incomingWorld{pid: field(e.t, r.Data, "uid"), key: field(e.t, r.Data, "api_key", "key")}
}

func (e *env) endpoint(w incomingWorld, url string) string {
	r := e.mustDo("POST", "/projects/"+w.pid+"/endpoints", w.key, map[string]any{"url": url}, 201)
	return field(e.t, r.Data, "uid")
}

func (e *env) source(w incomingWorld, body map[string]any) (uid, ingestURL string) {
	r := e.mustDo("POST", "/projects/"+w.pid+"/sources", w.key, body, 201)
	return field(e.t, r.Data, "uid"), field(e.t, r.Data, "url")
}

func githubHeaders(secret, event, delivery string, body []byte) http.Header {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return http.Header{
		"Content-Type":        {"application/json"},
		"X-Github-Event":      {event},
		"X-Github-Delivery":   {delivery},
		"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(m.Sum(nil))},
	}
}

// TestGitHubSourceRoutesByTypeAndBodyFilter is the end-to-end proof: a GitHub source receives a push
// and pull requests; the pull request reaches only the service subscribed to it with a body filter
// on action, and every delivery carries the body byte for byte.
func TestGitHubSourceRoutesByTypeAndBodyFilter(t *testing.T) {
	e, api := newIncomingEnv(t, 1<<20)
	w := incomingProject(e)
	const secret = "gh-webhook-secret"
	sid, ingestURL := e.source(w, map[string]any{"name": "github", "provider": "github",
		"verifier": map[string]any{"hmac": map[string]any{"secret": secret}}})
	if !strings.Contains(ingestURL, "/ingest/") || !strings.HasPrefix(ingestURL, e.srv.URL) {
		t.Fatalf("ingest url = %q", ingestURL)
	}
	builds, reviews := newSink(t), newSink(t)
	buildsEP, reviewsEP := e.endpoint(w, builds.srv.URL+"/hook"), e.endpoint(w, reviews.srv.URL+"/hook")
	p := "/projects/" + w.pid
	e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": buildsEP, "source_id": sid,
		"filter_config": map[string]any{"event_types": []string{"push"}}}, 201)
	e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": reviewsEP, "source_id": sid,
		"filter_config": map[string]any{"event_types": []string{"pull_request"},
			"filter": map[string]any{"body": map[string]any{"action": map[string]any{"$in": []string{"opened", "reopened"}}}}}}, 201)

	push := []byte(`{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",  "commits":[{"id":"6113728"}]}`)
	opened := []byte(`{"action":"opened","number":42,"pull_request":{"title":"Add <sluice> & more"}}`)
	closed := []byte(`{"action":"closed","number":41}`)
	for _, tc := range []struct {
		event, delivery string
		body            []byte
		matched         string
	}{
		{"push", "d-push", push, "1"},
		{"pull_request", "d-pr-open", opened, "1"},
		{"pull_request", "d-pr-closed", closed, "0"},
	} {
		code, resp, h := e.post(ingestURL, githubHeaders(secret, tc.event, tc.delivery, tc.body), tc.body)
		if code != 200 || h.Get("X-Sluice-Event-Id") == "" {
			t.Fatalf("%s: ingest = %d %s", tc.delivery, code, resp)
		}
		var env struct{ Data map[string]any }
		json.Unmarshal([]byte(resp), &env)
		if fmt.Sprint(env.Data["matched_endpoints"]) != tc.matched {
			t.Fatalf("%s matched %v endpoints, want %s", tc.delivery, env.Data["matched_endpoints"], tc.matched)
		}
		// The event is committed when the provider is answered.
		ev, err := e.st.Event(w.pid, h.Get("X-Sluice-Event-Id"))
		if err != nil || ev.SourceID != sid || ev.EventType != tc.event || !bytes.Equal(ev.Data, tc.body) || ev.Headers["X-Github-Delivery"] != tc.delivery {
			t.Fatalf("%s: stored event %+v, %v", tc.delivery, ev, err)
		}
	}
	waitFor(t, "the push and the opened pull request to be delivered", func() bool {
		return builds.hits.Load() >= 1 && reviews.hits.Load() >= 1
	})
	// Give a wrongly routed delivery the chance to show up: the closed PR was matched to nothing, so
	// once its event exists nothing more can arrive; check the deliveries the store recorded too.
	b, r := builds.received(), reviews.received()
	if len(b) != 1 || !bytes.Equal(b[0].body, push) || b[0].header.Get("X-Github-Event") != "push" {
		t.Fatalf("builds received %d requests: %+v", len(b), b)
	}
	if len(r) != 1 || !bytes.Equal(r[0].body, opened) || r[0].header.Get("X-Github-Event") != "pull_request" {
		t.Fatalf("reviews received %d requests", len(r))
	}
	if r[0].header.Get("X-Hub-Signature-256") != "" {
		t.Fatal("the provider's signature header was forwarded to an internal service")
	}
	d := e.mustDo("GET", p+"/eventdeliveries?perPage=100", w.key, nil, 200)
	var page struct {
		Content []struct {
			EndpointID string `json:"endpoint_id"`
		} `json:"content"`
	}
	json.Unmarshal(d.Data, &page)
	if len(page.Content) != 2 {
		t.Fatalf("%d deliveries recorded, want 2", len(page.Content))
	}

	// A retry of the push (same X-GitHub-Delivery) creates nothing.
	before := e.st.AppliedIndex()
	code, _, h := e.post(ingestURL, githubHeaders(secret, "push", "d-push", push), push)
	if code != 200 || h.Get("Idempotent-Replayed") != "true" || e.st.AppliedIndex() != before {
		t.Fatalf("provider retry: %d replayed=%q, applied index %d -> %d", code, h.Get("Idempotent-Replayed"), before, e.st.AppliedIndex())
	}
	st := api.IngestStats()
	if len(st.Sources) != 1 || st.Sources[0].Accepted != 3 || st.Sources[0].Duplicates != 1 {
		t.Fatalf("ingest stats = %+v", st)
	}
}

func TestStripeAndStandardWebhooksThroughIngest(t *testing.T) {
	e, api := newIncomingEnv(t, 1<<20)
	w := incomingProject(e)
	const stripeSecret = "whsec_stripe_test"
	_, stripeURL := e.source(w, map[string]any{"name": "stripe", "provider": "stripe",
		"verifier": map[string]any{"type": "hmac", "hmac": map[string]any{"secret": stripeSecret}}})
	now := time.Now()
	body := []byte(`{"id":"evt_1N","object":"event","type":"invoice.paid","data":{"object":{"amount_paid":2000,"currency":"eur"}}}`)
	sign := func(b []byte, secret string, at time.Time) http.Header {
		p := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: b, Secret: secret, Timestamp: at})
		return http.Header{"Stripe-Signature": {p.Header}, "Content-Type": {"application/json"}}
	}
	refused := []struct {
		name string
		hdr  http.Header
		body []byte
	}{
		{"tampered body", sign(body, stripeSecret, now), bytes.Replace(body, []byte("2000"), []byte("9000"), 1)},
		{"other secret", sign(body, "whsec_other", now), body},
		{"replayed after the tolerance", sign(body, stripeSecret, now.Add(-incoming.Tolerance-time.Minute)), body},
		{"no signature", http.Header{"Content-Type": {"application/json"}}, body},
		{"malformed signature", http.Header{"Stripe-Signature": {"t=abc"}}, body},
	}
	for _, tc := range refused {
		before := e.st.AppliedIndex()
		if code, resp, _ := e.post(stripeURL, tc.hdr, tc.body); code != 401 || !strings.Contains(resp, "verification failed") {
			t.Fatalf("%s: %d %s, want 401", tc.name, code, resp)
		}
		if e.st.AppliedIndex() != before {
			t.Fatalf("%s: a refused request wrote to the log", tc.name)
		}
	}
	code, resp, h := e.post(stripeURL, sign(body, stripeSecret, now), body)
	if code != 200 {
		t.Fatalf("valid Stripe request: %d %s", code, resp)
	}
	evid := h.Get("X-Sluice-Event-Id")
	if ev, err := e.st.Event(w.pid, evid); err != nil || ev.EventType != "invoice.paid" || !bytes.Equal(ev.Data, body) {
		t.Fatalf("stored %+v %v", ev, err)
	}
	// Stripe retries the same event (same id, new signature): nothing new.
	before := e.st.AppliedIndex()
	code, _, h = e.post(stripeURL, sign(body, stripeSecret, now.Add(time.Second)), body)
	if code != 200 || h.Get("X-Sluice-Event-Id") != evid || e.st.AppliedIndex() != before {
		t.Fatalf("Stripe retry created something: %d, event %s (first %s)", code, h.Get("X-Sluice-Event-Id"), evid)
	}

	const stdSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	_, stdURL := e.source(w, map[string]any{"name": "svix", "provider": "standardwebhooks",
		"verifier":        map[string]any{"hmac": map[string]any{"secret": stdSecret}},
		"custom_response": map[string]any{"status": 202, "body": "ok", "content_type": "text/plain"}})
	wh, _ := standardwebhooks.NewWebhook(stdSecret)
	stdBody := []byte(`{"type":"user.created","timestamp":"2026-11-26T00:00:00Z","data":{"id":"u_1"}}`)
	sig, _ := wh.Sign("msg_2", now, stdBody)
	stdHdr := http.Header{"Webhook-Id": {"msg_2"}, "Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Webhook-Signature": {sig}}
	code, resp, h = e.post(stdURL, stdHdr, stdBody)
	if code != 202 || resp != "ok" || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("standard webhooks: %d %q %q", code, resp, h.Get("Content-Type"))
	}
	if ev, _ := e.st.Event(w.pid, h.Get("X-Sluice-Event-Id")); ev == nil || ev.EventType != "user.created" {
		t.Fatalf("standard webhooks event = %+v", ev)
	}
	if code, _, _ := e.post(stdURL, stdHdr, append(stdBody, ' ')); code != 401 {
		t.Fatalf("tampered Standard Webhooks body: %d", code)
	}
	var failed uint64
	for _, s := range api.IngestStats().Sources {
		failed += s.VerifyFailed
	}
	if failed != uint64(len(refused)+1) {
		t.Fatalf("verification failures counted %d, want %d", failed, len(refused)+1)
	}
}

// TestTwilioFormBodyIsStoredAndDeliveredRaw: a form-encoded body (Twilio) is accepted as raw bytes,
// kept byte for byte and delivered with its original Content-Type; filters can read its fields.
func TestTwilioFormBodyIsStoredAndDeliveredRaw(t *testing.T) {
	e, _ := newIncomingEnv(t, 1<<20)
	w := incomingProject(e)
	const token = "twilio-auth-token"
	sid, ingestURL := e.source(w, map[string]any{"name": "sms", "provider": "twilio",
		"verifier": map[string]any{"hmac": map[string]any{"secret": token}}})
	delivered, failed := newSink(t), newSink(t)
	p := "/projects/" + w.pid
	e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": e.endpoint(w, delivered.srv.URL), "source_id": sid,
		"filter_config": map[string]any{"filter": map[string]any{"body": map[string]any{"MessageStatus": "delivered"}}}}, 201)
	e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": e.endpoint(w, failed.srv.URL), "source_id": sid,
		"filter_config": map[string]any{"filter": map[string]any{"body": map[string]any{"MessageStatus": "failed"}}}}, 201)
	form := "MessageSid=SM1&MessageStatus=delivered&To=%2B15551234567"
	params, _ := url.ParseQuery(form)
	sig := base64.StdEncoding.EncodeToString(incoming.TwilioSignature([]byte(token), ingestURL, params))
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {sig}}
	code, resp, h := e.post(ingestURL, hdr, []byte(form))
	if code != 200 {
		t.Fatalf("twilio: %d %s", code, resp)
	}
	waitFor(t, "the delivered-status webhook to reach its service", func() bool { return delivered.hits.Load() == 1 })
	got := delivered.received()[0]
	if string(got.body) != form || got.header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Fatalf("delivered %q with Content-Type %q", got.body, got.header.Get("Content-Type"))
	}
	if failed.hits.Load() != 0 {
		t.Fatal("the failed-status service received a delivered-status webhook")
	}
	// The API shows the raw body as a JSON string.
	r := e.mustDo("GET", p+"/events/"+h.Get("X-Sluice-Event-Id"), w.key, nil, 200)
	if field(t, r.Data, "data") != form {
		t.Fatalf("event data shown as %s", field(t, r.Data, "data"))
	}
	// Same form signed for another URL: refused.
	other := base64.StdEncoding.EncodeToString(incoming.TwilioSignature([]byte(token), ingestURL+"x", params))
	if code, _, _ := e.post(ingestURL, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {other}}, []byte(form)); code != 401 {
		t.Fatalf("signature for another URL: %d", code)
	}
}

func TestIngestBadInput(t *testing.T) {
	e, api := newIncomingEnv(t, 2048)
	w := incomingProject(e)
	const secret = "s"
	_, ghURL := e.source(w, map[string]any{"name": "gh", "provider": "github", "verifier": map[string]any{"hmac": map[string]any{"secret": secret}}})
	_, rawURL := e.source(w, map[string]any{"name": "raw", "verifier": map[string]any{"type": "api_key",
		"api_key": map[string]any{"header_name": "X-Key", "header_value": "k"}}, "allow_non_json": true})
	big := []byte(`{"a":"` + strings.Repeat("x", 3000) + `"}`)
	form := []byte("a=b")
	cases := []struct {
		name   string
		method string
		url    string
		hdr    http.Header
		body   []byte
		code   int
		msg    string
	}{
		{"unknown mask", "POST", e.srv.URL + "/ingest/nope", nil, []byte(`{}`), 404, "no source"},
		{"no mask", "POST", e.srv.URL + "/ingest/", nil, []byte(`{}`), 404, "no source"},
		{"oversized", "POST", ghURL, githubHeaders(secret, "push", "1", big), big, 413, "limit"},
		{"missing signature", "POST", ghURL, http.Header{"X-Github-Event": {"push"}}, []byte(`{}`), 401, "no X-Hub-Signature-256"},
		{"malformed signature", "POST", ghURL, http.Header{"X-Hub-Signature-256": {"md5=1"}}, []byte(`{}`), 401, "malformed"},
		{"wrong signature", "POST", ghURL, githubHeaders("other", "push", "1", []byte(`{}`)), []byte(`{}`), 401, "do not match"},
		{"non-JSON body", "POST", ghURL, githubHeaders(secret, "push", "1", form), form, 400, "not JSON"},
		{"null body", "POST", ghURL, githubHeaders(secret, "push", "1", []byte("null")), []byte("null"), 400, "data"},
		{"empty body", "POST", rawURL, http.Header{"X-Key": {"k"}}, nil, 400, "empty"},
		{"wrong api key", "POST", rawURL, http.Header{"X-Key": {"j"}}, []byte(`{}`), 401, "do not match"},
		{"method", "DELETE", rawURL, nil, nil, 405, "POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.st.AppliedIndex()
			req, _ := http.NewRequest(tc.method, tc.url, bytes.NewReader(tc.body))
			for k, vs := range tc.hdr {
				req.Header[k] = vs
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.msg) {
				t.Fatalf("got %d %s, want %d containing %q", resp.StatusCode, b, tc.code, tc.msg)
			}
			if e.st.AppliedIndex() != before {
				t.Fatal("a refused request wrote to the log")
			}
		})
	}
	// A source that allows non-JSON takes the form as raw bytes.
	if code, resp, _ := e.post(rawURL, http.Header{"X-Key": {"k"}, "Content-Type": {"text/plain"}}, []byte("hello")); code != 200 {
		t.Fatalf("raw body: %d %s", code, resp)
	}
	// GET is a URL check: answered, nothing created, Meta's challenge echoed.
	before := e.st.AppliedIndex()
	resp, err := http.Get(rawURL + "?hub.mode=subscribe&hub.challenge=1158201444")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "1158201444" || e.st.AppliedIndex() != before {
		t.Fatalf("GET challenge = %d %q", resp.StatusCode, b)
	}
	if st := api.IngestStats(); st.UnknownMask != 2 {
		t.Fatalf("unknown mask count = %d", st.UnknownMask)
	}
}

func TestSourceCRUDAndSubscriptionRules(t *testing.T) {
	e, _ := newIncomingEnv(t, 1<<20)
	w := incomingProject(e)
	p := "/projects/" + w.pid
	r := e.mustDo("POST", p+"/sources", w.key, map[string]any{"name": "shop", "provider": "shopify",
		"verifier": map[string]any{"hmac": map[string]any{"secret": "shpss_1"}}, "forward_headers": []string{"X-Request-Id"}}, 201)
	sid, mask := field(t, r.Data, "uid"), field(t, r.Data, "mask_id")
	if len(mask) < 22 || strings.ContainsAny(mask, "+/=") {
		t.Fatalf("mask id %q is not a URL-safe random id", mask)
	}
	if field(t, r.Data, "verifier", "hmac", "secret") != dispatcher.Redacted {
		t.Fatalf("the secret was shown: %s", r.Data)
	}
	// An update that sends the redacted secret back keeps the stored one.
	r = e.mustDo("PUT", p+"/sources/"+sid, w.key, map[string]any{"name": "shop2",
		"verifier": map[string]any{"type": "hmac", "hmac": map[string]any{"secret": dispatcher.Redacted}}}, 202)
	if field(t, r.Data, "mask_id") != mask || e.st.Source(w.pid, sid).Verifier.HMac.Secret != "shpss_1" {
		t.Fatalf("update lost the mask id or the secret: %s", r.Data)
	}
	m := hmac.New(sha256.New, []byte("shpss_1"))
	m.Write([]byte(`{"id":1}`))
	code, resp, _ := e.post(e.srv.URL+"/ingest/"+mask, http.Header{"X-Shopify-Hmac-Sha256": {base64.StdEncoding.EncodeToString(m.Sum(nil))},
		"X-Shopify-Topic": {"orders/create"}}, []byte(`{"id":1}`))
	if code != 200 || !strings.Contains(resp, "orders/create") {
		t.Fatalf("shopify ingest after update: %d %s", code, resp)
	}
	r = e.mustDo("GET", p+"/sources", w.key, nil, 200)
	if !strings.Contains(string(r.Data), mask) {
		t.Fatalf("list = %s", r.Data)
	}
	ep := e.endpoint(w, "http://127.0.0.1:9/")
	e.mustDo("POST", p+"/subscriptions", w.key, map[string]any{"endpoint_id": ep, "source_id": sid}, 201)

	out := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "out"}, 201)
	outPID, outKey := field(t, out.Data, "uid"), field(t, out.Data, "api_key", "key")
	outEP := e.mustDo("POST", "/projects/"+outPID+"/endpoints", outKey, map[string]any{"url": "http://127.0.0.1:9/"}, 201)
	missing := "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	cases := []struct {
		name, method, path, key string
		body                    any
		code                    int
		msg                     string
	}{
		{"source in an outgoing project", "POST", "/projects/" + outPID + "/sources", outKey, map[string]any{"name": "x", "verifier": map[string]any{"type": "noop"}}, 400, "incoming projects"},
		{"no name", "POST", p + "/sources", w.key, map[string]any{"verifier": map[string]any{"type": "noop"}}, 400, "name"},
		{"no verifier", "POST", p + "/sources", w.key, map[string]any{"name": "x"}, 400, "verifier.type"},
		{"provider without secret", "POST", p + "/sources", w.key, map[string]any{"name": "x", "provider": "stripe"}, 400, "verifier.hmac.secret"},
		{"bad standard secret", "POST", p + "/sources", w.key, map[string]any{"name": "x", "provider": "standardwebhooks", "verifier": map[string]any{"hmac": map[string]any{"secret": "whsec_!!"}}}, 400, "whsec_"},
		{"unknown provider", "POST", p + "/sources", w.key, map[string]any{"name": "x", "provider": "paypal", "verifier": map[string]any{"hmac": map[string]any{"secret": "s"}}}, 400, "provider"},
		{"bad idempotency key", "POST", p + "/sources", w.key, map[string]any{"name": "x", "verifier": map[string]any{"type": "noop"}, "idempotency_keys": []string{"id"}}, 400, "idempotency_keys"},
		{"unknown field", "POST", p + "/sources", w.key, map[string]any{"name": "x", "verifer": map[string]any{}}, 400, "verifer"},
		{"unknown source", "GET", p + "/sources/" + missing, w.key, nil, 404, "not found"},
		{"incoming subscription without source", "POST", p + "/subscriptions", w.key, map[string]any{"endpoint_id": ep}, 400, "source_id: required"},
		{"subscription to unknown source", "POST", p + "/subscriptions", w.key, map[string]any{"endpoint_id": ep, "source_id": missing}, 400, "source_id"},
		{"outgoing subscription with source", "POST", "/projects/" + outPID + "/subscriptions", outKey, map[string]any{"endpoint_id": field(t, outEP.Data, "uid"), "source_id": sid}, 400, "source_id"},
		{"filter with unknown operator", "POST", p + "/subscriptions", w.key, map[string]any{"endpoint_id": ep, "source_id": sid,
			"filter_config": map[string]any{"filter": map[string]any{"body": map[string]any{"amount": map[string]any{"$gtt": 1}}}}}, 400, `"amount": unknown operator "$gtt"`},
		{"filter with wrong type", "POST", p + "/subscriptions", w.key, map[string]any{"endpoint_id": ep, "source_id": sid,
			"filter_config": map[string]any{"filter": map[string]any{"headers": map[string]any{"X-A": map[string]any{"$in": "x"}}}}}, 400, "$in takes an array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.st.AppliedIndex()
			r := e.do(tc.method, tc.path, tc.key, tc.body)
			if r.Code != tc.code || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", r.Code, r.Message, tc.code, tc.msg)
			}
			if e.st.AppliedIndex() != before {
				t.Fatal("a refused request changed state")
			}
		})
	}
	r = e.mustDo("DELETE", p+"/sources/"+sid, w.key, nil, 200)
	if field(t, r.Data, "deleted_subscriptions") != "1" {
		t.Fatalf("delete source = %s", r.Data)
	}
	if code, _, _ := e.post(e.srv.URL+"/ingest/"+mask, nil, []byte(`{}`)); code != 404 {
		t.Fatalf("a deleted source's URL answered %d", code)
	}
}

// TestOutgoingFiltersAndTestFilter: the same filters make outgoing subscriptions precise ("only
// invoice.paid over 1000 EUR"), and test_filter says which clause failed.
func TestOutgoingFiltersAndTestFilter(t *testing.T) {
	e := newEnv(t)
	r := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "billing"}, 201)
	pid, key := field(t, r.Data, "uid"), field(t, r.Data, "api_key", "key")
	p := "/projects/" + pid
	big := field(t, e.mustDo("POST", p+"/endpoints", key, map[string]any{"url": "http://127.0.0.1:9/big"}, 201).Data, "uid")
	all := field(t, e.mustDo("POST", p+"/endpoints", key, map[string]any{"url": "http://127.0.0.1:9/all"}, 201).Data, "uid")
	bigFilter := map[string]any{"event_types": []string{"invoice.paid"}, "filter": map[string]any{
		"body":    map[string]any{"amount": map[string]any{"$gt": 1000}, "currency": "EUR"},
		"headers": map[string]any{"X-Tenant": map[string]any{"$neq": "test"}}}}
	e.mustDo("POST", p+"/subscriptions", key, map[string]any{"endpoint_id": big, "filter_config": bigFilter}, 201)
	e.mustDo("POST", p+"/subscriptions", key, map[string]any{"endpoint_id": all}, 201)
	for _, tc := range []struct {
		name    string
		body    map[string]any
		matched string
	}{
		{"big EUR invoice", map[string]any{"event_type": "invoice.paid", "data": map[string]any{"amount": 1500, "currency": "EUR"}}, "2"},
		{"small invoice", map[string]any{"event_type": "invoice.paid", "data": map[string]any{"amount": 500, "currency": "EUR"}}, "1"},
		{"big USD invoice", map[string]any{"event_type": "invoice.paid", "data": map[string]any{"amount": 1500, "currency": "USD"}}, "1"},
		{"other type", map[string]any{"event_type": "invoice.void", "data": map[string]any{"amount": 1500, "currency": "EUR"}}, "1"},
		{"test tenant header", map[string]any{"event_type": "invoice.paid", "custom_headers": map[string]string{"X-Tenant": "test"}, "data": map[string]any{"amount": 1500, "currency": "EUR"}}, "1"},
		{"direct to the filtered endpoint", map[string]any{"endpoint_id": big, "event_type": "invoice.paid", "data": map[string]any{"amount": 5, "currency": "EUR"}}, "0"},
	} {
		path := p + "/events/broadcast"
		if tc.body["endpoint_id"] != nil {
			path = p + "/events"
		}
		r := e.mustDo("POST", path, key, tc.body, 201)
		if got := field(t, r.Data, "matched_endpoints"); got != tc.matched {
			t.Fatalf("%s: matched %s, want %s", tc.name, got, tc.matched)
		}
	}
	r = e.mustDo("POST", p+"/subscriptions/test_filter", key, map[string]any{
		"request": map[string]any{"header": map[string]any{"X-Tenant": []string{"prod"}}, "body": map[string]any{"amount": 500, "currency": "EUR"}},
		"schema":  map[string]any{"header": bigFilter["filter"].(map[string]any)["headers"], "body": bigFilter["filter"].(map[string]any)["body"]},
	}, 200)
	if field(t, r.Data, "is_match") != "false" || !strings.Contains(field(t, r.Data, "failed_clause"), `"amount" $gt 1000 failed (value 500)`) {
		t.Fatalf("test_filter = %s", r.Data)
	}
	r = e.mustDo("POST", p+"/subscriptions/test_filter", key, map[string]any{
		"request": map[string]any{"body": map[string]any{"amount": 5000, "currency": "EUR"}},
		"schema":  map[string]any{"body": bigFilter["filter"].(map[string]any)["body"]},
	}, 200)
	if field(t, r.Data, "is_match") != "true" {
		t.Fatalf("test_filter = %s", r.Data)
	}
	if r := e.do("POST", p+"/subscriptions/test_filter", key, map[string]any{"schema": map[string]any{"body": map[string]any{"a": map[string]any{"$regex": "("}}}}); r.Code != 400 || !strings.Contains(r.Message, "$regex") {
		t.Fatalf("bad schema = %d %q", r.Code, r.Message)
	}
	// The filter survives in the subscription as given.
	subs := e.mustDo("GET", p+"/subscriptions?endpointId="+big, key, nil, 200)
	if !strings.Contains(string(subs.Data), `"$gt":1000`) {
		t.Fatalf("stored filter = %s", subs.Data)
	}
}
