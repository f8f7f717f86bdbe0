package broker

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// envelopeSeeds are bodies both the table test and the fuzz test start from: the canonical shapes and
// the odd-but-valid or invalid inputs whose answer only encoding/json can give.
var envelopeSeeds = []string{
	`{"event_type":"a.b","data":{"x":1}}`,
	`{"event_type":"a","endpoint_id":"e","owner_id":"o","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`,
	`{"a":1}`, `{}`, `[]`, `[{"event_type":"a","data":1}]`, `"s"`, `1`, `null`, ``, `{`, `{"x"`, `{"x":`, `{"data":1`,
	`{"event\u005ftype":"a","data":1}`, `{"\u0064ata":1,"event_type":"a"}`, `{"x\u0041":1,"event_type":"a","data":1}`,
	`{"event_type":"a","data":1,"\u0078":2}`, `{"event_type":"a","data":1,"x":2}`, `{"data":1,"x":2}`,
	`{"event_type":"a","event_type":"b","data":1}`, `{"event_type":"a","data":1,"data":2}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":"1"},"custom_headers":{"b":"2"}}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":"1","a":"2"}}`, `{"event_type":"a","data":1,"custom_headers":{}}`,
	`{"event_type":"a","data":1,"custom_headers":null}`, `{"event_type":"a","data":1,"custom_headers":{"a":null}}`,
	`{"event_type":"a","data":1,"custom_headers":{"a":1}}`, `{"event_type":"a","data":1,"custom_headers":[]}`,
	`{"event_type":"a","data":1,"custom_headers":{"\u0041":"b"}}`, `{"event_type":"a","data":1,"custom_headers":"h"}`,
	`{"event_type":null,"data":1}`, `{"event_type":"a","data":null}`, `{"event_type":5,"data":1}`,
	`{"event_type":"a","owner_id":null,"data":1}`, `{"event_type":"a","idempotency_key":true,"data":1}`,
	`{"event_type":"a\"b","data":1}`, `{"event_type":"a\u00e9","data":1}`, "{\"event_type\":\"\xff\",\"data\":1}",
	"{\"event_type\":\"a\",\"data\":\"\xff\"}", `{"event_type":"a","data":"\ud800\n"}`, "{\"\xff\":1}",
	`{"Event_Type":"a","data":1}`, `{"EVENT_TYPE":"a","data":1}`, `{"event_type":"a","Data":1}`, `{"event_ſype":"a","data":1}`,
	" {\n\"event_type\" : \"é✓\" ,\t\"data\" : -0 , \"custom_headers\" : { } }\r\n", `{"event_type":"a","data":1} `,
	`{"event_type":"a","data":1} {}`, `{"event_type":"a","data":1}x`, `{"event_type":"a","data":1,}`, `{"event_type":"a" "data":1}`,
	`{"event_type":"a","data":01}`, `{"event_type":"a","data":{"event_type":"b","data":2,"x":3}}`,
	`{"event_type":"a","data":{"k":[true,false,null,{"n":-1.5e-3}]},"endpoint_id":""}`, `{"event_type":"","data":""}`,
	`{"event_type":"a","data":` + strings.Repeat(`[{"a":`, 64) + "1" + strings.Repeat("}]", 64) + `}`, // deeper is TestEnvelopeFast's
}

// checkEnvelope fails t unless envelopeFast left b to encoding/json (env untouched) or gave exactly
// looksLikeEnvelopeJSON's answer and envelope, and looksLikeEnvelope always gives it.
func checkEnvelope(t *testing.T, b []byte) (decided bool) {
	t.Helper()
	var ref envelope
	want := looksLikeEnvelopeJSON(bytes.Clone(b), &ref)
	var got envelope
	isEnv, decided := envelopeFast(b, &got)
	switch {
	case !decided && !reflect.DeepEqual(got, envelope{}):
		t.Fatalf("fast path left %q to encoding/json but wrote %+v", short(b), got)
	case decided && isEnv != want:
		t.Fatalf("fast path: envelope(%q) = %v, encoding/json says %v", short(b), isEnv, want)
	case decided && isEnv && !reflect.DeepEqual(got, ref):
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", short(b), got, ref)
	}
	var full envelope
	if isEnv := looksLikeEnvelope(b, &full); isEnv != want || isEnv && !reflect.DeepEqual(full, ref) {
		t.Fatalf("looksLikeEnvelope(%q) = %v %+v, encoding/json says %v %+v", short(b), isEnv, full, want, ref)
	}
	return decided
}

