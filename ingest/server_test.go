package ingest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/ingest/client"
	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/raftstore"
)

func dialClient(t testing.TB, addr string, opts client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	cl, err := client.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestPipelinedPublishesAreStoredAndSurviveRestart: several connections pipeline publishes (single
// frames and batches, compressed and not); every one is acknowledged, every acknowledged event and
// its deliveries are in the store, and still are after the store is closed and reopened.
func TestPipelinedPublishesAreStoredAndSurviveRestart(t *testing.T) {
	e := newEnv(t, Config{})
	const conns, per = 4, 300
	type sent struct {
		ack  client.Ack
		data string
		want int
	}
	var (
		mu  sync.Mutex
		all []sent
		wg  sync.WaitGroup
	)
	for i := 0; i < conns; i++ {
		cl := dialClient(t, e.addr, client.Options{Key: e.key, Compress: i%2 == 0, MaxInFlight: 128, MaxBatch: []int{1, 16, 64, 256}[i]})
		wg.Add(1)
		go func() {
			defer wg.Done()
			futs := make([]*client.Future, 0, per)
			var mine []sent
			for j := 0; j < per; j++ {
				data := fmt.Sprintf(`{"conn":%d, "n":%d, "pad":%q}`, i, j, strings.Repeat("x", j%700))
				req := &client.Request{EventType: "invoice.paid", Data: json.RawMessage(data)}
				want := 1
				switch j % 3 {
				case 0:
					req.EndpointID = e.ep1
				case 1:
					req.OwnerID = "a" // ep1 and ep2
					want = 2
				case 2: // broadcast: ep3's "*" subscription
				}
				futs = append(futs, cl.PublishAsync(req))
				mine = append(mine, sent{data: data, want: want})
			}
			for j, f := range futs {
				ack, err := f.Result()
				if err != nil {
					t.Errorf("conn %d publish %d: %v", i, j, err)
					return
				}
				mine[j].ack = ack
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(all) != conns*per {
		t.Fatalf("%d acks, want %d", len(all), conns*per)
	}
	check := func(when string) {
		ids := map[string]bool{}
		for _, s := range all {
			if ids[s.ack.EventID] {
				t.Fatalf("%s: event id %s acknowledged twice", when, s.ack.EventID)
			}
			ids[s.ack.EventID] = true
			if s.ack.Matched != s.want || s.ack.Duplicate {
				t.Fatalf("%s: ack %+v, want %d matched", when, s.ack, s.want)
			}
			data, err := e.st.EventData(e.pid, s.ack.EventID)
			if err != nil || string(data) != s.data {
				t.Fatalf("%s: event %s data = %q, %v; want %q", when, s.ack.EventID, data, err, s.data)
			}
			ds, _, err := e.st.ListDeliveries(e.pid, raftstore.DeliveryFilter{EventID: s.ack.EventID, Page: raftstore.Page{Limit: 10}})
			if err != nil || len(ds) != s.want {
				t.Fatalf("%s: event %s has %d deliveries (%v), want %d", when, s.ack.EventID, len(ds), err, s.want)
			}
		}
		if n, _ := e.countEvents(e.pid); n != conns*per {
			t.Fatalf("%s: %d events stored, want %d", when, n, conns*per)
		}
	}
	check("before restart")
	if st := e.srv.Stats(); st.Acked != conns*per || st.InFlight != 0 {
		t.Fatalf("server stats %+v", st)
	}
	e.restart()
	check("after restart")
}

// TestNacksForBadInput: every refused publish gets a NACK with the HTTP API's words, changes nothing,
// and leaves the connection usable.
func TestNacksForBadInput(t *testing.T) {
	e := newEnv(t, Config{MaxPublishBytes: 4096})
	rc := dialRaw(t, e.addr)
	rc.auth(e.key, "")
	root := dialRaw(t, e.addr)
	root.auth(rootKey, "")
	missing := "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	ok := func(extra map[string]any) map[string]any {
		m := map[string]any{"endpoint_id": e.ep1, "event_type": "x", "data": 1}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	cases := []struct {
		name string
		conn *rawConn
		body any
		code wire.Code
		msg  string
	}{
		{"malformed JSON", rc, `{"event_type": "x",`, wire.CodeBadRequest, "invalid JSON"},
		{"not an object", rc, `[1,2]`, wire.CodeBadRequest, "invalid JSON"},
		{"trailing data", rc, fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":1} {}`, e.ep1), wire.CodeBadRequest, "after the object"},
		{"invalid JSON in data", rc, fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":{bad}}`, e.ep1), wire.CodeBadRequest, "invalid JSON"},
		{"unknown field", rc, ok(map[string]any{"event_typ": "x"}), wire.CodeBadRequest, "event_typ"},
		{"missing event_type", rc, ok(map[string]any{"event_type": nil}), wire.CodeBadRequest, "event_type"},
		{"missing data", rc, ok(map[string]any{"data": nil}), wire.CodeBadRequest, "data"},
		{"null data", rc, fmt.Sprintf(`{"endpoint_id":%q,"event_type":"x","data":null}`, e.ep1), wire.CodeBadRequest, "data"},
		{"bad header", rc, ok(map[string]any{"custom_headers": map[string]string{"X-A": "a\r\nb"}}), wire.CodeBadRequest, "custom_headers"},
		{"wrong type", rc, `{"event_type": 5, "data": 1}`, wire.CodeBadRequest, "event_type"},
		{"unknown endpoint", rc, ok(map[string]any{"endpoint_id": missing}), wire.CodeNotFound, "endpoint"},
		{"malformed endpoint id", rc, ok(map[string]any{"endpoint_id": "nope"}), wire.CodeNotFound, "endpoint"},
		{"ambiguous target", rc, ok(map[string]any{"owner_id": "a"}), wire.CodeBadRequest, "target"},
		{"bad target", rc, ok(map[string]any{"target": "everyone"}), wire.CodeBadRequest, "target"},
		{"broadcast with endpoint", rc, ok(map[string]any{"target": "broadcast"}), wire.CodeBadRequest, "broadcast"},
		{"oversized publish", rc, ok(map[string]any{"data": strings.Repeat("a", 5000)}), wire.CodeTooLarge, "limit"},
		{"other project's key", rc, ok(map[string]any{"project_id": e.otherPID}), wire.CodeForbidden, "not authorised"},
		{"root without project", root, ok(nil), wire.CodeBadRequest, "project_id"},
		{"root, unknown project", root, ok(map[string]any{"project_id": missing}), wire.CodeNotFound, "project"},
		{"root, malformed project", root, ok(map[string]any{"project_id": "x"}), wire.CodeNotFound, "project"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.st.AppliedIndex()
			seq := uint64(100 + i)
			tc.conn.send(publishFrame(seq, tc.body))
			f := tc.conn.mustRead()
			p, _ := wire.ParseProblem(f.Payload)
			if f.Type != wire.TypeNack || f.Seq != seq || p.Code != tc.code || !strings.Contains(p.Message, tc.msg) {
				t.Fatalf("got %s seq %d %v, want NACK seq %d %s containing %q", f.Type, f.Seq, p, seq, tc.code, tc.msg)
			}
			if after := e.st.AppliedIndex(); after != before {
				t.Fatalf("a refused publish changed state: applied index %d -> %d", before, after)
			}
		})
	}

	t.Run("root key publishes to a named project", func(t *testing.T) {
		root.send(publishFrame(7, ok(map[string]any{"project_id": e.pid})))
		f := root.mustRead()
		a, err := wire.ParseAck(f.Payload)
		if f.Type != wire.TypeAck || err != nil || f.Seq != 7 || a.Matched != 1 {
			t.Fatalf("%s %+v %v", f.Type, a, err)
		}
		if ev, err := e.st.Event(e.pid, a.EventID); err != nil || ev.ProjectID != e.pid {
			t.Fatalf("event %s: %v %v", a.EventID, ev, err)
		}
	})
	t.Run("root key with a default project", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		if got := r.auth(rootKey, e.otherPID); got.ProjectID != e.otherPID || !got.Root {
			t.Fatalf("AUTH_OK %+v", got)
		}
		r.send(publishFrame(1, map[string]any{"event_type": "x", "data": 1}))
		if f := r.mustRead(); f.Type != wire.TypeAck {
			t.Fatalf("got %s", f.Type)
		}
	})
	t.Run("batch with a malformed item block NACKs every item", func(t *testing.T) {
		payload := binary.BigEndian.AppendUint32(nil, 3)
		payload = append(payload, 0, 0, 0, 50, '{') // item 0 claims 50 bytes
		rc.send(wire.AppendFrame(nil, wire.TypePublishBatch, 0, 500, payload))
		for i := 0; i < 3; i++ {
			f := rc.mustRead()
			p, _ := wire.ParseProblem(f.Payload)
			if f.Type != wire.TypeNack || p.Code != wire.CodeBadFrame {
				t.Fatalf("item %d: %s %v", i, f.Type, p)
			}
		}
	})
	t.Run("corrupt compressed payload", func(t *testing.T) {
		rc.send(wire.AppendFrame(nil, wire.TypePublish, wire.FlagCompressed, 600, []byte{0x10, 0xff, 0xff}))
		f := rc.mustRead()
		if p, _ := wire.ParseProblem(f.Payload); f.Type != wire.TypeNack || f.Seq != 600 || p.Code != wire.CodeBadFrame {
			t.Fatalf("%s %v", f.Type, p)
		}
	})
	t.Run("batch items answered with seq+i in any order", func(t *testing.T) {
		items := [][]byte{}
		for i := 0; i < 5; i++ {
			b, _ := json.Marshal(ok(map[string]any{"data": i}))
			items = append(items, b)
		}
		items[2] = []byte(`{"event_type":""}`)
		rc.send(wire.AppendFrame(nil, wire.TypePublishBatch, 0, 1000, wire.AppendBatch(nil, items...)))
		got := map[uint64]wire.Type{}
		for i := 0; i < 5; i++ {
			f := rc.mustRead()
			got[f.Seq] = f.Type
		}
		for i := uint64(0); i < 5; i++ {
			want := wire.TypeAck
			if i == 2 {
				want = wire.TypeNack
			}
			if got[1000+i] != want {
				t.Fatalf("seq %d: %s, want %s (all: %v)", 1000+i, got[1000+i], want, got)
			}
		}
	})
	// After all that, the first connection still publishes.
	rc.send(publishFrame(9, ok(nil)))
	if f := rc.mustRead(); f.Type != wire.TypeAck || f.Seq != 9 {
		t.Fatalf("after bad input: %s seq %d", f.Type, f.Seq)
	}
}

// TestMalformedStreamsGetErrorAndClose: each broken stream gets an ERROR frame and a closed
// connection, and a good client on another connection is unaffected throughout.
func TestMalformedStreamsGetErrorAndClose(t *testing.T) {
	e := newEnv(t, Config{MaxPublishBytes: 4096, MaxBatch: 16})
	good := dialClient(t, e.addr, client.Options{Key: e.key})
	publishGood := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := good.Publish(ctx, &client.Request{EndpointID: e.ep1, EventType: "x", Data: json.RawMessage(`1`)}); err != nil {
			t.Fatalf("good client: %v", err)
		}
	}
	authJSON := func(key, pid string) []byte {
		b, _ := json.Marshal(wire.Auth{Key: key, ProjectID: pid})
		return wire.AppendFrame(nil, wire.TypeAuth, 0, 0, b)
	}
	hdr := func(length uint32, ver, typ, flags byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, length)
		b = append(b, ver, typ, flags, 0)
		return binary.BigEndian.AppendUint64(b, 1)
	}
	cases := []struct {
		name   string
		authed bool
		send   []byte
		code   wire.Code
	}{
		{"publish before AUTH", false, publishFrame(1, `{}`), wire.CodeAuthRequired},
		{"ping before AUTH", false, wire.AppendFrame(nil, wire.TypePing, 0, 1, nil), wire.CodeAuthRequired},
		{"unknown key", false, authJSON("sk_nope", ""), wire.CodeUnauthorized},
		{"empty key", false, authJSON("", ""), wire.CodeUnauthorized},
		{"project key, other project", false, authJSON(e.key, e.otherPID), wire.CodeForbidden},
		{"AUTH not JSON", false, wire.AppendFrame(nil, wire.TypeAuth, 0, 0, []byte("key=x")), wire.CodeBadRequest},
		{"AUTH twice", true, authJSON(e.key, ""), wire.CodeAuthRequired},
		{"version 2", true, hdr(12, 2, byte(wire.TypePing), 0), wire.CodeUnsupportedVersion},
		{"unknown type", true, hdr(12, 1, 0x7f, 0), wire.CodeUnknownType},
		{"server-only type", true, wire.AppendAck(nil, 1, wire.Ack{EventID: "x"}), wire.CodeUnknownType},
		{"unknown flag", true, hdr(12, 1, byte(wire.TypePublish), 0x80), wire.CodeBadFrame},
		{"length below header", true, hdr(3, 1, byte(wire.TypePing), 0), wire.CodeBadFrame},
		{"oversized length", true, hdr(0x7fffffff, 1, byte(wire.TypePublish), 0), wire.CodeFrameTooLarge},
		{"oversized AUTH", false, hdr(1<<20, 1, byte(wire.TypeAuth), 0), wire.CodeFrameTooLarge},
		{"batch of zero", true, wire.AppendFrame(nil, wire.TypePublishBatch, 0, 1, []byte{0, 0, 0, 0}), wire.CodeBadFrame},
		{"batch over max_batch", true, wire.AppendFrame(nil, wire.TypePublishBatch, 0, 1, []byte{0, 0, 1, 0}), wire.CodeBadFrame},
		{"batch without count", true, wire.AppendFrame(nil, wire.TypePublishBatch, 0, 1, []byte{0, 0}), wire.CodeBadFrame},
		{"HTTP request", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wire.CodeUnsupportedVersion},
		{"garbage", true, []byte{0, 0, 0, 20, 1, 3, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9}, wire.CodeBadFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, e.addr)
			if tc.authed {
				rc.auth(e.key, "")
			}
			rc.send(tc.send)
			rc.expectError(tc.code)
			publishGood()
		})
	}
	t.Run("truncated frame then hang-up", func(t *testing.T) {
		rc := dialRaw(t, e.addr)
		rc.auth(e.key, "")
		f := publishFrame(1, map[string]any{"endpoint_id": e.ep1, "event_type": "x", "data": 1})
		rc.send(f[:len(f)-5])
		rc.nc.(*net.TCPConn).CloseWrite()
		rc.expectClosed()
		publishGood()
	})
	waitFor(t, "only the good connection left", 10*time.Second, func() bool { return e.srv.Stats().Conns == 1 })
}

// TestRandomBytesDoNotHurtOtherConnections throws random bytes at a live server (some after a valid
// AUTH) while a good client publishes, then checks the server still serves a new client.
func TestRandomBytesDoNotHurtOtherConnections(t *testing.T) {
	e := newEnv(t, Config{MaxPublishBytes: 4096})
	good := dialClient(t, e.addr, client.Options{Key: e.key, MaxInFlight: 16})
	stop := make(chan struct{})
	var acked int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := good.Publish(ctx, &client.Request{EndpointID: e.ep1, EventType: "x", Data: json.RawMessage(`1`)})
			cancel()
			if err != nil {
				t.Errorf("good client: %v", err)
				return
			}
			acked++
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	authFrame := func() []byte {
		b, _ := json.Marshal(wire.Auth{Key: e.key})
		return wire.AppendFrame(nil, wire.TypeAuth, 0, 0, b)
	}
	const conns = 150
	for i := 0; i < conns; i++ {
		nc, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		if i%2 == 0 {
			b = authFrame()
		}
		junk := make([]byte, rng.IntN(8192))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		if i%3 == 0 && len(junk) > 8 { // a plausible header in front of the junk
			junk[4], junk[5], junk[6], junk[7] = 1, byte(rng.IntN(10)), 0, 0
		}
		b = append(b, junk...)
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write(b) // the server may already have closed: errors are expected
		if i%5 == 0 {
			nc.(*net.TCPConn).CloseWrite()
			buf := make([]byte, 4096)
			for k := 0; k < 100; k++ { // read until the server closes
				if _, err := nc.Read(buf); err != nil {
					break
				}
			}
		}
		nc.Close()
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	fresh := dialClient(t, e.addr, client.Options{Key: e.key})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := fresh.Publish(ctx, &client.Request{EndpointID: e.ep1, EventType: "x", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "junk connections closed", 15*time.Second, func() bool { return e.srv.Stats().Conns == 2 })
	t.Logf("good client acked %d publishes during the junk; server stats %+v", acked, e.srv.Stats())
}

// TestReconnectResendCreatesNoDuplicates drops every server-side connection several times while a
// client pipelines publishes; the client reconnects and resends what was unanswered with the same
// idempotency keys, and every event exists exactly once.
func TestReconnectResendCreatesNoDuplicates(t *testing.T) {
	e := newEnv(t, Config{})
	cl := dialClient(t, e.addr, client.Options{Key: e.key, MaxInFlight: 512, MaxBatch: 32, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	const n = 3000
	futs := make([]*client.Future, 0, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			futs = append(futs, cl.PublishAsync(&client.Request{EndpointID: e.ep1, EventType: "x", Data: json.RawMessage(fmt.Sprint(i))}))
		}
	}()
	drops := 0
	for _, at := range []uint64{300, 1200, 2200} {
		waitFor(t, fmt.Sprintf("%d acks", at), 30*time.Second, func() bool { return cl.Stats().Acked >= at })
		if st := cl.Stats(); st.InFlight > 0 {
			drops += e.srv.closeAll()
		}
	}
	<-done
	ids := map[string]int{}
	for i, f := range futs {
		ack, err := f.Result()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		ids[ack.EventID]++
	}
	st := cl.Stats()
	if len(ids) != n {
		t.Fatalf("%d distinct event ids for %d publishes", len(ids), n)
	}
	count, byKey := e.countEvents(e.pid)
	if count != n || len(byKey) != n {
		t.Fatalf("%d events stored under %d keys, want %d exactly once each", count, len(byKey), n)
	}
	if drops == 0 || st.Connects < 2 || st.Resent == 0 {
		t.Fatalf("the test did not exercise resends: drops %d, client stats %+v", drops, st)
	}
	t.Logf("dropped %d connections; client stats %+v", drops, st)
}

// TestBackpressurePausesReading: with publishes blocked, a connection is not read past its in-flight
// cap, all connections together not past the global cap, and everything is answered once they
// unblock.
func TestBackpressurePausesReading(t *testing.T) {
	pub := newFakePub()
	s := newFakeServer(t, Config{MaxInFlightPerConn: 8, MaxInFlight: 12, MaxBatch: 4}, pub)
	const conns, per = 3, 40
	rcs := make([]*rawConn, conns)
	for i := range rcs {
		rcs[i] = dialRaw(t, s.Addr().String())
		rcs[i].auth(fmt.Sprintf("k%d", i+1), "")
		var b []byte
		for j := 0; j < per; j++ {
			if j%10 == 0 { // some batches of 4: seq j..j+3
				items := [][]byte{}
				for k := 0; k < 4; k++ {
					items = append(items, []byte(`{"event_type":"x","data":1}`))
				}
				b = append(b, wire.AppendFrame(nil, wire.TypePublishBatch, 0, uint64(j), wire.AppendBatch(nil, items...))...)
				j += 3
				continue
			}
			b = append(b, publishFrame(uint64(j), `{"event_type":"x","data":1}`)...)
		}
		rcs[i].send(b)
	}
	waitFor(t, "the global cap to fill", 10*time.Second, func() bool { cur, _, _, _ := pub.stats(); return cur == 12 })
	waitFor(t, "connections to pause", 10*time.Second, func() bool { return s.Stats().Paused > 0 })
	close(pub.gate)
	for i, rc := range rcs {
		seen := map[uint64]bool{}
		for len(seen) < per {
			f := rc.mustRead()
			if f.Type != wire.TypeAck || seen[f.Seq] {
				t.Fatalf("conn %d: %s seq %d", i, f.Type, f.Seq)
			}
			seen[f.Seq] = true
		}
	}
	_, maxAll, n, maxP := pub.stats()
	if n != conns*per || maxAll > 12 {
		t.Fatalf("%d publishes, max concurrent %d (cap 12)", n, maxAll)
	}
	for p, m := range maxP {
		if m > 8 {
			t.Fatalf("project %s had %d concurrent publishes, per-connection cap 8", p, m)
		}
	}
	if st := s.Stats(); st.InFlight != 0 || st.Acked != conns*per {
		t.Fatalf("stats %+v", st)
	}
}

// TestFloodWhilePausedIsClosed: a connection that keeps sending while paused is closed with
// ERROR overloaded once its unread input passes MaxBufferedBytes; others are unaffected.
func TestFloodWhilePausedIsClosed(t *testing.T) {
	pub := newFakePub()
	defer close(pub.gate)
	s := newFakeServer(t, Config{MaxPublishBytes: 4096, MaxFrameBytes: 8192, MaxBufferedBytes: 64 << 10, MaxInFlightPerConn: 4, MaxBatch: 4}, pub)
	flood := dialRaw(t, s.Addr().String())
	flood.auth("k1", "")
	calm := dialRaw(t, s.Addr().String())
	calm.auth("k2", "")
	body := fmt.Sprintf(`{"event_type":"x","data":%q}`, strings.Repeat("z", 1000))
	flood.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 2000; i++ { // ~2 MB, far past 64 KiB
		if _, err := flood.nc.Write(publishFrame(uint64(i), body)); err != nil {
			break // closed by the server: expected
		}
	}
	var p wire.Problem
	for k := 0; k < 100; k++ { // skip nothing but the ERROR: the 4 in-flight publishes are blocked
		f, err := flood.read()
		if err != nil {
			t.Fatalf("no ERROR before close: %v", err)
		}
		if f.Type == wire.TypeError {
			p, _ = wire.ParseProblem(f.Payload)
			break
		}
	}
	if p.Code != wire.CodeOverloaded {
		t.Fatalf("flood got %v, want overloaded", p)
	}
	calm.send(wire.AppendFrame(nil, wire.TypePing, 0, 5, []byte("hi")))
	if f := calm.mustRead(); f.Type != wire.TypePong || f.Seq != 5 || string(f.Payload) != "hi" {
		t.Fatalf("calm connection: %s", f.Type)
	}
}

// TestPeerThatNeverReadsIsClosed: replies a peer does not read are capped by MaxOutboundBytes.
func TestPeerThatNeverReadsIsClosed(t *testing.T) {
	s := newFakeServer(t, Config{MaxOutboundBytes: 256 << 10}, newFakePub())
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Default socket buffers: shrinking the client's receive buffer only provokes TCP zero-window
	// stalls in the kernel, which hide what the server does.
	rc := &rawConn{t: t, nc: nc}
	b, _ := json.Marshal(wire.Auth{Key: "k1"})
	rc.send(wire.AppendFrame(nil, wire.TypeAuth, 0, 0, b))
	ping := wire.AppendFrame(nil, wire.TypePing, 0, 1, make([]byte, wire.MaxControlPayload))
	burst := make([]byte, 0, 64*len(ping))
	for i := 0; i < 64; i++ {
		burst = append(burst, ping...)
	}
	closed := false
	for i := 0; i < 1024 && !closed; i++ { // at most 256 MiB of pings, never reading a PONG
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(burst); err != nil {
			closed = true
		}
		if s.Stats().ConnErrors > 0 {
			closed = true
		}
	}
	if !closed {
		t.Fatal("the server kept answering a peer that never reads")
	}
	waitFor(t, "the connection to close", 10*time.Second, func() bool { return s.Stats().Conns == 0 })
}

// TestPublisherThatNeverReadsAcksIsClosed: the ACKs written by publish goroutines (gnet's async
// write) are capped the same way.
func TestPublisherThatNeverReadsAcksIsClosed(t *testing.T) {
	pub := newFakePub()
	close(pub.gate) // publishes return at once
	s := newFakeServer(t, Config{MaxOutboundBytes: 64 << 10, MaxBatch: 1024}, pub)
	nc, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rc := &rawConn{t: t, nc: nc}
	b, _ := json.Marshal(wire.Auth{Key: "k1"})
	rc.send(wire.AppendFrame(nil, wire.TypeAuth, 0, 0, b))
	items := make([][]byte, 1024)
	for i := range items {
		items[i] = []byte(`{"event_type":"x","data":1}`)
	}
	closed := false
	for i := 0; i < 2000 && !closed; i++ { // up to 2M publishes (~100 MB of ACKs), never reading one
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(wire.AppendFrame(nil, wire.TypePublishBatch, 0, uint64(i)*1024, wire.AppendBatch(nil, items...))); err != nil {
			closed = true
		}
		if s.Stats().ConnErrors > 0 {
			closed = true
		}
	}
	if !closed {
		t.Fatal("the server kept queueing ACKs for a peer that never reads")
	}
	waitFor(t, "the connection to close", 10*time.Second, func() bool { return s.Stats().Conns == 0 })
	waitFor(t, "in-flight publishes to finish", 10*time.Second, func() bool { return s.Stats().InFlight == 0 })
}

// TestAuthAndIdleTimeouts: a connection that never authenticates and an authenticated slowloris
// that never completes a frame are closed by the reaper, on the injected clock.
func TestAuthAndIdleTimeouts(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	s := newFakeServer(t, Config{AuthTimeout: 4 * time.Second, IdleTimeout: 20 * time.Second, Clock: clk}, newFakePub())
	silent := dialRaw(t, s.Addr().String())
	silent.send([]byte{0, 0, 0}) // three bytes of a header, then nothing
	slow := dialRaw(t, s.Addr().String())
	slow.auth("k1", "")
	f := publishFrame(1, `{"event_type":"x","data":1}`)
	slow.send(f[:20])
	waitFor(t, "two connections", 10*time.Second, func() bool { return s.Stats().Conns == 2 })
	if !clk.WaitTimers(1, 10*time.Second) {
		t.Fatal("the reaper never armed its timer")
	}
	clk.Advance(5 * time.Second)
	silent.expectError(wire.CodeAuthTimeout)
	if !clk.WaitTimers(1, 10*time.Second) {
		t.Fatal("the reaper did not re-arm")
	}
	if st := s.Stats(); st.Conns != 1 {
		t.Fatalf("the slow connection was closed before its idle timeout: %+v", st)
	}
	clk.Advance(21 * time.Second)
	slow.expectError(wire.CodeIdleTimeout)
}

// TestStopDrainsAndLeavesNoGoroutines: Stop answers in-flight publishes, says goodbye, and every
// goroutine the server started is gone.
func TestStopDrainsAndLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	pub := newFakePub()
	cfg := Config{Addr: "127.0.0.1:0", Logger: quiet, EventLoops: 2}
	s, err := NewServer(cfg, pub, fakeAuth{"k1": {Role: "project", ProjectID: fakePID(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, s.Addr().String())
	rc.auth("k1", "")
	for i := 0; i < 5; i++ {
		rc.send(publishFrame(uint64(i), `{"event_type":"x","data":1}`))
	}
	waitFor(t, "publishes in flight", 10*time.Second, func() bool { cur, _, _, _ := pub.stats(); return cur == 5 })
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	waitFor(t, "stopping", 10*time.Second, func() bool { return s.stopping.Load() })
	close(pub.gate)
	acks := 0
	for {
		f := rc.mustRead()
		if f.Type == wire.TypeAck {
			acks++
			continue
		}
		p, _ := wire.ParseProblem(f.Payload)
		if f.Type != wire.TypeError || p.Code != wire.CodeShuttingDown {
			t.Fatalf("got %s %v", f.Type, p)
		}
		break
	}
	if acks != 5 {
		t.Fatalf("%d of 5 in-flight publishes acknowledged before shutdown", acks)
	}
	rc.expectClosed()
	<-stopped
	rc.nc.Close()
	waitFor(t, "goroutines to exit", 10*time.Second, func() bool { return runtime.NumGoroutine() <= base+1 })
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still open after Stop")
	}
}
