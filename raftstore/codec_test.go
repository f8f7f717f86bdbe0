package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/sluice-gw/sluice/model"
)

func sampleTimes() []time.Time {
	return []time.Time{
		{},
		time.UnixMilli(1_800_000_000_123).UTC(),
		time.Unix(1_800_000_000, 999_999_999).UTC(),
		time.Unix(1_800_000_000, 5).In(time.FixedZone("", 2*3600)),
		time.Unix(-5, 7).In(time.FixedZone("", -(3*3600 + 1800))),
	}
}

func sampleDeliveries() []model.Delivery {
	var out []model.Delivery
	for i, at := range sampleTimes() {
		next := at.Add(time.Minute)
		d := model.Delivery{UID: model.NewID(at), ProjectID: "p1", EventID: "ev", EndpointID: "ep",
			EventType: "invoice.paid", Status: model.AllStatuses[i%len(model.AllStatuses)], Attempts: i,
			CreatedAt: at, UpdatedAt: at.Add(time.Second)}
		if i%2 == 0 {
			d.NextAttemptAt, d.LastStatus, d.LastError, d.OwnerID = &next, 500+i, "boom ✗", "owner"
		}
		out = append(out, d)
	}
	out = append(out, model.Delivery{}, model.Delivery{Status: "some-future-status", Attempts: -3, LastStatus: -1})
	return out
}

func sampleAttempts() []model.Attempt {
	var out []model.Attempt
	for i, at := range sampleTimes() {
		a := model.Attempt{UID: model.NewID(at), DeliveryID: "d", ProjectID: "p", EndpointID: "e", Number: i + 1,
			Method: "POST", URL: "http://127.0.0.1/hook?x=1", StatusCode: 200, ResponseBody: `{"ok":true}`,
			LatencyMS: 1.234 * float64(i), EgressIP: "127.0.0.1", CreatedAt: at}
		switch i % 3 {
		case 0:
			a.RequestHeaders = http.Header{"Content-Type": {"application/json"}, "X-Multi": {"a", "b"}, "X-Nil": nil, "X-Empty": {}}
			a.ResponseHeaders = http.Header{}
		case 1:
			a.RequestHeaders = http.Header{}
			a.ResponseHeaders = http.Header{"Server": {"sink"}}
			a.BodyTruncated, a.Error = true, "timeout"
		}
		out = append(out, a)
	}
	return append(out, model.Attempt{})
}

func sampleEvents() []model.Event {
	var out []model.Event
	for i, at := range sampleTimes() {
		ev := model.Event{UID: model.NewID(at), ProjectID: "p1", EventType: "invoice.paid", CreatedAt: at}
		switch i % 3 {
		case 0:
			ev.Headers, ev.IdempotencyKey, ev.OwnerID = map[string]string{"X-A": "1", "X-B": "two ✓", "X-Empty": ""}, "idem \"k\"", "owner"
		case 1:
			ev.Headers, ev.EndpointID, ev.SourceID = map[string]string{}, "ep", "src"
		}
		out = append(out, ev)
	}
	return append(out, model.Event{})
}

