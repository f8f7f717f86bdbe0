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
	"github.com/sluice-gw/sluice/model"
)

// benchData is the standard benchmark's 1 KiB data as the load generator sends it: stamped, so the
// send time is padded with spaces that the response must compact away.
func benchData() model.EventData {
	d := loadgen.Data(1024)
	loadgen.Stamp(d, time.Unix(1_790_000_000, 123))
	return model.EventData(d)
}

func benchEvent() *model.Event {
	return &model.Event{
		UID: "01KB0ZQ6R2V8X4M3N5P7Q9S1T3", ProjectID: "01KB0ZQ6R2V8X4M3N5P7Q9S1T4", EventType: "bench.event",
		EndpointID: "01KB0ZQ6R2V8X4M3N5P7Q9S1T5", Endpoints: []string{"01KB0ZQ6R2V8X4M3N5P7Q9S1T5"},
		Data: benchData(), CreatedAt: time.Date(2026, 11, 27, 8, 1, 2, 345678900, time.UTC),
	}
}

// viaEncodingJSON and viaFast record what the two writers put on the wire.
func viaEncodingJSON(code int, msg string, r *eventReply) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	writeJSON(w, code, msg, r.slow())
	return w
}

func viaFast(code int, msg string, r *eventReply) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	writeEventReply(w, code, msg, r)
	return w
}

// replies are the bodies writeEventReply knows, built around ev: published, fetched, and a page
// holding it twice (and a nil) as well as an empty and a nil page.
func replies(ev *model.Event, matched int, cursor string) []*eventReply {
	return []*eventReply{
		{kind: replyPublished, ev: ev, matched: matched},
		{kind: replyEvent, ev: ev},
		{kind: replyPage, list: []*model.Event{ev, nil, ev}, page: pagination{PerPage: matched, HasNextPage: true, NextPageCursor: cursor}},
		{kind: replyPage, list: []*model.Event{}, page: pagination{PerPage: 20}},
		{kind: replyPage, page: pagination{NextPageCursor: cursor}},
	}
}

func checkSameResponse(t *testing.T, code int, msg string, r *eventReply) {
	t.Helper()
	want, got := viaEncodingJSON(code, msg, r), viaFast(code, msg, r)
	if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
		t.Fatalf("kind %d: status/type %d %q, want %d %q", r.kind, got.Code, got.Header().Get("Content-Type"), want.Code, want.Header().Get("Content-Type"))
	}
	if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
		t.Fatalf("kind %d: body differs from encoding/json's\n got: %q\nwant: %q", r.kind, got.Body.Bytes(), want.Body.Bytes())
	}
}

