package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/loadgen"
)

// publishSeeds are bodies both the table test and the fuzz test start from: the canonical shape and
// the odd-but-valid or invalid inputs the fast path must leave to encoding/json.
var publishSeeds = []string{
	`{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"a","data":{"x":1}}`,
	`{"owner_id":"o","event_type":"a","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`,
	`{"event_type":"a","data":"s"}`, `{"data":null}`, `[]`, `{`, `{"event_type":"\u0000"}`,
	" \n{ \"event_type\" : \"é✓\" , \"data\" : -0 , \"custom_headers\" : { } }\t\r\n",
	`{"event_type":"a","data":1e5}`, `{"event_type":"a","data":01}`, `{"event_type":"a","data":-}`,
	`{"event_type":"a","data":"\ud800\u00e9\n"}`, "{\"event_type\":\"a\",\"data\":\"\xff\"}",
	"{\"event_type\":\"\xff\",\"data\":1}", `{"Event_Type":"a","data":1}`, `{"EVENT_TYPE":"a","data":1}`,
	`{"event_type":"a","event_type":"b","data":1}`, `{"event_type":"a","data":1,"data":2}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":"1"},"custom_headers":{"b":"2"}}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":"1","a":"2"}}`,
	`{"event_type":"a","data":1,"custom_headers":null}`, `{"event_type":null,"data":1}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":null}}`, `{"event_type":"a","data":1,"custom_headers":{"a":1}}`,
	`{"event_type":"a\"b","data":1}`, `{"event_type":"a","data":1,"source_id":"s"}`, `{"event_type":"a","data":1,"-":1}`,
	`{"event_type":"a","data":1} `, `{"event_type":"a","data":1} {}`, `{"event_type":"a","data":1}x`,
	`{"event_type":"a","data":1,}`, `{"event_type":5,"data":1}`, `{"event_type":"a","data":1,"custom_headers":[]}`,
	`{"event_type":"a","data":` + strings.Repeat(`[{"a":`, 64) + "1" + strings.Repeat("}]", 64) + `}`, // deeper is TestDecodePublishFast's
	`{"event_type":"a","data":{"k":[true,false,null,{"n":-1.5e-3}]}}`, `null`, ``, ` `,
	`{"event_type":"a","data":1,"custom_headers":{"\u0041":"b"}}`, `{"event_ſype":"a","data":1}`,
	string(loadgen.PublishBody("01ARZ3NDEKTSV4RRFFQ69G5FAV", "bench.event", 1024)), // unstamped: "sent_ns":000...
	string(standardBody()),
}

// standardBody is the publish body the benchmarks send (benchmarks/loadgen), stamped as they stamp it.
func standardBody() []byte {
	body := loadgen.PublishBody("01ARZ3NDEKTSV4RRFFQ69G5FAV", "bench.event", 1024)
	loadgen.Stamp(body, time.Unix(1764000000, 123456789))
	return body
}

// slowDecode is the reference: today's strict encoding/json decoding.
func slowDecode(b []byte) (PublishRequest, error) {
	var in PublishRequest
	err := decodeJSON(bytes.NewReader(b), &in)
	return in, err
}

// checkFast fails t unless decodePublishFast declined b or produced exactly what encoding/json does.
func checkFast(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	var got PublishRequest
	ok := decodePublishFast(b, &got)
	want, err := slowDecode(b)
	if !ok {
		if !reflect.DeepEqual(got, PublishRequest{}) {
			t.Fatalf("fast path declined %q but wrote %+v", short(b), got)
		}
		return false
	}
	if err != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %.200v", short(b), err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", short(b), got, want)
	}
	return true
}

// short keeps failure messages readable for the deep-nesting inputs.
func short(b []byte) []byte {
	if len(b) > 300 {
		return append(b[:150:150], append([]byte("..."), b[len(b)-150:]...)...)
	}
	return b
}

