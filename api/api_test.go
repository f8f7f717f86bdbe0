package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/raftstore"
)

const rootKey = "sk_test_root"

type env struct {
	t    *testing.T
	st   *raftstore.Store
	srv  *httptest.Server
	base string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := l.Addr().String()
	l.Close()
	st, err := raftstore.Open(raftstore.Config{DataDir: t.TempDir(), RaftAddr: raftAddr, Bootstrap: true, FastElections: true})
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
	srv := httptest.NewServer(New(st, Config{MaxPayloadBytes: 4096}).Handler())
	t.Cleanup(func() { srv.Close(); st.Close() })
	return &env{t: t, st: st, srv: srv, base: srv.URL + "/api/v1"}
}

type reply struct {
	Code    int
	Status  bool            `json:"status"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (e *env) do(method, path, key string, body any) reply {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.base+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r reply
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &r); err != nil {
		e.t.Fatalf("%s %s: non-JSON reply %d %q", method, path, resp.StatusCode, raw)
	}
	r.Code = resp.StatusCode
	return r
}

func (e *env) mustDo(method, path, key string, body any, want int) reply {
	e.t.Helper()
	r := e.do(method, path, key, body)
	if r.Code != want {
		e.t.Fatalf("%s %s = %d %q, want %d", method, path, r.Code, r.Message, want)
	}
	return r
}

func field(t *testing.T, raw json.RawMessage, path ...string) string {
	t.Helper()
	var v any
	json.Unmarshal(raw, &v)
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %q in %s", p, raw)
		}
		v = m[p]
	}
	return fmt.Sprint(v)
}

type world struct {
	pid, key, ep1, ep2, ep3 string
}

// setup creates a project with three endpoints: ep1 (owner a, no subscriptions), ep2 (owner a,
// subscribed to invoice.*-free exact type "invoice.paid"), ep3 (owner b, subscribed to "*").
func setup(e *env) world {
	var w world
	r := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "shop"}, 201)
	w.pid, w.key = field(e.t, r.Data, "uid"), field(e.t, r.Data, "api_key", "key")
	mk := func(owner string) string {
		r := e.mustDo("POST", "/projects/"+w.pid+"/endpoints", w.key, map[string]any{"url": "http://127.0.0.1:9/" + owner, "owner_id": owner}, 201)
		return field(e.t, r.Data, "uid")
	}
	w.ep1, w.ep2, w.ep3 = mk("a"), mk("a"), mk("b")
	e.mustDo("POST", "/projects/"+w.pid+"/subscriptions", w.key, map[string]any{"endpoint_id": w.ep2, "filter_config": map[string]any{"event_types": []string{"invoice.paid"}}}, 201)
	e.mustDo("POST", "/projects/"+w.pid+"/subscriptions", w.key, map[string]any{"endpoint_id": w.ep3}, 201)
	return w
}

func TestPublishRoutesToMatchingEndpoints(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	p := "/projects/" + w.pid
	cases := []struct {
		name, path string
		body       map[string]any
		matched    string
	}{
		{"direct, no subscriptions", "/events", map[string]any{"endpoint_id": w.ep1, "event_type": "x"}, "1"},
		{"direct, subscription matches", "/events", map[string]any{"endpoint_id": w.ep2, "event_type": "invoice.paid"}, "1"},
		{"direct, subscription does not match", "/events", map[string]any{"endpoint_id": w.ep2, "event_type": "invoice.void"}, "0"},
		{"fanout to owner a", "/events/fanout", map[string]any{"owner_id": "a", "event_type": "invoice.paid"}, "2"},
		{"fanout to owner a, other type", "/events/fanout", map[string]any{"owner_id": "a", "event_type": "user.created"}, "1"},
		{"broadcast", "/events/broadcast", map[string]any{"event_type": "invoice.paid"}, "2"},
		{"broadcast other type", "/events/broadcast", map[string]any{"event_type": "user.created"}, "1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.body["data"] = map[string]any{"n": 1}
			r := e.mustDo("POST", p+tc.path, w.key, tc.body, 201)
			if got := field(t, r.Data, "matched_endpoints"); got != tc.matched {
				t.Fatalf("matched_endpoints = %s, want %s", got, tc.matched)
			}
			evid := field(t, r.Data, "uid")
			d := e.mustDo("GET", p+"/eventdeliveries?eventId="+evid, w.key, nil, 200)
			var page struct {
				Content []struct{ Status string } `json:"content"`
			}
			json.Unmarshal(d.Data, &page)
			if fmt.Sprint(len(page.Content)) != tc.matched {
				t.Fatalf("%d deliveries recorded, want %s", len(page.Content), tc.matched)
			}
			for _, c := range page.Content {
				if c.Status != "scheduled" {
					t.Fatalf("delivery status %q, want scheduled", c.Status)
				}
			}
		})
	}
}

func TestDataIsKeptByteForByte(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	data := `{"b": 2,   "a": "<&>",  "n": 1.50}`
	body := fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":%s}`, w.ep1, data)
	r := e.mustDo("POST", "/projects/"+w.pid+"/events", w.key, body, 201)
	got, err := e.st.EventData(w.pid, field(t, r.Data, "uid"))
	if err != nil || string(got) != data {
		t.Fatalf("stored data = %q, %v; want %q", got, err, data)
	}
}