func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		ny = time.FixedZone("EST", -5*3600)
	}
	odd := "q\"b\\s/ \x00\x01\x1f\x7f\b\f\n\r\t <>& \u2028\u2029 é😀 \xff\xfe\xc3 \xe2\x80 end"
	deep := func(n int) model.EventData {
		return model.EventData(strings.Repeat("[", n) + strings.Repeat("]", n))
	}
	with := func(f func(ev *model.Event)) *model.Event {
		ev := benchEvent()
		f(ev)
		return ev
	}
	cases := []struct {
		name string
		code int
		msg  string
		ev   *model.Event
	}{
		{"standard publish", 201, "Event created successfully", benchEvent()},
		{"idempotent replay", 200, "Event already exists for this idempotency_key; nothing was created",
			with(func(ev *model.Event) { ev.IdempotencyKey = "order-42" })},
		{"error status", 400, "x", benchEvent()},
		{"odd message", 201, odd, benchEvent()},
		{"all optional fields", 201, "m", with(func(ev *model.Event) {
			ev.OwnerID, ev.IdempotencyKey, ev.SourceID = "owner<1>", "k&1", "src"
			ev.Headers = map[string]string{"X-B": "2", "X-A": "1", "": "empty key", "x-a": "lower", "É": odd, odd: "v"}
		})},
		{"many headers", 201, "m", with(func(ev *model.Event) {
			ev.Headers = map[string]string{}
			for i := range 40 {
				ev.Headers[string(rune('a'+i%26))+strings.Repeat("k", i)] = strings.Repeat("v", i)
			}
		})},
		{"empty headers map", 201, "m", with(func(ev *model.Event) { ev.Headers = map[string]string{} })},
		{"nil endpoints", 201, "m", with(func(ev *model.Event) { ev.Endpoints = nil })},
		{"empty endpoints", 201, "m", with(func(ev *model.Event) { ev.Endpoints = []string{} })},
		{"odd endpoints", 201, "m", with(func(ev *model.Event) { ev.Endpoints = []string{"", odd, "a"} })},
		{"odd strings everywhere", 201, "m", with(func(ev *model.Event) {
			ev.UID, ev.ProjectID, ev.EventType, ev.EndpointID, ev.OwnerID, ev.IdempotencyKey, ev.SourceID = odd, odd, odd, odd, odd, odd, odd
		})},
		{"whitespace-laden data", 201, "m", with(func(ev *model.Event) {
			ev.Data = model.EventData(" \t\r\n{ \"a\" : [ 1 , 2.5e-3 , -0 , true , false , null , { } , [ ] ] ,\n \"b\\\" c\" : \" in  string \" }\n ")
		})},
		{"data with html and separators", 201, "m", with(func(ev *model.Event) {
			ev.Data = model.EventData("{\"h\":\"<a href='x'>&amp;</a>\",\"s\":\"\u2028\u2029\",\"e\":\"\\u2028\\ud800\\/\"}")
		})},
		{"data with invalid UTF-8 in a string", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData("[\"\xff\xc3\"]") })},
		{"scalar data", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData(" 12.5E+10 ") })},
		{"string data", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData(`"s"`) })},
		{"nil data", 201, "m", with(func(ev *model.Event) { ev.Data = nil })},
		{"empty data", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData{} })},
		{"form data", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData("To=%2B1&Body=<hi>\u2028\xff") })},
		{"invalid JSON data", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData(`{"a":1,}`) })},
		{"control byte in data string", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData("[\"a\tb\"]") })},
		{"two values", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData(`1 2`) })},
		{"leading zero", 201, "m", with(func(ev *model.Event) { ev.Data = model.EventData(`[01]`) })},
		{"nesting the fast path tracks", 201, "m", with(func(ev *model.Event) { ev.Data = deep(compactMaxDepth) })},
		{"nesting past the fast path", 201, "m", with(func(ev *model.Event) { ev.Data = deep(compactMaxDepth + 1) })},
		{"nesting past encoding/json's limit", 201, "m", with(func(ev *model.Event) { ev.Data = deep(10001) })},
		{"zero time", 201, "m", with(func(ev *model.Event) { ev.CreatedAt = time.Time{} })},
		{"fixed-zone time", 201, "m", with(func(ev *model.Event) { ev.CreatedAt = ev.CreatedAt.In(ist) })},
		{"named-zone time", 201, "m", with(func(ev *model.Event) { ev.CreatedAt = ev.CreatedAt.In(ny) })},
		{"whole-second time", 201, "m", with(func(ev *model.Event) { ev.CreatedAt = time.Unix(1_700_000_000, 0).UTC() })},
		{"time with monotonic reading", 201, "m", with(func(ev *model.Event) { ev.CreatedAt = time.Now() })},
		{"year past 9999", 201, "m", with(func(ev *model.Event) { ev.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"offset of 24 h", 201, "m", with(func(ev *model.Event) {
			ev.CreatedAt = ev.CreatedAt.In(time.FixedZone("", 24*3600))
		})},
		{"offset with seconds", 201, "m", with(func(ev *model.Event) {
			ev.CreatedAt = ev.CreatedAt.In(time.FixedZone("", -(3600 + 59)))
		})},
		{"nil event", 201, "m", nil},
	}
	// The shapes the fast encoder leaves to encoding/json; every other case must take the fast path.
	slow := map[string]bool{"year past 9999": true, "offset of 24 h": true, "nil event": true}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, matched := range []int{0, 1, -3, 45000} {
				for _, r := range replies(c.ev, matched, c.msg) {
					checkSameResponse(t, c.code, c.msg, r)
				}
			}
			for _, r := range replies(c.ev, 1, "")[:3] {
				fast := !slow[c.name] || r.kind == replyPage && c.ev == nil // a page writes a nil event as null
				if _, ok := appendEventReply(nil, c.code, c.msg, r); ok != fast {
					t.Fatalf("kind %d: fast path taken: %v, want %v", r.kind, ok, fast)
				}
			}
		})
	}
}

// TestEventJSONCoversEveryField sets every field of model.Event through reflection, so a field added
// to model.Event later fails here until the fast encoder writes it too.
func TestEventJSONCoversEveryField(t *testing.T) {
	ev := &model.Event{}
	v := reflect.ValueOf(ev).Elem()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(sf.Name + "<&>")
		case []string:
			f.Set(reflect.ValueOf([]string{sf.Name, "b"}))
		case map[string]string:
			f.Set(reflect.ValueOf(map[string]string{sf.Name: "v", "a": "w"}))
		case model.EventData:
			f.Set(reflect.ValueOf(model.EventData(`{"k": "` + sf.Name + `"}`)))
		case time.Time:
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)))
		default:
			t.Fatalf("model.Event.%s has a type (%s) this test and writeEventJSON do not know: teach both", sf.Name, sf.Type)
		}
	}
	for _, r := range replies(ev, 1, "c") {
		checkSameResponse(t, 201, "Event created successfully", r)
	}
	var back map[string]any
	if err := json.Unmarshal(viaFast(201, "m", &eventReply{ev: ev, matched: 1}).Body.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if data := back["data"].(map[string]any); len(data) != v.NumField()+1 {
		t.Fatalf("response has %d data fields, want model.Event's %d + matched_endpoints", len(data), v.NumField())
	}
}

