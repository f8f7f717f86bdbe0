package raftstore

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sluice-gw/sluice/model"
)

func samplePublishes() []Publish {
	at := time.Date(2026, 11, 26, 23, 59, 58, 123456789, time.UTC)
	ev := model.Event{UID: model.NewID(at), ProjectID: model.NewID(at), EventType: "order.paid", CreatedAt: at}
	full := ev
	full.EndpointID, full.OwnerID, full.IdempotencyKey, full.SourceID = model.NewID(at), "owner-ü", "key with spaces", "src"
	full.Headers = map[string]string{"X-B": "2", "X-A": "1", "X-Empty": ""}
	full.Endpoints = []string{model.NewID(at), model.NewID(at)}
	noTargets := ev
	noTargets.Endpoints = []string{}
	old := ev
	old.CreatedAt = time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)
	return []Publish{
		{Event: full, Targets: []Target{{EndpointID: full.Endpoints[0], DeliveryID: model.NewID(at), OwnerID: "o"}, {EndpointID: full.Endpoints[1], DeliveryID: model.NewID(at)}}},
		{Event: noTargets},
		{Event: ev, Replay: true, Targets: []Target{{EndpointID: "e", DeliveryID: "d"}}},
		{Event: old},
	}
}

// TestPublishBinaryDecodesAsJSONWould: the binary form decodes to exactly what the JSON form of
// the same Publish decodes to, and publishes it cannot represent fall back to JSON.
func TestPublishBinaryDecodesAsJSONWould(t *testing.T) {
	for i, p := range samplePublishes() {
		c, err := NewPublishCommand(p, []byte("blob"))
		if err != nil || c.Meta[0] != publishBinaryV1 || c.Type != CmdPublish {
			t.Fatalf("publish %d: %v, meta starts %q", i, err, c.Meta[:1])
		}
		j, err := NewCommand(CmdPublish, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		var fromBin, fromJSON Publish
		if err := decodePublish(&c, &fromBin); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if err := decodePublish(&j, &fromJSON); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		// JSON keeps a null data as the bytes "null"; apply never reads a publish's Data.
		if string(fromJSON.Event.Data) == "null" {
			fromJSON.Event.Data = nil
		}
		if !reflect.DeepEqual(fromBin, fromJSON) {
			t.Fatalf("publish %d: binary decodes to\n%+v\nJSON to\n%+v", i, fromBin, fromJSON)
		}
	}
	withData := samplePublishes()[0]
	withData.Event.Data = model.EventData(`{"a":1}`)
	otherZone := samplePublishes()[0]
	otherZone.Event.CreatedAt = otherZone.Event.CreatedAt.In(time.FixedZone("X", 3600))
	for name, p := range map[string]Publish{"data": withData, "zone": otherZone} {
		c, err := NewPublishCommand(p, nil)
		if err != nil || c.Meta[0] != '{' {
			t.Fatalf("%s: %v, meta starts %q; want the JSON form", name, err, c.Meta[:1])
		}
	}
}

// TestPublishCodecCoversEveryField fails when a field is added to a type the binary form carries:
// add it to appendPublish and parsePublish (or make NewPublishCommand fall back to JSON for it).
func TestPublishCodecCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		v    any
		want int
	}{{model.Event{}, 11}, {Publish{}, 3}, {Target{}, 3}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.want {
			t.Fatalf("%T has %d fields, the binary publish codec knows %d", c.v, n, c.want)
		}
	}
}

// TestPublishFormsApplyIdentically: a log of binary publish commands and one of the same publishes
// as JSON produce byte-identical state, so logs written before the binary form replay unchanged.
func TestPublishFormsApplyIdentically(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000).UTC()
	f := fixture{pid: model.NewID(now), eid: model.NewID(now.Add(time.Millisecond)), now: now}
	setup := []Command{}
	for _, x := range []struct {
		t    CmdType
		body any
	}{
		{CmdPutProject, PutProject{Create: true, Project: model.Project{UID: f.pid, Name: "p", CreatedAt: now}}},
		{CmdPutEndpoint, PutEndpoint{Create: true, Endpoint: model.Endpoint{UID: f.eid, ProjectID: f.pid, URL: "http://127.0.0.1:1/", Status: model.EndpointActive, CreatedAt: now}}},
	} {
		c, err := NewCommand(x.t, x.body, nil)
		if err != nil {
			t.Fatal(err)
		}
		setup = append(setup, c)
	}
	var bin, js []Command
	for i := 0; i < 20; i++ {
		p, blob := publishCmd(f, i, []string{"", "k1", "k2", "k1"}[i%4])
		p.Event.Headers = map[string]string{"X-I": string(rune('a' + i))}
		p.Event.Endpoints = []string{f.eid}
		b, err := NewPublishCommand(p, blob)
		if err != nil {
			t.Fatal(err)
		}
		j, err := NewCommand(CmdPublish, p, blob)
		if err != nil {
			t.Fatal(err)
		}
		bin, js = append(bin, b), append(js, j)
	}
	apply := func(name string, cmds []Command, entry func([]byte) []byte) []byte {
		st, err := openStateDB(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		defer st.close()
		fsm, err := newFSM(st, slog.Default(), nil)
		if err != nil {
			t.Fatal(err)
		}
		all := append(append([]Command{}, setup...), cmds...)
		for i := range all {
			out := fsm.ApplyBatch([]*raft.Log{{Index: uint64(i + 1), Type: raft.LogCommand, Data: entry(encodeEntry([]*Command{&all[i]}))}})
			if r := out[0].([]Result)[0]; r.Err != nil {
				t.Fatalf("%s: command %d: %v", name, i, r.Err)
			}
		}
		return dumpState(t, st)
	}
	raw := func(b []byte) []byte { return b }
	a := apply("binary", bin, raw)
	if b := apply("json", js, raw); !bytes.Equal(a, b) {
		t.Fatalf("state differs: %d bytes from binary commands, %d from JSON", len(a), len(b))
	}
	// Each entry compressed whatever its size (compressEntry leaves small ones raw).
	if c := apply("compressed", bin, forceCompressEntry); !bytes.Equal(a, c) {
		t.Fatalf("state differs: %d bytes from raw entries, %d from compressed entries", len(a), len(c))
	}
}

func FuzzParsePublish(f *testing.F) {
	for _, p := range samplePublishes() {
		f.Add(appendPublish(nil, &p))
	}
	f.Add([]byte{publishBinaryV1, 0})
	f.Add([]byte(`{"event":{}}`))
	f.Fuzz(func(t *testing.T, meta []byte) {
		var p Publish
		if err := parsePublish(meta, &p); err != nil {
			return
		}
		// Whatever parses re-encodes to something that parses to the same Publish.
		var again Publish
		if err := parsePublish(appendPublish(nil, &p), &again); err != nil || !reflect.DeepEqual(p, again) {
			t.Fatalf("re-encoded %+v parses to %+v, %v", p, again, err)
		}
	})
}