// The API renders these records as JSON: the binary form must give back exactly what a JSON round
// trip gave (nil and empty headers, zones, nanoseconds).
func TestCodecRoundTripKeepsAPIJSON(t *testing.T) {
	for _, d := range sampleDeliveries() {
		viaJSON, _ := json.Marshal(&d)
		var fromJSON model.Delivery
		if err := decodeDelivery(viaJSON, &fromJSON); err != nil {
			t.Fatalf("decode JSON delivery %s: %v", viaJSON, err)
		}
		var got model.Delivery
		if err := decodeDelivery(appendDelivery(nil, &fromJSON), &got); err != nil {
			t.Fatalf("decode binary delivery %+v: %v", d, err)
		}
		if out, _ := json.Marshal(&got); !bytes.Equal(out, viaJSON) {
			t.Errorf("delivery:\n got %s\nwant %s", out, viaJSON)
		}
	}
	for _, ev := range sampleEvents() {
		viaJSON, _ := json.Marshal(&ev) // as the FSM wrote it before: no endpoints, no data
		var fromJSON model.Event
		if err := decodeEvent(viaJSON, &fromJSON); err != nil {
			t.Fatalf("decode JSON event %s: %v", viaJSON, err)
		}
		fromJSON.Data = nil // JSON records say "data":null, which EventData keeps as text
		var got model.Event
		if err := decodeEvent(appendEvent(nil, &fromJSON), &got); err != nil {
			t.Fatalf("decode binary event %+v: %v", ev, err)
		}
		if out, _ := json.Marshal(&got); !bytes.Equal(out, viaJSON) {
			t.Errorf("event:\n got %s\nwant %s", out, viaJSON)
		}
	}
	for _, ids := range [][]string{nil, {}, {"a"}, {model.NewID(time.Now()), "", "ep ✓"}} {
		viaJSON, _ := json.Marshal(ids)
		fromJSON, err := decodeTargets(viaJSON)
		if err != nil {
			t.Fatalf("decode JSON targets %s: %v", viaJSON, err)
		}
		got, err := decodeTargets(appendTargets(nil, fromJSON))
		if err != nil {
			t.Fatalf("decode binary targets %q: %v", ids, err)
		}
		if out, _ := json.Marshal(got); !bytes.Equal(out, viaJSON) {
			t.Errorf("targets:\n got %s\nwant %s", out, viaJSON)
		}
	}
	for _, a := range sampleAttempts() {
		viaJSON, _ := json.Marshal(&a)
		var fromJSON model.Attempt
		if err := decodeAttempt(viaJSON, &fromJSON); err != nil {
			t.Fatalf("decode JSON attempt %s: %v", viaJSON, err)
		}
		var got model.Attempt
		if err := decodeAttempt(appendAttempt(nil, &fromJSON), &got); err != nil {
			t.Fatalf("decode binary attempt %+v: %v", a, err)
		}
		if out, _ := json.Marshal(&got); !bytes.Equal(out, viaJSON) {
			t.Errorf("attempt:\n got %s\nwant %s", out, viaJSON)
		}
	}
}

func TestResultsCodecRoundTrip(t *testing.T) {
	as := sampleAttempts()
	var rs []AttemptResult
	for i, at := range sampleTimes() {
		r := AttemptResult{ProjectID: "p", DeliveryID: model.NewID(at), Status: model.AllStatuses[i%len(model.AllStatuses)],
			NextAttemptAt: at.Add(time.Hour), DisableEndpoint: i == 2, At: at}
		if i != 1 {
			r.Attempt = &as[i]
		}
		rs = append(rs, r)
	}
	for _, in := range [][]AttemptResult{nil, rs} {
		meta := NewResultsCommand(in).Meta
		got, raw, err := decodeResults(meta, true)
		if err != nil {
			t.Fatalf("decode %d results: %v", len(in), err)
		}
		wantJSON, _ := json.Marshal(Results{Results: in})
		gotJSON, _ := json.Marshal(Results{Results: got})
		if len(in) > 0 && !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("results:\n got %s\nwant %s", gotJSON, wantJSON)
		}
		for i := range got {
			if (raw[i] == nil) != (got[i].Attempt == nil) {
				t.Fatalf("result %d: raw attempt %x for attempt %v", i, raw[i], got[i].Attempt)
			}
			if raw[i] != nil && !bytes.Equal(raw[i], appendAttempt(nil, got[i].Attempt)) {
				t.Errorf("result %d: raw attempt bytes differ from its encoding", i)
			}
		}
	}
	// Entries written by earlier versions carry JSON.
	legacy, _ := json.Marshal(Results{Results: rs[:2]})
	got, raw, err := decodeResults(legacy, true)
	if err != nil || len(got) != 2 || raw != nil || got[0].DeliveryID != rs[0].DeliveryID {
		t.Fatalf("legacy JSON results: %d results, raw %v, err %v", len(got), raw, err)
	}
}