// TestCompactJSON checks the fast compactor against json.Valid + json.Compact, including that it
// takes the fast path (true) for every valid input it can, since a false there costs the slow path.
func TestCompactJSON(t *testing.T) {
	for _, s := range []string{
		``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a" :1 , "b": [ ] }`, `[1,]`, `[,1]`, `{"a"}`, `{"a":}`,
		`{1:2}`, `{"a":1 "b":2}`, `[1 2]`, `0`, `-0`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `1E-7`, `1.5e10`,
		`-12.25`, `tru`, `true`, `truex`, `nul`, `null `, `false`, `"`, `"\"`, `"\u12"`, `"\u12g4"`, `"\uABcd"`,
		`"\x"`, "\"\x1f\"", "\"\x7f\"", "\"\xff\"", `"\/"`, `[[[]]]`, `[[[]]`, `[[]]]`, `{"a":{"b":{}}}`, `}`, `]`,
		"\ufeff{}", `{"a":1}x`, "{\"a\":1}\n\t\r ", `[1]]`, `{]`, `[}`, `"a" "b"`,
	} {
		checkCompact(t, []byte(s))
	}
}

func checkCompact(t *testing.T, src []byte) {
	t.Helper()
	prefix := []byte("prefix")
	got, ok := appendCompactJSON(append([]byte(nil), prefix...), src)
	valid := json.Valid(src)
	if ok && !valid {
		t.Fatalf("accepted %q, which json.Valid refuses", src)
	}
	if valid && !ok && nesting(src) <= compactMaxDepth {
		t.Fatalf("refused valid %q", src)
	}
	if !ok {
		return
	}
	var want bytes.Buffer
	want.Write(prefix)
	if err := json.Compact(&want, src); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("compacted %q to %q, json.Compact gives %q", src, got, want.Bytes())
	}
}

// nesting is an upper bound of src's depth: its opening brackets, in strings or not.
func nesting(src []byte) int { return bytes.Count(src, []byte("[")) + bytes.Count(src, []byte("{")) }

func FuzzCompactJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5e3, "x\u00e9\n"], "b": {"c": null}}`, `[1,]`, "\"\xff\"", ` -0.5E+2 `,
		string(benchData())} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) { checkCompact(t, src) })
}

// FuzzEventJSON compares the whole response with encoding/json's for arbitrary field values.
func FuzzEventJSON(f *testing.F) {
	f.Add("01KB0ZQ6R2V8X4M3N5P7Q9S1T3", "bench.event", "owner", "X-A", "v\u2028", string(benchData()),
		int64(1_790_000_000), int64(123456789), int32(0), uint8(0))
	f.Add("\xff<&>", "\x00", "", "", "", "To=%2B1&Body=<hi>", int64(-62135596800), int64(0), int32(19800), uint8(3))
	f.Add("a", "b", "c", "\"", "\\", ` [ {"x" : "\u0041"} ] `, int64(253402300800), int64(1), int32(-3599), uint8(7))
	f.Fuzz(func(t *testing.T, s1, s2, s3, hk, hv, data string, sec, nsec int64, offset int32, flags uint8) {
		ev := &model.Event{
			UID: s1, ProjectID: s2, EventType: s3, OwnerID: s3, IdempotencyKey: s1 + s2, SourceID: hv,
			Endpoints: []string{s1, s2}, Data: model.EventData(data),
			CreatedAt: time.Unix(sec, nsec).In(time.FixedZone(s3, int(offset))),
		}
		if flags&1 != 0 {
			ev.EndpointID = s2
		}
		if flags&2 != 0 {
			ev.Headers = map[string]string{hk: hv, hv: hk, s1: s2}
		}
		if flags&4 != 0 {
			ev.Endpoints = nil
		}
		if flags&8 != 0 {
			ev.Data = nil
		}
		for _, r := range replies(ev, int(offset), hv) {
			checkSameResponse(t, 200+int(flags>>4)*50, s1+hk, r)
		}
	})
}

// BenchmarkPublishResponse is the standard benchmark's publish response (1 KiB data) written by
// encoding/json (writeJSON, as before) and by writeEventJSON.
func BenchmarkPublishResponse(b *testing.B) {
	ev := benchEvent()
	size := int64(viaFast(201, "Event created successfully", &eventReply{ev: ev, matched: 1}).Body.Len())
	for _, bc := range []struct {
		name  string
		write func(w http.ResponseWriter)
	}{
		{"encoding-json", func(w http.ResponseWriter) {
			writeJSON(w, http.StatusCreated, "Event created successfully", eventOut{Event: ev, MatchedEndpoints: 1})
		}},
		{"fast", func(w http.ResponseWriter) {
			writeEventJSON(w, http.StatusCreated, "Event created successfully", ev, 1)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				bc.write(w)
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark measures the encoding.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
