package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

var quiet = slog.New(slog.DiscardHandler)

const rootKey = "sk_test_root"

// memQueue is a fake broker: an in-memory queue with per-message acks and redelivery of whatever
// was not acknowledged when a consumer stops. Guarded by mu.
type memQueue struct {
	mu       sync.Mutex
	msgs     []Message
	acked    map[string]bool
	inFlight map[string]bool
	dlq      []Message
	// forgetAcks drops the next n acknowledgements, as a crash between commit and ack would.
	forgetAcks int
	opens      atomic.Int32
	runs       atomic.Int32 // consumers currently in Run
}

func newMemQueue() *memQueue {
	return &memQueue{acked: map[string]bool{}, inFlight: map[string]bool{}}
}

func (q *memQueue) push(ms ...Message) {
	q.mu.Lock()
	q.msgs = append(q.msgs, ms...)
	q.mu.Unlock()
}

func (q *memQueue) ackedCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.acked)
}

// memDriver serves every source from one memQueue.
type memDriver struct{ q *memQueue }

func (d memDriver) Check(src *model.Source) error {
	if src.Broker.Kafka == nil || len(src.Broker.Kafka.Topics) == 0 {
		return errors.New("kafka.topics: required")
	}
	return nil
}

func (d memDriver) Open(src *model.Source, log *slog.Logger) (Consumer, error) {
	d.q.opens.Add(1)
	return memConsumer{d.q}, nil
}

type memConsumer struct{ q *memQueue }

func (c memConsumer) Run(ctx context.Context, h Handler) error {
	c.q.runs.Add(1)
	defer c.q.runs.Add(-1)
	for {
		c.q.mu.Lock()
		var batch []Message
		for _, m := range c.q.msgs {
			if !c.q.acked[m.ID] && !c.q.inFlight[m.ID] && len(batch) < 10 {
				batch = append(batch, m)
				c.q.inFlight[m.ID] = true
			}
		}
		c.q.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Millisecond): // a broker's poll interval
				continue
			}
		}
		h.SetLag(int64(len(batch)))
		vs, err := h.Process(ctx, batch)
		c.q.mu.Lock()
		for i, m := range batch {
			delete(c.q.inFlight, m.ID)
			if err != nil {
				continue
			}
			if vs[i].Rejected {
				c.q.dlq = append(c.q.dlq, m)
			}
			if c.q.forgetAcks > 0 {
				c.q.forgetAcks--
				continue
			}
			c.q.acked[m.ID] = true
		}
		c.q.mu.Unlock()
		if err != nil {
			return nil
		}
	}
}

// env is a real single-node store and the REST API over it, with one outgoing project, a paused
// endpoint (deliveries stay scheduled, so nothing leaves the process) and a broker source.
type env struct {
	t       *testing.T
	st      *raftstore.Store
	api     *api.Server
	q       *memQueue
	pid, ep string
	src     string
	leading atomic.Bool
	pub     *flakyPublisher
	clock   *clock.Fake
	mgr     *Manager
}

// flakyPublisher fails the first failures publishes with an error that is Sluice's, not the
// message's, as a lost leadership would.
type flakyPublisher struct {
	*api.Server
	failures atomic.Int32
}

func (f *flakyPublisher) Publish(ctx context.Context, pid string, in *api.PublishRequest) (*api.Published, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, raftstore.ErrNotLeader
	}
	return f.Server.Publish(ctx, pid, in)
}

