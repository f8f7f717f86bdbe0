package ingest

import (
	"bufio"
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
	"testing"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

var quiet = slog.New(slog.DiscardHandler)

const rootKey = "sk_test_root"

// env is a real single-node store, the REST API and a TCP ingest server over it, in-process.
type env struct {
	t        testing.TB
	dir      string
	raftAddr string
	cfg      Config
	st       *raftstore.Store
	api      *api.Server
	srv      *Server
	addr     string
	// A project with a project key and endpoints: ep1 (owner a), ep2 (owner a), ep3 (owner b),
	// subscribed to "*" only ep3.
	pid, key, ep1, ep2, ep3 string
	// Another project.
	otherPID string
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), raftAddr: freeAddr(t), cfg: cfg}
	e.open()
	t.Cleanup(e.close)
	r := e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "shop"}, 201)
	e.pid, e.key = field(t, r, "uid"), field(t, r, "api_key", "key")
	mk := func(owner string) string {
		r := e.mustDo("POST", "/projects/"+e.pid+"/endpoints", e.key, map[string]any{"url": "http://127.0.0.1:9/" + owner, "owner_id": owner}, 201)
		return field(t, r, "uid")
	}
	e.ep1, e.ep2, e.ep3 = mk("a"), mk("a"), mk("b")
	e.mustDo("POST", "/projects/"+e.pid+"/subscriptions", e.key, map[string]any{"endpoint_id": e.ep3}, 201)
	r = e.mustDo("POST", "/projects", rootKey, map[string]any{"name": "other"}, 201)
	e.otherPID = field(t, r, "uid")
	return e
}

// open opens the store in e.dir and starts the API and the TCP server.
func (e *env) open() {
	t := e.t
	st, err := raftstore.Open(raftstore.Config{DataDir: e.dir, RaftAddr: e.raftAddr, Bootstrap: true, FastElections: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		st.Close()
		t.Fatal(err)
	}
	if _, err := api.EnsureRootKey(ctx, st, rootKey, time.Now()); err != nil {
		st.Close()
		t.Fatal(err)
	}
	e.st = st
	e.api = api.New(st, api.Config{MaxPayloadBytes: 64 << 10, Logger: quiet})
	cfg := e.cfg
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quiet
	if cfg.MaxPublishBytes == 0 {
		cfg.MaxPublishBytes = 64 << 10
	}
	srv, err := NewServer(cfg, e.api, e.api)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		st.Close()
		t.Fatal(err)
	}
	e.srv, e.addr = srv, srv.Addr().String()
}

func (e *env) close() {
	if e.srv != nil {
		e.srv.Stop()
		e.srv = nil
	}
	if e.st != nil {
		if err := e.st.Close(); err != nil {
			e.t.Errorf("close store: %v", err)
		}
		e.st = nil
	}
}

// restart closes everything and reopens the store on the same data directory.
func (e *env) restart() {
	e.close()
	e.open()
}

func (e *env) do(method, path, key string, body any) (int, json.RawMessage, string) {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, "/api/v1"+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	e.api.Handler().ServeHTTP(w, req)
	var env struct {
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	json.Unmarshal(w.Body.Bytes(), &env)
	return w.Code, env.Data, env.Message
}

func (e *env) mustDo(method, path, key string, body any, want int) json.RawMessage {
	e.t.Helper()
	code, data, msg := e.do(method, path, key, body)
	if code != want {
		e.t.Fatalf("%s %s = %d %q, want %d", method, path, code, msg, want)
	}
	return data
}

func field(t testing.TB, raw json.RawMessage, path ...string) string {
	t.Helper()
	var v any
	json.Unmarshal(raw, &v)
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %q in %s", p, raw)
		}
		v = m[p]
	}
	return fmt.Sprint(v)
}

// countEvents pages through a project's events.
func (e *env) countEvents(pid string) (int, map[string]int) {
	e.t.Helper()
	byKey := map[string]int{}
	n, cursor := 0, ""
	for pages := 0; pages < 10000; pages++ {
		evs, next, err := e.st.ListEvents(pid, raftstore.EventFilter{Page: raftstore.Page{Limit: 1000, Cursor: cursor}})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range evs {
			byKey[ev.IdempotencyKey]++
		}
		n += len(evs)
		if next == "" {
			return n, byKey
		}
		cursor = next
	}
	e.t.Fatal("more than 10000 pages of events")
	return 0, nil
}