func TestDecodePublishFast(t *testing.T) {
	for _, tc := range []struct {
		body string
		fast bool // whether the fast path takes it (else encoding/json decides)
	}{
		{`{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"a","data":{"x":1}}`, true},
		{`{"owner_id":"o","event_type":"a","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`, true},
		{" \n{ \"event_type\" : \"é✓\" , \"data\" : -0 , \"custom_headers\" : { } }\t\r\n", true},
		{`{"event_type":"a","data":1e5}`, true},
		{`{"event_type":"a","data":"\ud800\u00e9\n"}`, true},                     // data is kept as bytes: escapes are fine
		{"{\"event_type\":\"a\",\"data\":\"\xff\"}", true},                       // so is invalid UTF-8, as encoding/json keeps it
		{`{"event_type":"a","data":1,"custom_headers":{"a":"1","a":"2"}}`, true}, // the map keeps the last, as encoding/json
		{`{"data":1}`, true},
		{`{"event_type":"a"}`, false},
		{`{"event_type":"a","data":null}`, false},
		{`{"event_type":"a","data":01}`, false},
		{"{\"event_type\":\"\xff\",\"data\":1}", false},
		{`{"Event_Type":"a","data":1}`, false},
		{`{"event_ſype":"a","data":1}`, false},
		{`{"event_type":"a","event_type":"b","data":1}`, false},
		{`{"event_type":"a","data":1,"custom_headers":{"a":"1"},"custom_headers":{"b":"2"}}`, false},
		{`{"event_type":null,"data":1}`, false},
		{`{"event_type":"a","data":1,"custom_headers":null}`, false},
		{`{"event_type":"a","data":1,"custom_headers":{"a":null}}`, false},
		{`{"event_type":"a\"b","data":1}`, false},
		{`{"event_type":"a","data":1,"custom_headers":{"\u0041":"b"}}`, false},
		{`{"event_type":"a","data":1,"source_id":"s"}`, false},
		{`{"event_type":"a","data":1} {}`, false},
		{`{"event_type":"a","data":1,}`, false},
		{`{"event_type":5,"data":1}`, false},
		{`{"event_type":"a","data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, false},
		{`{"event_type":"a","data":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, false}, // the object is a level too
		{`{"event_type":"a","data":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`, true},
		{`[]`, false},
		{``, false},
	} {
		name := tc.body
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			if got := checkFast(t, []byte(tc.body)); got != tc.fast {
				t.Fatalf("fast path took it: %v, want %v", got, tc.fast)
			}
		})
	}
}

// TestDecodePublishOwnsItsBytes: the body buffer is pooled and reused, so nothing decoded may alias it.
func TestDecodePublishOwnsItsBytes(t *testing.T) {
	body := []byte(`{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"a.b","data":{"x":"yyyy"},"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`)
	in, err := decodePublish(bytes.NewReader(body), modeEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	want := PublishRequest{EndpointID: "01ARZ3NDEKTSV4RRFFQ69G5FAV", EventType: "a.b", Data: json.RawMessage(`{"x":"yyyy"}`),
		CustomHeaders: map[string]string{"X-A": "b"}, IdempotencyKey: "k"}
	// Decode other bodies through the same pool, then scribble over the caller's copy too.
	for range 4 {
		if _, err := decodePublish(bytes.NewReader(bytes.Repeat([]byte("z"), len(body))), modeEndpoint); err == nil {
			t.Fatal("a body of z's decoded")
		}
	}
	for i := range body {
		body[i] = 'z'
	}
	if !reflect.DeepEqual(*in, want) {
		t.Fatalf("decoded %+v, later changed to %+v", want, *in)
	}
}

func TestDecodePublishBodyLimit(t *testing.T) {
	const limit = 64
	ok := `{"event_type":"a","data":1}`
	for _, tc := range []struct {
		name, body string
		code       int // 0: decoded
	}{
		{"under the limit", ok, 0},
		{"at the limit", ok + strings.Repeat(" ", limit-len(ok)), 0},
		{"trailing space over the limit", ok + strings.Repeat(" ", limit), http.StatusRequestEntityTooLarge},
		{"trailing data over the limit", ok + "x" + strings.Repeat(" ", limit), http.StatusRequestEntityTooLarge},
		{"data over the limit", `{"event_type":"a","data":"` + strings.Repeat("x", limit) + `"}`, http.StatusRequestEntityTooLarge},
		{"trailing data", ok + "x", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := http.MaxBytesReader(httptest.NewRecorder(), nopCloser{strings.NewReader(tc.body)}, limit)
			_, err := decodePublish(r, modeBroadcast)
			code := 0
			if err != nil {
				ae, isAPI := err.(*apiError)
				if !isAPI {
					t.Fatalf("error %T %v is not a client error", err, err)
				}
				code = ae.code
			}
			if code != tc.code {
				t.Fatalf("decodePublish(%d bytes) = %v, want status %d", len(tc.body), err, tc.code)
			}
		})
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func FuzzPublishFastMatchesJSON(f *testing.F) {
	for _, s := range publishSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFast(t, b)
	})
}

func TestDecodePublishFastAllocs(t *testing.T) {
	body := standardBody()
	allocs := testing.AllocsPerRun(100, func() {
		var in PublishRequest
		if !decodePublishFast(body, &in) {
			t.Fatal("the standard body took the slow path")
		}
	})
	// endpoint_id, event_type and the data copy: nothing else.
	if allocs != 3 {
		t.Fatalf("decodePublishFast allocates %.0f times, want 3", allocs)
	}
}

// BenchmarkDecodePublish decodes the benchmarks' standard body (loadgen.PublishBody, 1 KiB data) as
// the HTTP handler does, with the fast path and with encoding/json alone.
func BenchmarkDecodePublish(b *testing.B) {
	body := standardBody()
	for _, bc := range []struct {
		name string
		fn   func() (*PublishRequest, error)
	}{
		{"fast", func() (*PublishRequest, error) { return decodePublish(bytes.NewReader(body), modeEndpoint) }},
		{"encoding-json", func() (*PublishRequest, error) {
			var in PublishRequest
			if err := decodeJSON(bytes.NewReader(body), &in); err != nil {
				return nil, err
			}
			return &in, in.validate(modeEndpoint)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
