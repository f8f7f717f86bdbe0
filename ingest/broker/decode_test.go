package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/model"
)

const (
	srcID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
	epID  = "01J00000000000000000000001"
	epID2 = "01J00000000000000000000002"
)

func testSource(b model.BrokerConfig) *model.Source {
	return &model.Source{UID: srcID, ProjectID: "01J0000000000000000000000P", Type: model.SourceKafka, Broker: &b}
}

func TestDecodeMessageContract(t *testing.T) {
	defaults := model.BrokerConfig{EventType: "order.created", EndpointID: epID}
	cases := []struct {
		name    string
		cfg     model.BrokerConfig
		body    string
		headers map[string]string
		id      string
		// want
		typ, endpoint, owner, data, key, keyPrefix string
		noKey                                      bool
		mode                                       api.PublishMode
		err                                        string
	}{
		{name: "bare data takes the source's type and endpoint", cfg: defaults, body: `{"a":1}`, id: "t/0/5",
			typ: "order.created", endpoint: epID, data: `{"a":1}`, key: "msg:" + srcID + ":t/0/5", mode: api.PublishToEndpoint},
		{name: "data may be any JSON value", cfg: defaults, body: ` [1,2] `, id: "x",
			typ: "order.created", endpoint: epID, data: `[1,2]`, key: "msg:" + srcID + ":x", mode: api.PublishToEndpoint},
		{name: "envelope wins over headers and defaults", cfg: defaults,
			body:    `{"event_type":"invoice.paid","owner_id":"cust-1","data":{"b":2},"idempotency_key":"k1","custom_headers":{"X-Tenant":"t"}}`,
			headers: map[string]string{"sluice-event-type": "ignored", "sluice-endpoint-id": epID2},
			typ:     "invoice.paid", owner: "cust-1", data: `{"b":2}`, key: "k1", mode: api.PublishFanout},
		{name: "headers win over defaults, any case", cfg: defaults, body: `{"c":3}`, id: "7",
			headers: map[string]string{"Sluice-Event-Type": "from.header", "SLUICE-ENDPOINT-ID": epID2, "sluice-idempotency-key": "hk"},
			typ:     "from.header", endpoint: epID2, data: `{"c":3}`, key: "hk", mode: api.PublishToEndpoint},
		{name: "cloudevents type attribute", cfg: model.BrokerConfig{}, body: `{"c":3}`, id: "7",
			headers: map[string]string{"ce_type": "com.example.created"},
			typ:     "com.example.created", data: `{"c":3}`, key: "msg:" + srcID + ":7", mode: api.PublishBroadcast},
		{name: "owner header fans out", cfg: model.BrokerConfig{EventType: "a.b"}, body: `1`, id: "1",
			headers: map[string]string{"sluice-owner-id": "cust-9"},
			typ:     "a.b", owner: "cust-9", data: `1`, key: "msg:" + srcID + ":1", mode: api.PublishFanout},
		{name: "no target broadcasts", cfg: model.BrokerConfig{EventType: "a.b"}, body: `{}`, id: "1",
			typ: "a.b", data: `{}`, key: "msg:" + srcID + ":1", mode: api.PublishBroadcast},
		{name: "an object with extra fields is data in auto mode", cfg: defaults,
			body: `{"event_type":"x","data":1,"other":true}`, id: "2",
			typ: "order.created", endpoint: epID, data: `{"event_type":"x","data":1,"other":true}`, key: "msg:" + srcID + ":2", mode: api.PublishToEndpoint},
		{name: "data mode never reads an envelope", cfg: model.BrokerConfig{Body: model.BodyData, EventType: "t.t", EndpointID: epID},
			body: `{"event_type":"x","data":1}`, id: "3",
			typ: "t.t", endpoint: epID, data: `{"event_type":"x","data":1}`, key: "msg:" + srcID + ":3", mode: api.PublishToEndpoint},
		{name: "long message ids are hashed into the key", cfg: defaults, body: `{}`, id: strings.Repeat("p", 300),
			typ: "order.created", endpoint: epID, data: `{}`, mode: api.PublishToEndpoint,
			keyPrefix: "msg:" + srcID + ":sha256:"},

		{name: "no message id, no key: at least once, never a key shared by all id-less messages", cfg: defaults, body: `{}`,
			typ: "order.created", endpoint: epID, data: `{}`, mode: api.PublishToEndpoint, noKey: true},

		{name: "an envelope with an escaped key is read by encoding/json", cfg: defaults,
			body: `{"event\u005ftype":"a.b","data":{"x":1},"custom_headers":{"k":null}}`, id: "4",
			typ: "a.b", endpoint: epID, data: `{"x":1}`, key: "msg:" + srcID + ":4", mode: api.PublishToEndpoint},
		{name: "an envelope field of the wrong type makes the body data", cfg: defaults, body: `{"event_type":5,"data":1}`, id: "6",
			typ: "order.created", endpoint: epID, data: `{"event_type":5,"data":1}`, key: "msg:" + srcID + ":6", mode: api.PublishToEndpoint},
		{name: "an object whose envelope fields are followed by another is data", cfg: defaults,
			body: " {\"data\":{\"event_type\":\"x\"},\"owner_id\":\"o\",\"Event_Type\":\"y\"}\n", id: "5",
			typ: "order.created", endpoint: epID, data: `{"data":{"event_type":"x"},"owner_id":"o","Event_Type":"y"}`, key: "msg:" + srcID + ":5", mode: api.PublishToEndpoint},

		{name: "not JSON", cfg: defaults, body: `not json`, err: "not JSON"},
		{name: "an unterminated object", cfg: defaults, body: `{"a":1,"event_type":"x"`, err: "not JSON"},
		{name: "trailing data after an envelope", cfg: defaults, body: `{"event_type":"a","data":1} {}`, err: "not JSON"},
		{name: "an envelope with null data", cfg: defaults, body: `{"event_type":"a","data":null}`, err: "data: required"},

		{name: "empty body", cfg: defaults, body: ``, err: "not JSON"},
		{name: "null data", cfg: defaults, body: `null`, err: "data: required"},
		{name: "no type anywhere", cfg: model.BrokerConfig{EndpointID: epID}, body: `{}`, err: "event_type: none"},
		{name: "bad type", cfg: defaults, body: `{}`, headers: map[string]string{"sluice-event-type": "bad\x00type"}, err: "event_type"},
		{name: "both targets", cfg: defaults, body: `{"event_type":"a","endpoint_id":"` + epID + `","owner_id":"o","data":1}`, err: "both"},
		{name: "endpoint id not an id", cfg: model.BrokerConfig{EventType: "a", EndpointID: "nope"}, body: `{}`, err: "not found"},
		{name: "envelope mode refuses bare data", cfg: model.BrokerConfig{Body: model.BodyEnvelope}, body: `{"a":1}`, err: "not a publish envelope"},
		{name: "envelope mode refuses trailing data", cfg: model.BrokerConfig{Body: model.BodyEnvelope}, body: `{"event_type":"a","data":1} {}`, err: "after the envelope"},
		{name: "too large", cfg: defaults, body: `"` + strings.Repeat("x", 300) + `"`, err: "publish limit"},
		{name: "idempotency key too long", cfg: defaults, body: `{}`, headers: map[string]string{"sluice-idempotency-key": strings.Repeat("k", 300)}, err: "idempotency_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, mode, err := Decode(testSource(c.cfg), &Message{ID: c.id, Body: []byte(c.body), Headers: c.headers}, 256)
			if c.err != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if in.EventType != c.typ || in.EndpointID != c.endpoint || in.OwnerID != c.owner || string(in.Data) != c.data || mode != c.mode {
				t.Errorf("got type %q endpoint %q owner %q data %s mode %v", in.EventType, in.EndpointID, in.OwnerID, in.Data, mode)
			}
			if c.noKey {
				if in.IdempotencyKey != "" {
					t.Errorf("idempotency key %q for a message without id", in.IdempotencyKey)
				}
				return
			}
			if c.key != "" && in.IdempotencyKey != c.key || !strings.HasPrefix(in.IdempotencyKey, c.keyPrefix) ||
				len(in.IdempotencyKey) > 255 || in.IdempotencyKey == "" {
				t.Errorf("idempotency key %q, want %q (<= 255 bytes)", in.IdempotencyKey, c.key)
			}
			if in.SourceID != srcID {
				t.Errorf("source id %q", in.SourceID)
			}
		})
	}
}

