package ingest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/ingest/wire"
)

// standardPayload is the PUBLISH payload the benchmarks' TCP load sends: ingest/client's encoding
// (metadata, a generated idempotency key, then the data bytes as given) of loadgen's 1 KiB data.
func standardPayload() []byte {
	data := loadgen.Data(1024)
	loadgen.Stamp(data, time.Unix(1764000000, 123456789))
	return fmt.Appendf(nil, `{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"bench.event","idempotency_key":"tcp_3q2-7wEAAAAAAAAAAAAAAA","data":%s}`, data)
}

var publishSeeds = []string{
	`{"project_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","target":"owner","owner_id":"o","event_type":"a","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`,
	`{"endpoint_id":"e","event_type":"a","data":{"x":1}}`, `{"event_type":"a","data":"s"}`, `{"data":null}`, `[]`, `{`,
	`{"event_type":"\u0000"}`, " \n{ \"event_type\" : \"é✓\" , \"data\" : -0 , \"custom_headers\" : { } }\t\r\n",
	`{"event_type":"a","data":1e5}`, `{"event_type":"a","data":01}`, `{"event_type":"a","data":"\ud800\u00e9\n"}`,
	"{\"event_type\":\"a\",\"data\":\"\xff\"}", "{\"target\":\"\xff\",\"data\":1}", `{"Target":"owner","data":1}`,
	`{"PROJECT_ID":"p","data":1}`, `{"target":"a","target":"b","data":1}`, `{"event_type":"a","data":1,"data":2}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":"1"},"custom_headers":{"b":"2"}}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":"1","a":"2"}}`, `{"project_id":null,"data":1}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":null}}`, `{"event_type":"a\"b","data":1}`,
	`{"event_type":"a","data":1,"key":"s"}`, `{"event_type":"a","data":1} {}`, `{"event_type":"a","data":1}x`,
	`{"event_type":"a","data":1,}`, `{"target":5,"data":1}`, `null`, ``,
	`{"event_type":"a","data":` + strings.Repeat(`[{"a":`, 64) + "1" + strings.Repeat("}]", 64) + `}`,
	`{"event_ſype":"a","data":1}`, string(standardPayload()),
}

// checkFast fails t unless decodePublishFast declined b or produced exactly what decodeStrict does.
func checkFast(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	short := b
	if len(short) > 300 {
		short = append(b[:150:150], append([]byte("..."), b[len(b)-150:]...)...)
	}
	var got, want wire.Publish
	ok := decodePublishFast(b, &got)
	err := decodeStrict(b, &want)
	if !ok {
		if !reflect.DeepEqual(got, wire.Publish{}) {
			t.Fatalf("fast path declined %q but wrote %+v", short, got)
		}
		return false
	}
	if err != nil {
		t.Fatalf("fast path accepted %q, decodeStrict refuses it: %.200v", short, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path read %q as %+v, decodeStrict as %+v", short, got, want)
	}
	return true
}

func TestDecodePublishFast(t *testing.T) {
	for _, tc := range []struct {
		body string
		fast bool
	}{
		{string(standardPayload()), true},
		{`{"project_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","target":"owner","owner_id":"o","event_type":"a","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`, true},
		{" \n{ \"event_type\" : \"é✓\" , \"data\" : -0 , \"custom_headers\" : { } }\t\r\n", true},
		{`{"event_type":"a","data":"\ud800\u00e9\n"}`, true},
		{"{\"event_type\":\"a\",\"data\":\"\xff\"}", true},
		{`{"event_type":"a","data":1,"custom_headers":{"a":"1","a":"2"}}`, true},
		{`{"event_type":"a","data":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`, true},
		{`{"event_type":"a","data":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, false},
		{`{"event_type":"a"}`, false},
		{`{"event_type":"a","data":null}`, false},
		{`{"event_type":"a","data":01}`, false},
		{"{\"target\":\"\xff\",\"data\":1}", false},
		{`{"Target":"owner","data":1}`, false},
		{`{"event_ſype":"a","data":1}`, false},
		{`{"target":"a","target":"b","data":1}`, false},
		{`{"project_id":null,"data":1}`, false},
		{`{"event_type":"a","data":1,"custom_headers":{"a":null}}`, false},
		{`{"event_type":"a\"b","data":1}`, false},
		{`{"event_type":"a","data":1,"key":"s"}`, false},
		{`{"event_type":"a","data":1} {}`, false},
		{`{"target":5,"data":1}`, false},
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

// TestDecodePublishFastOwnsItsBytes: the frame buffer is reused once the item is decoded.
func TestDecodePublishFastOwnsItsBytes(t *testing.T) {
	b := []byte(`{"project_id":"p","target":"owner","owner_id":"o","event_type":"a","data":{"x":"y"},"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`)
	var p wire.Publish
	if !decodePublishFast(b, &p) {
		t.Fatal("fast path declined a canonical payload")
	}
	for i := range b {
		b[i] = 'z'
	}
	want := wire.Publish{ProjectID: "p", Target: "owner", OwnerID: "o", EventType: "a", Data: json.RawMessage(`{"x":"y"}`),
		CustomHeaders: map[string]string{"X-A": "b"}, IdempotencyKey: "k"}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("decoded %+v, changed with the buffer to %+v", want, p)
	}
}

func TestDecodePublishFastAllocs(t *testing.T) {
	b := standardPayload()
	allocs := testing.AllocsPerRun(100, func() {
		var p wire.Publish
		if !decodePublishFast(b, &p) {
			t.Fatal("the standard payload took the slow path")
		}
	})
	// endpoint_id, event_type, idempotency_key and the data copy.
	if allocs != 4 {
		t.Fatalf("decodePublishFast allocates %.0f times, want 4", allocs)
	}
}

func FuzzPublishFastMatchesStrict(f *testing.F) {
	for _, s := range publishSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFast(t, b)
	})
}

// BenchmarkDecodePublishPayload decodes the benchmarks' TCP payload with the fast path and with
// decodeStrict (encoding/json) alone.
func BenchmarkDecodePublishPayload(b *testing.B) {
	payload := standardPayload()
	for _, bc := range []struct {
		name string
		fn   func(*wire.Publish) error
	}{
		{"fast", func(p *wire.Publish) error {
			if !decodePublishFast(payload, p) {
				return fmt.Errorf("declined %q", payload)
			}
			return nil
		}},
		{"encoding-json", func(p *wire.Publish) error { return decodeStrict(payload, p) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				var p wire.Publish
				if err := bc.fn(&p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