// short keeps failure messages readable for the deep-nesting inputs.
func short(b []byte) []byte {
	if len(b) > 300 {
		return append(b[:150:150], append([]byte("..."), b[len(b)-150:]...)...)
	}
	return b
}

func TestEnvelopeFast(t *testing.T) {
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		body    string
		isEnv   bool // the answer (encoding/json's)
		decided bool // whether the fast path gives it
	}{
		{`{"event_type":"a.b","data":{"x":1}}`, true, true},
		{`{"event_type":"a","endpoint_id":"e","owner_id":"o","data":[1,2],"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`, true, true},
		{"{\n\"event_type\" : \"é✓\" ,\t\"data\" : -0 , \"custom_headers\" : { } }\r\n", true, true},
		{" {\"event_type\":\"a\",\"data\":1}", false, true}, // Decode trims the body first: this is not from Decode
		{`{"event_type":"","data":""}`, true, true},
		{`{"event_type":"a","data":"\ud800\n"}`, true, true},                           // data is kept as bytes: escapes are fine
		{"{\"event_type\":\"a\",\"data\":\"\xff\"}", true, true},                       // so is invalid UTF-8, as encoding/json keeps it
		{`{"event_type":"a","data":1,"custom_headers":{"a":"1","a":"2"}}`, true, true}, // the map keeps the last, as encoding/json
		{`{"event_type":"a","data":{"event_type":"b","data":2,"x":3}}`, true, true},
		{`{"event_type":"a","data":` + nested(9999) + `}`, true, true},
		// Data: a field that is no envelope field, decided by the first such simple key.
		{`{"a":1}`, false, true},
		{`{"event_type":"a","data":1,"x":2}`, false, true},
		{`{"data":1,"x":2}`, false, true},
		{`{"Event_Type":"a","data":1}`, false, true}, // encoding/json's map keys are exact, unlike its struct fields
		{`{"event_ſype":"a","data":1}`, false, true},
		{`{"event_type":"a","data":1,"\u0078":2,"y":3}`, false, false}, // an escaped key first: only encoding/json reads it
		{`{"x\u0041":1,"event_type":"a","data":1}`, false, false},
		{`{"x"`, false, true}, // invalid, but data either way
		{`{"event_type":"a","event_type":"b","data":1,"x":2}`, false, true},
		{`{"event_type":"a","data":` + nested(10000) + `,"x":1}`, false, true},
		// Data: not an object, or one without event_type or data.
		{`[{"event_type":"a","data":1}]`, false, true},
		{`{}`, false, true},
		{`{"event_type":"a"}`, false, true},
		{`{"data":{"x":1},"owner_id":"o"}`, false, true},
		{``, false, true},
		{`null`, false, true},
		// Left to encoding/json.
		{`{"event\u005ftype":"a","data":1}`, true, false},
		{`{"\u0064ata":1,"event_type":"a"}`, true, false},
		{`{"event_type":"a\"b","data":1}`, true, false},
		{`{"event_type":"a","data":null}`, true, false},
		{`{"event_type":null,"data":1}`, true, false},
		{`{"event_type":"a","owner_id":null,"data":1}`, true, false},
		{`{"event_type":"a","data":1,"custom_headers":null}`, true, false},
		{`{"event_type":"a","data":1,"custom_headers":{"a":null}}`, true, false},
		{`{"event_type":"a","data":1,"custom_headers":{"\u0041":"b"}}`, true, false},
		{`{"event_type":"a","event_type":"b","data":1}`, true, false},
		{`{"event_type":"a","data":1,"custom_headers":{"a":"1"},"custom_headers":{"b":"2"}}`, true, false},
		{"{\"event_type\":\"\xff\",\"data\":1}", true, false},
		{`{"event_type":5,"data":1}`, false, false},
		{`{"event_type":"a","data":1,"custom_headers":{"a":1}}`, false, false},
		{`{"event_type":"a","data":1,"custom_headers":[]}`, false, false},
		{`{"event_type":"a","data":1} {}`, false, false},
		{`{"event_type":"a","data":1,}`, false, false},
		{`{"event_type":"a","data":01}`, false, false},
		{`{"event_type":"a","data":` + nested(10000) + `}`, false, false}, // the object is a level too
	} {
		name := tc.body
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			if decided := checkEnvelope(t, []byte(tc.body)); decided != tc.decided {
				t.Errorf("fast path decided: %v, want %v", decided, tc.decided)
			}
			var env envelope
			if isEnv := looksLikeEnvelope([]byte(tc.body), &env); isEnv != tc.isEnv {
				t.Errorf("envelope: %v, want %v", isEnv, tc.isEnv)
			}
		})
	}
}