func TestIdempotencyKeyReturnsOriginal(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	body := map[string]any{"endpoint_id": w.ep1, "event_type": "x", "data": 1, "idempotency_key": "once"}
	first := e.mustDo("POST", "/projects/"+w.pid+"/events", w.key, body, 201)
	idx := e.st.AppliedIndex()
	again := e.mustDo("POST", "/projects/"+w.pid+"/events", w.key, body, 200)
	if a, b := field(t, first.Data, "uid"), field(t, again.Data, "uid"); a != b {
		t.Fatalf("repeat returned event %s, want original %s", b, a)
	}
	if e.st.AppliedIndex() != idx {
		t.Fatal("a repeated idempotency key wrote to the log")
	}
}

func TestBadInputGetsClearErrorAndChangesNothing(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	other := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "other"}, 201)
	otherPID := field(t, other.Data, "uid")
	p := "/projects/" + w.pid
	missing := "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	big := fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":"%s"}`, w.ep1, strings.Repeat("a", 5000))
	cases := []struct {
		name, method, path, key string
		body                    any
		code                    int
		msg                     string
	}{
		{"malformed JSON", "POST", p + "/events", w.key, `{"event_type": "x",`, 400, "invalid JSON"},
		{"not an object", "POST", p + "/events", w.key, `[1,2]`, 400, "invalid JSON"},
		{"trailing data", "POST", p + "/events", w.key, fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":1} {}`, w.ep1), 400, "after the request"},
		{"unknown field", "POST", p + "/events", w.key, map[string]any{"endpoint_id": w.ep1, "event_typ": "x", "data": 1}, 400, "event_typ"},
		{"missing event_type", "POST", p + "/events", w.key, map[string]any{"endpoint_id": w.ep1, "data": 1}, 400, "event_type"},
		{"missing data", "POST", p + "/events", w.key, map[string]any{"endpoint_id": w.ep1, "event_type": "x"}, 400, "data"},
		{"null data", "POST", p + "/events", w.key, fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":null}`, w.ep1), 400, "data"},
		{"bad header", "POST", p + "/events", w.key, map[string]any{"endpoint_id": w.ep1, "event_type": "x", "data": 1, "custom_headers": map[string]string{"X-A": "a\r\nb"}}, 400, "custom_headers"},
		{"wrong type", "POST", p + "/events", w.key, `{"event_type": 5, "data": 1}`, 400, "event_type"},
		{"unknown endpoint", "POST", p + "/events", w.key, map[string]any{"endpoint_id": missing, "event_type": "x", "data": 1}, 404, "endpoint"},
		{"malformed endpoint id", "POST", p + "/events", w.key, map[string]any{"endpoint_id": "nope", "event_type": "x", "data": 1}, 404, "endpoint"},
		{"oversized body", "POST", p + "/events", w.key, big, 413, "limit"},
		{"no key", "POST", p + "/events", "", map[string]any{"endpoint_id": w.ep1, "event_type": "x", "data": 1}, 401, "API key"},
		{"wrong key", "POST", p + "/events", "sk_nope", map[string]any{"endpoint_id": w.ep1, "event_type": "x", "data": 1}, 401, "invalid"},
		{"other project's key", "GET", "/projects/" + otherPID + "/endpoints", w.key, nil, 403, "not authorised"},
		{"project key creating projects", "POST", "/projects", w.key, map[string]any{"name": "x"}, 403, "root"},
		{"unknown project", "GET", "/projects/" + missing + "/endpoints", rootKey, nil, 404, "project"},
		{"relative URL", "POST", p + "/endpoints", w.key, map[string]any{"url": "/hook"}, 400, "url"},
		{"ftp URL", "POST", p + "/endpoints", w.key, map[string]any{"url": "ftp://x.example/"}, 400, "url"},
		{"negative rate limit", "POST", p + "/endpoints", w.key, map[string]any{"url": "http://127.0.0.1/", "rate_limit": -1}, 400, "rate_limit"},
		{"huge timeout", "POST", p + "/endpoints", w.key, map[string]any{"url": "http://127.0.0.1/", "http_timeout": 99999}, 400, "http_timeout"},
		{"subscription to unknown endpoint", "POST", p + "/subscriptions", w.key, map[string]any{"endpoint_id": missing}, 400, "endpoint_id"},
		{"unknown delivery", "GET", p + "/eventdeliveries/" + missing, w.key, nil, 404, "not found"},
		{"bad status filter", "GET", p + "/eventdeliveries?status=lost", w.key, nil, 400, "status"},
		{"bad cursor", "GET", p + "/eventdeliveries?next_page_cursor=zzz", w.key, nil, 400, "next_page_cursor"},
		{"bad perPage", "GET", p + "/events?perPage=0", w.key, nil, 400, "perPage"},
		{"bad date", "GET", p + "/events?startDate=yesterday", w.key, nil, 400, "startDate"},
		{"resend unknown delivery", "PUT", p + "/eventdeliveries/" + missing + "/resend", w.key, nil, 404, "not found"},
		{"replay unknown event", "PUT", p + "/events/" + missing + "/replay", w.key, nil, 404, "not found"},
		{"unknown route", "GET", "/nothing", w.key, nil, 404, "no route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.st.AppliedIndex()
			r := e.do(tc.method, tc.path, tc.key, tc.body)
			if r.Code != tc.code || !strings.Contains(r.Message, tc.msg) || r.Status {
				t.Fatalf("got %d %q, want %d containing %q", r.Code, r.Message, tc.code, tc.msg)
			}
			if after := e.st.AppliedIndex(); after != before {
				t.Fatalf("a refused request changed state: applied index %d -> %d", before, after)
			}
		})
	}
}