// rawConn speaks the protocol by hand, for malformed input.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) send(b []byte) {
	r.t.Helper()
	r.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read returns the next frame, or an error (io.EOF when the server closed).
func (r *rawConn) read() (wire.Frame, error) {
	r.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	hdr := make([]byte, wire.HeaderLen)
	if _, err := io.ReadFull(r.br, hdr); err != nil {
		return wire.Frame{}, err
	}
	h, err := wire.ParseHeader(hdr, 0)
	if err != nil {
		return wire.Frame{}, err
	}
	p := make([]byte, h.PayloadLen)
	if _, err := io.ReadFull(r.br, p); err != nil {
		return wire.Frame{}, err
	}
	return wire.Frame{Header: h, Payload: p}, nil
}

func (r *rawConn) mustRead() wire.Frame {
	r.t.Helper()
	f, err := r.read()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return f
}

func (r *rawConn) auth(key, project string) wire.AuthOK {
	r.t.Helper()
	b, _ := json.Marshal(wire.Auth{Key: key, ProjectID: project})
	r.send(wire.AppendFrame(nil, wire.TypeAuth, 0, 0, b))
	f := r.mustRead()
	if f.Type != wire.TypeAuthOK {
		p, _ := wire.ParseProblem(f.Payload)
		r.t.Fatalf("AUTH answered with %s %v", f.Type, p)
	}
	var ok wire.AuthOK
	json.Unmarshal(f.Payload, &ok)
	return ok
}

// expectError reads until an ERROR frame (skipping nothing else) and then requires the connection to
// be closed.
func (r *rawConn) expectError(code wire.Code) wire.Problem {
	r.t.Helper()
	f := r.mustRead()
	if f.Type != wire.TypeError {
		r.t.Fatalf("got %s, want ERROR %s", f.Type, code)
	}
	p, err := wire.ParseProblem(f.Payload)
	if err != nil || p.Code != code {
		r.t.Fatalf("ERROR %v (%v), want code %s", p, err, code)
	}
	r.expectClosed()
	return p
}

func (r *rawConn) expectClosed() {
	r.t.Helper()
	if f, err := r.read(); err == nil {
		r.t.Fatalf("connection still open: got %s", f.Type)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		r.t.Fatalf("want the server to close, got %v", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func publishFrame(seq uint64, body any) []byte {
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	return wire.AppendFrame(nil, wire.TypePublish, 0, seq, b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for i := 0; ; i++ {
		if cond() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond * time.Duration(min(1+i, 20)))
	}
}

// fakeAuth maps keys to key records.
type fakeAuth map[string]*model.APIKey

func (f fakeAuth) Authenticate(k string) *model.APIKey { return f[k] }

// fakePub blocks every publish until gate is closed and records concurrency per project.
type fakePub struct {
	gate chan struct{}
	mu   sync.Mutex // guards the fields below
	cur  int
	max  int
	per  map[string]int
	maxP map[string]int
	n    int
}

func newFakePub() *fakePub {
	return &fakePub{gate: make(chan struct{}), per: map[string]int{}, maxP: map[string]int{}}
}

func (f *fakePub) Publish(ctx context.Context, pid string, in *api.PublishRequest) (*api.Published, error) {
	f.mu.Lock()
	f.cur++
	f.per[pid]++
	f.max = max(f.max, f.cur)
	f.maxP[pid] = max(f.maxP[pid], f.per[pid])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.cur--
		f.per[pid]--
		f.n++
		f.mu.Unlock()
	}()
	select {
	case <-f.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &api.Published{Event: &model.Event{UID: model.NewID(time.Now())}, Matched: 1}, nil
}

func (f *fakePub) stats() (cur, max, n int, maxP map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]int{}
	for k, v := range f.maxP {
		m[k] = v
	}
	return f.cur, f.max, f.n, m
}

// newFakeServer starts a server with fake dependencies: keys "k1".."k3" for projects P1..P3 and
// the root key.
func newFakeServer(t testing.TB, cfg Config, pub Publisher) *Server {
	t.Helper()
	auth := fakeAuth{rootKey: {Role: model.RoleRoot}}
	for i := 1; i <= 3; i++ {
		auth[fmt.Sprintf("k%d", i)] = &model.APIKey{Role: model.RoleProject, ProjectID: fakePID(i)}
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quiet
	s, err := NewServer(cfg, pub, auth)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func fakePID(i int) string { return fmt.Sprintf("01JD000000000000000000000%d", i) }