func FuzzEnvelopeFastMatchesJSON(f *testing.F) {
	for _, s := range envelopeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkEnvelope(t, b)
	})
}

// TestEnvelopeFastOwnsItsBytes: a driver may reuse a message's buffer once it is handled, so nothing
// decoded may alias the body.
func TestEnvelopeFastOwnsItsBytes(t *testing.T) {
	body := []byte(`{"event_type":"a.b","owner_id":"o","data":{"x":"yyyy"},"custom_headers":{"X-A":"b"},"idempotency_key":"k"}`)
	var env envelope
	if isEnv, decided := envelopeFast(body, &env); !isEnv || !decided {
		t.Fatalf("envelopeFast = %v, %v on a canonical envelope", isEnv, decided)
	}
	want := envelope{EventType: "a.b", OwnerID: "o", Data: json.RawMessage(`{"x":"yyyy"}`),
		CustomHeaders: map[string]string{"X-A": "b"}, IdempotencyKey: "k"}
	for i := range body {
		body[i] = 'z'
	}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("decoded %+v, changed to %+v with the body", want, env)
	}
}

func TestEnvelopeFastAllocs(t *testing.T) {
	bodies := benchBodies()
	for _, tc := range []struct {
		name   string
		isEnv  bool
		allocs float64
	}{
		{"data-1KiB", false, 0},
		{"envelope-1KiB", true, 3}, // endpoint_id, event_type and the data copy
	} {
		body := bodies[tc.name]
		allocs := testing.AllocsPerRun(100, func() {
			var env envelope
			if isEnv, decided := envelopeFast(body, &env); isEnv != tc.isEnv || !decided {
				t.Fatalf("%s: envelopeFast = %v, %v", tc.name, isEnv, decided)
			}
			if !validJSON(body) {
				t.Fatalf("%s: not valid JSON", tc.name)
			}
		})
		if allocs != tc.allocs {
			t.Errorf("%s: %.0f allocations, want %.0f", tc.name, allocs, tc.allocs)
		}
	}
}

// TestEnvelopeKeysMatchTheStruct: the fast path's key list, the reference's field set and envelope's
// JSON names must be the same set, or the two paths disagree on which bodies are envelopes.
func TestEnvelopeKeysMatchTheStruct(t *testing.T) {
	var tags []string
	typ := reflect.TypeFor[envelope]()
	for i := range typ.NumField() {
		tags = append(tags, typ.Field(i).Tag.Get("json"))
	}
	if len(envelopeKeys) != ekCount || !reflect.DeepEqual(envelopeKeys, tags) || len(envelopeFields) != len(tags) {
		t.Fatalf("envelopeKeys %v, envelope's JSON names %v, envelopeFields %v", envelopeKeys, tags, envelopeFields)
	}
	for _, k := range tags {
		if !envelopeFields[k] {
			t.Fatalf("envelopeFields lacks %q", k)
		}
	}
}