func TestDeliveryPaginationIsNewestFirstWithCursor(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	var ids []string
	for i := 0; i < 7; i++ {
		r := e.mustDo("POST", "/projects/"+w.pid+"/events", w.key, map[string]any{"endpoint_id": w.ep1, "event_type": "x", "data": i}, 201)
		ids = append(ids, field(t, r.Data, "uid"))
	}
	var seen []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		r := e.mustDo("GET", "/projects/"+w.pid+"/eventdeliveries?perPage=3&next_page_cursor="+cursor, w.key, nil, 200)
		var page struct {
			Content []struct {
				EventID string `json:"event_id"`
			} `json:"content"`
			Pagination pagination `json:"pagination"`
		}
		json.Unmarshal(r.Data, &page)
		for _, c := range page.Content {
			seen = append(seen, c.EventID)
		}
		if !page.Pagination.HasNextPage {
			break
		}
		cursor = page.Pagination.NextPageCursor
	}
	if len(seen) != len(ids) {
		t.Fatalf("paged through %d deliveries, want %d", len(seen), len(ids))
	}
	for i := range ids {
		if seen[i] != ids[len(ids)-1-i] {
			t.Fatalf("page order %v is not newest first %v", seen, ids)
		}
	}
}

func TestResendAndPauseActivate(t *testing.T) {
	e := newEnv(t)
	w := setup(e)
	p := "/projects/" + w.pid
	r := e.mustDo("POST", p+"/events", w.key, map[string]any{"endpoint_id": w.ep1, "event_type": "x", "data": 1}, 201)
	evid := field(t, r.Data, "uid")
	e.mustDo("PUT", p+"/endpoints/"+w.ep1+"/pause", w.key, nil, 202)
	if got := field(t, e.mustDo("GET", p+"/endpoints/"+w.ep1, w.key, nil, 200).Data, "status"); got != "paused" {
		t.Fatalf("status after pause = %s", got)
	}
	e.mustDo("POST", p+"/endpoints/"+w.ep1+"/activate", w.key, nil, 202)
	r = e.mustDo("PUT", p+"/events/"+evid+"/replay", w.key, nil, 200)
	if field(t, r.Data, "matched_endpoints") != "1" {
		t.Fatalf("replay matched %s", field(t, r.Data, "matched_endpoints"))
	}
	d := e.mustDo("GET", p+"/eventdeliveries?eventId="+evid, w.key, nil, 200)
	var page struct {
		Content []struct{ UID string } `json:"content"`
	}
	json.Unmarshal(d.Data, &page)
	if len(page.Content) != 2 {
		t.Fatalf("after replay %d deliveries, want 2", len(page.Content))
	}
	e.mustDo("PUT", p+"/eventdeliveries/"+page.Content[0].UID+"/resend", w.key, nil, 202)
}

func FuzzDecodePublish(f *testing.F) {
	for _, s := range []string{
		`{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"a","data":{"x":1}}`,
		`{"owner_id":"o","event_type":"a","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`,
		`{"event_type":"a","data":"s"}`, `{"data":null}`, `[]`, `{`, `{"event_type":"\u0000"}`,
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, m uint8) {
		mode := publishMode(m % 3)
		in, err := decodePublish(bytes.NewReader(body), mode)
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("error is not a client error: %T %v", err, err)
			}
			return
		}
		if in.EventType == "" || len(in.Data) == 0 || !json.Valid(in.Data) {
			t.Fatalf("accepted an invalid publish: %+v", in)
		}
		if !bytes.Contains(body, bytes.TrimSpace(in.Data)) {
			t.Fatalf("data %q is not a slice of the body as published", in.Data)
		}
	})
}