func newEnv(t *testing.T) *env {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	st, err := raftstore.Open(raftstore.Config{DataDir: t.TempDir(), RaftAddr: addr, Bootstrap: true, FastElections: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := api.EnsureRootKey(ctx, st, rootKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, q: newMemQueue(), clock: clock.NewFake(time.Now())}
	reg := Registry{model.SourceKafka: memDriver{e.q}}
	e.api = api.New(st, api.Config{Logger: quiet, Brokers: reg})
	e.pub = &flakyPublisher{Server: e.api}
	e.pid = e.field(e.do("POST", "/projects", map[string]any{"name": "p"}, 201), "uid")
	e.ep = e.field(e.do("POST", "/projects/"+e.pid+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/x", "status": "paused"}, 201), "uid")
	e.src = e.field(e.do("POST", "/projects/"+e.pid+"/sources", map[string]any{"name": "orders", "type": "kafka",
		"broker": map[string]any{"event_type": "order.created", "endpoint_id": e.ep, "kafka": map[string]any{"brokers": []string{"127.0.0.1:9092"}, "topics": []string{"orders"}}}}, 201), "uid")
	e.leading.Store(true)
	e.mgr = NewManager(Config{Registry: reg, Sources: st.BrokerSources, Leading: e.leading.Load, Publisher: e.pub,
		Clock: e.clock, Logger: quiet, MaxPublishBytes: 4096})
	mctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.mgr.Run(mctx) }()
	t.Cleanup(func() { stop(); <-done })
	return e
}

func (e *env) do(method, path string, body any, want int) json.RawMessage {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, "/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+rootKey)
	w := httptest.NewRecorder()
	e.api.Handler().ServeHTTP(w, req)
	var out struct {
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	json.Unmarshal(w.Body.Bytes(), &out)
	if w.Code != want {
		e.t.Fatalf("%s %s = %d %q, want %d", method, path, w.Code, out.Message, want)
	}
	return out.Data
}

func (e *env) field(raw json.RawMessage, name string) string {
	var m map[string]any
	json.Unmarshal(raw, &m)
	return fmt.Sprint(m[name])
}

// waitFor polls cond until it holds, advancing the fake clock so backoffs elapse.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		e.clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond) // polling interval
	}
}

func (e *env) events() map[string]int {
	byKey := map[string]int{}
	cursor := ""
	for {
		evs, next, err := e.st.ListEvents(e.pid, raftstore.EventFilter{Page: raftstore.Page{Limit: 1000, Cursor: cursor}})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range evs {
			byKey[ev.IdempotencyKey]++
		}
		if next == "" {
			return byKey
		}
		cursor = next
	}
}

func (e *env) stats() SourceStats {
	for _, s := range e.mgr.Stats() {
		if s.SourceID == e.src {
			return s
		}
	}
	return SourceStats{}
}

func msgs(from, to int) []Message {
	var out []Message
	for i := from; i < to; i++ {
		out = append(out, Message{ID: fmt.Sprintf("orders/0/%d", i), Body: fmt.Appendf(nil, `{"i":%d}`, i)})
	}
	return out
}

func TestMessagesBecomeEventsAndAreAckedAfterCommit(t *testing.T) {
	e := newEnv(t)
	e.q.push(msgs(0, 40)...)
	e.q.push(Message{ID: "bad-json", Body: []byte(`{"i":`)},
		Message{ID: "bad-endpoint", Body: []byte(`{}`), Headers: map[string]string{HeaderEndpointID: "01J00000000000000000000009"}})
	e.q.push(msgs(40, 60)...)
	e.waitFor("every message acknowledged", func() bool { return e.q.ackedCount() == 62 })

	evs := e.events()
	if len(evs) != 60 {
		t.Fatalf("%d events for 60 good messages", len(evs))
	}
	for i := 0; i < 60; i++ {
		if k := MessageKey(&model.Source{UID: e.src}, fmt.Sprintf("orders/0/%d", i)); evs[k] != 1 {
			t.Errorf("message %d: %d events under key %s", i, evs[k], k)
		}
	}
	letters, err := e.st.DeadLetters(e.pid, e.src, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, l := range letters {
		reasons[l.MessageID] = l.Reason
	}
	if len(letters) != 2 || reasons["bad-json"] == "" || reasons["bad-endpoint"] == "" {
		t.Fatalf("dead letters %v, want bad-json and bad-endpoint", reasons)
	}
	if len(e.q.dlq) != 2 {
		t.Errorf("%d messages handed to the broker's dead-letter path, want 2", len(e.q.dlq))
	}
	s := e.stats()
	if s.Published != 60 || s.DeadLettered != 2 || !s.Running {
		t.Errorf("stats %+v", s)
	}
}

func TestRedeliveredMessagesDoNotDuplicateEvents(t *testing.T) {
	e := newEnv(t)
	// The first 25 acknowledgements are lost, as after a crash between commit and ack: the queue
	// hands those messages out again.
	e.q.mu.Lock()
	e.q.forgetAcks = 25
	e.q.mu.Unlock()
	e.q.push(msgs(0, 50)...)
	e.waitFor("every message acknowledged", func() bool { return e.q.ackedCount() == 50 })
	evs := e.events()
	if len(evs) != 50 {
		t.Fatalf("%d events for 50 messages", len(evs))
	}
	for k, n := range evs {
		if n != 1 {
			t.Errorf("%s: %d events", k, n)
		}
	}
	if s := e.stats(); s.Published != 50 || s.Duplicates != 25 {
		t.Errorf("published %d duplicates %d, want 50 and 25", s.Published, s.Duplicates)
	}
}

func TestPublishesSluiceCannotCommitAreRetriedNotAcked(t *testing.T) {
	e := newEnv(t)
	e.pub.failures.Store(30)
	e.q.push(msgs(0, 20)...)
	e.waitFor("every message acknowledged", func() bool { return e.q.ackedCount() == 20 })
	if s := e.stats(); s.Retries == 0 || s.Published != 20 || s.DeadLettered != 0 {
		t.Errorf("stats %+v: want retries, 20 published, none dead-lettered", s)
	}
	if n := len(e.events()); n != 20 {
		t.Errorf("%d events for 20 messages", n)
	}
}

func TestConsumersFollowLeadershipAndSourceChanges(t *testing.T) {
	e := newEnv(t)
	e.waitFor("a consumer on the leader", func() bool { return e.q.runs.Load() == 1 })

	e.leading.Store(false)
	e.mgr.Poke()
	e.waitFor("no consumer once not leading", func() bool { return e.q.runs.Load() == 0 })
	e.q.push(msgs(0, 5)...)
	e.leading.Store(true)
	e.mgr.Poke()
	e.waitFor("the consumer back", func() bool { return e.q.runs.Load() == 1 && e.q.ackedCount() == 5 })

	opens := e.q.opens.Load()
	e.do("PUT", "/projects/"+e.pid+"/sources/"+e.src, map[string]any{"broker": map[string]any{"event_type": "order.updated",
		"endpoint_id": e.ep, "kafka": map[string]any{"brokers": []string{"127.0.0.1:9092"}, "topics": []string{"orders"}}}}, 202)
	e.mgr.Poke()
	e.waitFor("a restart with the new settings", func() bool { return e.q.opens.Load() > opens && e.q.runs.Load() == 1 })

	e.do("DELETE", "/projects/"+e.pid+"/sources/"+e.src, nil, 200)
	e.mgr.Poke()
	e.waitFor("no consumer for a deleted source", func() bool { return e.q.runs.Load() == 0 && len(e.mgr.Stats()) == 0 })
}

func TestBrokerSourceValidation(t *testing.T) {
	e := newEnv(t)
	kafka := map[string]any{"brokers": []string{"127.0.0.1:9092"}, "topics": []string{"t"}}
	cases := []struct {
		name string
		body map[string]any
	}{
		{"no broker settings", map[string]any{"name": "x", "type": "kafka"}},
		{"no section", map[string]any{"name": "x", "type": "kafka", "broker": map[string]any{}}},
		{"two sections", map[string]any{"name": "x", "type": "kafka", "broker": map[string]any{"kafka": kafka, "nats": map[string]any{}}}},
		{"driver refuses", map[string]any{"name": "x", "type": "kafka", "broker": map[string]any{"kafka": map[string]any{"brokers": []string{"a"}}}}},
		{"type without a driver", map[string]any{"name": "x", "type": "sqs", "broker": map[string]any{"sqs": map[string]any{}}}},
		{"unknown type", map[string]any{"name": "x", "type": "carrier-pigeon"}},
		{"bad body mode", map[string]any{"name": "x", "type": "kafka", "broker": map[string]any{"body": "xml", "kafka": kafka}}},
		{"both targets", map[string]any{"name": "x", "type": "kafka", "broker": map[string]any{"endpoint_id": e.ep, "owner_id": "o", "kafka": kafka}}},
		{"verifier on a broker source", map[string]any{"name": "x", "type": "kafka", "verifier": map[string]any{"type": "hmac", "hmac": map[string]any{"secret": "s"}}, "broker": map[string]any{"kafka": kafka}}},
		{"http source in an outgoing project", map[string]any{"name": "x", "type": "http"}},
		{"negative workers", map[string]any{"name": "x", "type": "kafka", "broker": map[string]any{"workers": -1, "kafka": kafka}}},
	}
	before := len(e.st.BrokerSources())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { e.do("POST", "/projects/"+e.pid+"/sources", c.body, 400) })
	}
	if after := len(e.st.BrokerSources()); after != before {
		t.Errorf("refused creates changed the sources: %d -> %d", before, after)
	}
	// The type of a source cannot change.
	e.do("PUT", "/projects/"+e.pid+"/sources/"+e.src, map[string]any{"type": "nats"}, 400)
}

func TestBrokerSecretsAreRedactedAndKept(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"name": "sasl", "type": "kafka", "broker": map[string]any{"event_type": "a", "kafka": map[string]any{
		"brokers": []string{"127.0.0.1:9092"}, "topics": []string{"t"}, "sasl": map[string]any{"mechanism": "plain", "username": "u", "password": "hunter2"}}}}
	raw := e.do("POST", "/projects/"+e.pid+"/sources", body, 201)
	if bytes.Contains(raw, []byte("hunter2")) {
		t.Fatalf("secret in the API response: %s", raw)
	}
	var out model.Source
	json.Unmarshal(raw, &out)
	// Sending back what was read keeps the stored secret.
	e.do("PUT", "/projects/"+e.pid+"/sources/"+out.UID, map[string]any{"broker": out.Broker}, 202)
	if got := e.st.Source(e.pid, out.UID).Broker.Kafka.SASL.Password; got != "hunter2" {
		t.Errorf("stored password %q after an update with the redacted value", got)
	}
}
