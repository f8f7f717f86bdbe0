package dispatcher

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/netpool"
	"github.com/sluice-gw/sluice/raftstore"
)

// engineEnv is a real store, a real engine and real HTTP sinks on 127.0.0.1.
type engineEnv struct {
	t      testing.TB
	dir    string
	st     *raftstore.Store
	eng    *Engine
	cancel context.CancelFunc
	done   chan struct{}
	pid    string
	mod    func(*EngineConfig)
	now    func() time.Time // the engine's clock: ids and due times come from it
}

func freeRaftAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startEngine(t testing.TB, dir string, mod func(*EngineConfig)) *engineEnv {
	t.Helper()
	e := &engineEnv{t: t, dir: dir, mod: mod}
	var eng atomic.Pointer[Engine]
	st, err := raftstore.Open(raftstore.Config{
		DataDir: dir, RaftAddr: freeRaftAddr(t), Bootstrap: true, FastElections: true,
		Observe: func(ef raftstore.Effects) {
			if x := eng.Load(); x != nil {
				x.Observe(ef)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	pcfg := netpool.DefaultConfig()
	pcfg.StdlibHTTP1 = *egressStdlib
	pool, err := netpool.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := EngineConfig{}
	cfg.Dispatcher.Rand = func() float64 { return 0.5 }
	if mod != nil {
		mod(&cfg)
	}
	e.now = time.Now
	if cfg.Dispatcher.Clock != nil {
		e.now = cfg.Dispatcher.Clock.Now
	}
	x, err := NewEngine(cfg, st, pool)
	if err != nil {
		t.Fatal(err)
	}
	eng.Store(x)
	x.SetActive(true)
	x.SetLeader(true)
	rctx, rcancel := context.WithCancel(context.Background())
	e.st, e.eng, e.cancel, e.done = st, x, rcancel, make(chan struct{})
	go func() { defer close(e.done); x.Run(rctx) }()
	t.Cleanup(e.stop)
	return e
}

func (e *engineEnv) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.st.Close()
	e.cancel = nil
}

func (e *engineEnv) propose(typ raftstore.CmdType, body any, blob []byte) raftstore.Result {
	e.t.Helper()
	c, err := raftstore.NewCommand(typ, body, blob)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := e.st.Propose(context.Background(), c)
	if err == nil {
		err = r.Err
	}
	if err != nil {
		e.t.Fatalf("propose %s: %v", typ, err)
	}
	return r
}

func (e *engineEnv) project() string {
	now := time.Now().UTC()
	e.pid = model.NewID(now)
	h := sha256.Sum256([]byte("k" + e.pid))
	e.propose(raftstore.CmdPutProject, raftstore.PutProject{Create: true,
		Project: model.Project{UID: e.pid, Name: "p", Type: model.ProjectOutgoing, CreatedAt: now},
		Key:     &model.APIKey{UID: model.NewID(now), Hash: h[:], Role: model.RoleProject}}, nil)
	return e.pid
}

func (e *engineEnv) endpoint(url string, mod func(*model.Endpoint)) string {
	now := time.Now().UTC()
	ep := model.Endpoint{UID: model.NewID(now), ProjectID: e.pid, URL: url, Status: model.EndpointActive,
		Secrets: []model.Secret{{UID: model.NewID(now), Value: "s3cret"}}, CreatedAt: now}
	if mod != nil {
		mod(&ep)
	}
	e.propose(raftstore.CmdPutEndpoint, raftstore.PutEndpoint{Endpoint: ep, Create: true}, nil)
	return ep.UID
}

func (e *engineEnv) publish(eid string, data string) (evid, did string) {
	now := e.now().UTC()
	ev := model.Event{UID: model.NewID(now), ProjectID: e.pid, EventType: "invoice.paid", EndpointID: eid,
		Headers: map[string]string{"X-Custom": "c"}, CreatedAt: now}
	did = model.NewID(now)
	e.propose(raftstore.CmdPublish, raftstore.Publish{Event: ev, Targets: []raftstore.Target{{EndpointID: eid, DeliveryID: did}}},
		raftstore.CompressData([]byte(data)))
	return ev.UID, did
}

// waitDelivery polls until the delivery reaches a status accepted by ok, or fails after a deadline.
func (e *engineEnv) waitDelivery(did string, what string, ok func(*model.Delivery) bool) *model.Delivery {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := e.st.Delivery(e.pid, did)
		if err == nil && ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("delivery %s never became %s: last %+v %v", did, what, d, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for state
	}
}

type recSink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func newRecSink(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *recSink {
	s := &recSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.body = append(s.body, b)
		n := len(s.reqs)
		s.mu.Unlock()
		if h != nil {
			h(n, w, r)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

func TestEngineDeliversSignedBodyByteForByte(t *testing.T) {
	e := startEngine(t, t.TempDir(), nil)
	e.project()
	sk := newRecSink(t, nil)
	eid := e.endpoint(sk.srv.URL+"/hook", nil)
	data := `{"amount":  10, "x": "<&>"}`
	evid, did := e.publish(eid, data)
	d := e.waitDelivery(did, "success", func(d *model.Delivery) bool { return d.Status == model.StatusSuccess })
	if d.Attempts != 1 || sk.count() != 1 {
		t.Fatalf("attempts %d, sink saw %d requests; want 1 and 1", d.Attempts, sk.count())
	}
	r, body := sk.reqs[0], sk.body[0]
	if string(body) != data {
		t.Fatalf("sink got body %q, want %q", body, data)
	}
	for h, want := range map[string]string{
		HeaderDeliveryID: did, HeaderEventID: evid, HeaderEventType: "invoice.paid",
		"Content-Type": "application/json", "X-Custom": "c", HeaderSignature: SignHex("s3cret", []byte(data)),
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	as, _ := e.st.Attempts(e.pid, did)
	if len(as) != 1 || as[0].StatusCode != 200 || as[0].RequestHeaders.Get(HeaderSignature) == "" {
		t.Fatalf("attempt log = %+v", as)
	}
}

func TestEngineRetriesThenFails(t *testing.T) {
	e := startEngine(t, t.TempDir(), nil)
	e.project()
	sk := newRecSink(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500); fmt.Fprint(w, "boom") })
	eid := e.endpoint(sk.srv.URL, func(ep *model.Endpoint) {
		ep.Strategy = &model.RetryStrategy{Type: "linear", Duration: 0, RetryCount: 2}
	})
	// Duration 0 maps to a 10 s interval: make retries immediate by resending instead of waiting.
	_ = eid
	ep := e.st.Endpoint(e.pid, eid)
	_ = ep
	_, did := e.publish(eid, `{}`)
	d := e.waitDelivery(did, "retry", func(d *model.Delivery) bool { return d.Status == model.StatusRetry })
	if d.Attempts != 1 || d.LastStatus != 500 {
		t.Fatalf("after first failure: %+v", d)
	}
	as, _ := e.st.Attempts(e.pid, did)
	if len(as) != 1 || as[0].ResponseBody != "boom" {
		t.Fatalf("attempt log = %+v", as)
	}
}

func raftstorePutEndpoint(ep model.Endpoint) (raftstore.CmdType, any, []byte) {
	return raftstore.CmdPutEndpoint, raftstore.PutEndpoint{Endpoint: ep}, nil
}