func TestDecodersRefuseDamage(t *testing.T) {
	d := sampleDeliveries()[1]
	a := sampleAttempts()[0]
	ev := sampleEvents()[0]
	good := map[string][]byte{
		"event":    appendEvent(nil, &ev),
		"targets":  appendTargets(nil, []string{"ep1", "ep2"}),
		"delivery": appendDelivery(nil, &d),
		"attempt":  appendAttempt(nil, &a),
		"results":  NewResultsCommand([]AttemptResult{{ProjectID: "p", DeliveryID: "d", Status: model.StatusSuccess, Attempt: &a}}).Meta,
	}
	decoders := map[string]func([]byte) error{
		"event":    func(v []byte) error { var x model.Event; return decodeEvent(v, &x) },
		"targets":  func(v []byte) error { _, err := decodeTargets(v); return err },
		"delivery": func(v []byte) error { var x model.Delivery; return decodeDelivery(v, &x) },
		"attempt":  func(v []byte) error { var x model.Attempt; return decodeAttempt(v, &x) },
		"results":  func(v []byte) error { _, _, err := decodeResults(v, false); return err },
	}
	for name, v := range good {
		dec := decoders[name]
		if err := dec(v); err != nil {
			t.Fatalf("%s: intact record: %v", name, err)
		}
		cases := []struct {
			what string
			v    []byte
		}{
			{"empty", nil},
			{"unknown format", append([]byte{9}, v[1:]...)},
			{"trailing byte", append(append([]byte(nil), v...), 0)},
			{"huge length", append([]byte{v[0]}, 0xff, 0xff, 0xff, 0xff, 0x0f)},
		}
		for n := 1; n < len(v); n++ {
			cases = append(cases, struct {
				what string
				v    []byte
			}{"truncated", v[:n]})
		}
		for _, c := range cases {
			err := dec(c.v)
			if err == nil {
				t.Errorf("%s, %s (%d bytes): decoded without error", name, c.what, len(c.v))
			} else if len(c.v) > 0 && c.v[0] != '{' && !errors.Is(err, errCodec) {
				t.Errorf("%s, %s: error %v does not wrap errCodec", name, c.what, err)
			}
		}
	}
}

func fuzzSeeds(f *testing.F, encode func() [][]byte) {
	for _, v := range encode() {
		f.Add(v)
	}
	f.Add([]byte(`{"uid":"x"}`))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
}