func TestMessageKeyIsStableAndDistinct(t *testing.T) {
	src := testSource(model.BrokerConfig{})
	long1, long2 := strings.Repeat("a", 400), strings.Repeat("a", 399)+"b"
	if MessageKey(src, long1) != MessageKey(src, long1) {
		t.Fatal("key not stable")
	}
	if MessageKey(src, long1) == MessageKey(src, long2) || MessageKey(src, "1") == MessageKey(src, "2") {
		t.Fatal("distinct messages share a key")
	}
	other := testSource(model.BrokerConfig{})
	other.UID = "01HYYYYYYYYYYYYYYYYYYYYYYY"
	if MessageKey(src, "1") == MessageKey(other, "1") {
		t.Fatal("two sources share a key for the same message id")
	}
}

// FuzzDecode: no message body or header set makes Decode panic, whatever it accepts is a valid
// publish, and the trimmed body it reads gets encoding/json's answers from the fast paths (envelope or
// data, and whether data is JSON).
func FuzzDecode(f *testing.F) {
	for _, s := range append([]string{`{"a":1}`, `{"event_type":"a.b","data":{"x":1}}`, `null`, `[`, `{"event_type":"a","data":1,"owner_id":"o"}`, "\xff"}, envelopeSeeds...) {
		f.Add([]byte(s), "sluice-event-type", "t.t", uint8(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, hk, hv string, mode uint8) {
		cfg := model.BrokerConfig{Body: []string{"", model.BodyEnvelope, model.BodyData}[int(mode)%3], EventType: "d.d"}
		trimmed := bytes.TrimSpace(body)
		checkEnvelope(t, trimmed)
		if got, want := validJSON(trimmed), json.Valid(trimmed); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", short(trimmed), got, want)
		}
		in, m, err := Decode(testSource(cfg), &Message{ID: "f", Body: body, Headers: map[string]string{hk: hv}}, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if err := in.Validate(m); err != nil {
			t.Fatalf("accepted a request that does not validate: %v", err)
		}
	})
}