// Decoders read what is in the state DB and the Raft log: whatever the bytes, they return an error or
// a record that encodes back to the same bytes.
func FuzzDecodeDelivery(f *testing.F) {
	fuzzSeeds(f, func() (out [][]byte) {
		for _, d := range sampleDeliveries() {
			out = append(out, appendDelivery(nil, &d))
		}
		return out
	})
	f.Fuzz(func(t *testing.T, v []byte) {
		var d model.Delivery
		if decodeDelivery(v, &d) != nil || v[0] == '{' {
			return
		}
		var again model.Delivery
		if err := decodeDelivery(appendDelivery(nil, &d), &again); err != nil {
			t.Fatalf("re-encoded delivery does not decode: %v", err)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	fuzzSeeds(f, func() (out [][]byte) {
		for _, ev := range sampleEvents() {
			out = append(out, appendEvent(nil, &ev))
		}
		return out
	})
	f.Fuzz(func(t *testing.T, v []byte) {
		var ev model.Event
		if decodeEvent(v, &ev) != nil || v[0] == '{' {
			return
		}
		var again model.Event
		if err := decodeEvent(appendEvent(nil, &ev), &again); err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
	})
}

func FuzzDecodeTargets(f *testing.F) {
	fuzzSeeds(f, func() [][]byte {
		return [][]byte{appendTargets(nil, nil), appendTargets(nil, []string{"a", "bc"}), []byte(`["a"]`), []byte(`null`)}
	})
	f.Fuzz(func(t *testing.T, v []byte) {
		ids, err := decodeTargets(v)
		if err != nil || v[0] == '[' || v[0] == 'n' {
			return
		}
		again, err := decodeTargets(appendTargets(nil, ids))
		if err != nil || !slices.Equal(again, ids) || (again == nil) != (ids == nil) {
			t.Fatalf("targets %q re-encoded decode as %q, %v", ids, again, err)
		}
	})
}

func FuzzDecodeAttempt(f *testing.F) {
	fuzzSeeds(f, func() (out [][]byte) {
		for _, a := range sampleAttempts() {
			out = append(out, appendAttempt(nil, &a))
		}
		return out
	})
	f.Fuzz(func(t *testing.T, v []byte) {
		var a model.Attempt
		if decodeAttempt(v, &a) != nil || v[0] == '{' {
			return
		}
		var again model.Attempt
		if err := decodeAttempt(appendAttempt(nil, &a), &again); err != nil {
			t.Fatalf("re-encoded attempt does not decode: %v", err)
		}
	})
}

func FuzzDecodeResults(f *testing.F) {
	fuzzSeeds(f, func() [][]byte {
		as := sampleAttempts()
		return [][]byte{NewResultsCommand([]AttemptResult{{ProjectID: "p", DeliveryID: "d", Status: model.StatusRetry, Attempt: &as[0]},
			{ProjectID: "p", DeliveryID: "e", Status: model.StatusSuccess}}).Meta}
	})
	f.Fuzz(func(t *testing.T, v []byte) {
		rs, raw, err := decodeResults(v, true)
		if _, _, errLight := decodeResults(v, false); (errLight == nil) != (err == nil) {
			t.Fatalf("decoding with headers: %v; without: %v", err, errLight)
		}
		if err != nil || v[0] == '{' {
			return
		}
		for i := range rs {
			if (raw[i] == nil) != (rs[i].Attempt == nil) {
				t.Fatalf("result %d: raw attempt and decoded attempt disagree", i)
			}
		}
		if _, _, err := decodeResults(NewResultsCommand(rs).Meta, true); err != nil {
			t.Fatalf("re-encoded results do not decode: %v", err)
		}
	})
}

// Results in the binary command and in the JSON one earlier versions proposed (still in Raft logs)
// leave the same state behind, as the API shows it.
func TestResultsFormatsApplyAlike(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	f := setupProject(t, s)
	type view struct {
		Delivery *model.Delivery
		Attempts []*model.Attempt
	}
	apply := func(i int, binary bool) view {
		p, blob := publishCmd(f, i, "")
		mustPropose(t, s, CmdPublish, p, blob)
		did := p.Targets[0].DeliveryID
		at := f.now.Add(time.Duration(i) * time.Second)
		rs := []AttemptResult{
			{ProjectID: f.pid, DeliveryID: did, Status: model.StatusRetry, NextAttemptAt: at.Add(time.Minute), At: at,
				Attempt: &model.Attempt{UID: "a1", DeliveryID: did, Number: 1, StatusCode: 500, Error: "HTTP 500",
					RequestHeaders: http.Header{"X-Sluice-Signature": {"v1,abc"}}, CreatedAt: at}},
			{ProjectID: f.pid, DeliveryID: did, Status: model.StatusSuccess, At: at.Add(time.Minute),
				Attempt: &model.Attempt{UID: "a2", DeliveryID: did, Number: 2, StatusCode: 200, CreatedAt: at.Add(time.Minute)}},
		}
		var cmd Command
		if binary {
			cmd = NewResultsCommand(rs)
		} else {
			var err error
			if cmd, err = NewCommand(CmdResults, Results{Results: rs}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := s.Propose(context.Background(), cmd); err != nil || r.Err != nil {
			t.Fatalf("propose results (binary %v): %v %v", binary, err, r.Err)
		}
		d, err := s.Delivery(f.pid, did)
		if err != nil {
			t.Fatal(err)
		}
		as, err := s.Attempts(f.pid, did)
		if err != nil {
			t.Fatal(err)
		}
		// Ids differ between the two runs; everything else must not.
		d.UID, d.EventID, d.CreatedAt = "", "", time.Time{}
		for _, a := range as {
			a.DeliveryID = ""
		}
		return view{d, as}
	}
	j, _ := json.Marshal(apply(1, false))
	healthJSON, _ := json.Marshal(s.EndpointHealth(f.pid, f.eid))
	b, _ := json.Marshal(apply(1, true))
	if !bytes.Equal(j, b) {
		t.Fatalf("state after results:\nJSON command   %s\nbinary command %s", j, b)
	}
	h := s.EndpointHealth(f.pid, f.eid)
	if h.Attempts != 4 || h.Failures != 2 || h.ConsecutiveFailures != 0 {
		t.Fatalf("health after two failures and two successes = %+v (after the first two: %s)", h, healthJSON)
	}
}

// EventForDelivery skips decoding event records without headers: a headers-like text anywhere else
// in the record must not fool it, and headers must never be lost.
func TestEventForDeliveryHeaders(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	f := setupProject(t, s)
	tests := []struct {
		name      string
		eventType string
		idem      string
		headers   map[string]string
	}{
		{"no headers", "invoice.paid", "", nil},
		{"headers", "invoice.paid", "", map[string]string{"X-Custom": "c", "X-Other": `"headers":`}},
		{"headers-like idempotency key", "invoice.paid", `k "headers": {"X":"y"}`, nil},
		{"headers-like event type", `"headers":`, "", nil},
		{"headers-like text and headers", `"headers":`, `"headers":`, map[string]string{"X-A": "1"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, blob := publishCmd(f, i, tt.idem)
			p.Event.EventType, p.Event.Headers = tt.eventType, tt.headers
			mustPropose(t, s, CmdPublish, p, blob)
			ev, err := s.EventForDelivery(f.pid, p.Event.UID)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(ev.Headers)
			want, _ := json.Marshal(tt.headers)
			if !bytes.Equal(got, want) || string(ev.Data) != fmt.Sprintf(`{"n": %d}`, i) {
				t.Fatalf("headers %s, data %q; want %s", got, ev.Data, want)
			}
		})
	}
}

// Event and matched-endpoint records written as JSON by earlier versions read as the binary ones do.
func TestJSONEventRecordsReadAsBinaryOnes(t *testing.T) {
	s := openTestStore(t, t.TempDir(), nil)
	defer s.Close()
	f := setupProject(t, s)
	p, blob := publishCmd(f, 1, "idem-1")
	p.Event.Headers, p.Event.Endpoints = map[string]string{"X-Custom": "c"}, []string{f.eid}
	mustPropose(t, s, CmdPublish, p, blob)
	read := func() (ev *model.Event, list []*model.Event, forDelivery *model.Event) {
		t.Helper()
		ev, err := s.Event(f.pid, p.Event.UID)
		if err != nil {
			t.Fatal(err)
		}
		if list, _, err = s.ListEvents(f.pid, EventFilter{}); err != nil || len(list) != 1 {
			t.Fatalf("list events: %d, %v", len(list), err)
		}
		if forDelivery, err = s.EventForDelivery(f.pid, p.Event.UID); err != nil {
			t.Fatal(err)
		}
		return ev, list, forDelivery
	}
	binEv, binList, binFor := read()
	if binEv.Headers["X-Custom"] != "c" || len(binEv.Endpoints) != 1 || binEv.Endpoints[0] != f.eid ||
		binEv.IdempotencyKey != "idem-1" || string(binEv.Data) != `{"n": 1}` {
		t.Fatalf("binary records read back as %+v", binEv)
	}

	legacy := p.Event
	legacy.Endpoints, legacy.Data = nil, nil
	evJSON, _ := json.Marshal(&legacy)
	targetsJSON, _ := json.Marshal([]string{f.eid})
	err := s.st.view(func(db *pebble.DB) error {
		if err := db.Set(key(tagEvent, f.pid, p.Event.UID), evJSON, pebble.NoSync); err != nil {
			return err
		}
		return db.Set(key(tagEventTargets, f.pid, p.Event.UID), targetsJSON, pebble.NoSync)
	})
	if err != nil {
		t.Fatal(err)
	}
	jsonEv, jsonList, jsonFor := read()
	for _, c := range []struct {
		what      string
		got, want any
	}{{"Event", jsonEv, binEv}, {"ListEvents", jsonList, binList}, {"EventForDelivery", jsonFor, binFor}} {
		got, _ := json.Marshal(c.got)
		want, _ := json.Marshal(c.want)
		if !bytes.Equal(got, want) {
			t.Errorf("%s from JSON records:\n got %s\nwant %s", c.what, got, want)
		}
	}
}
