package netpool

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sync"
	"testing"
)

var (
	ip1 = netip.MustParseAddr("127.0.0.1")
	ip2 = netip.MustParseAddr("127.0.0.2")
	ip3 = netip.MustParseAddr("127.0.0.3")
)

// connCounter counts the server's connections through its ConnState hook.
type connCounter struct {
	mu       sync.Mutex // guards newConns
	newConns int
	closed   chan string // remote address of each closed connection; buffered
}

func (c *connCounter) hook(conn net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.mu.Lock()
		c.newConns++
		c.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		select {
		case c.closed <- conn.RemoteAddr().String():
		default:
		}
	}
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.newConns
}

// newSink starts an HTTP/1.1 server on 127.0.0.1 (httptest's address) that counts its connections.
func newSink(t testing.TB, h http.Handler) (*httptest.Server, *connCounter) {
	t.Helper()
	cc := &connCounter{closed: make(chan string, 1024)}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = cc.hook
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cc
}

// stdlibHTTP1 makes newPool send plain http through net/http: TestStdlibHTTP1 reruns tests with it.
var stdlibHTTP1 bool

func newPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	cfg.StdlibHTTP1 = cfg.StdlibHTTP1 || stdlibHTTP1
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// remoteIP answers with the source IP the server saw, so tests can check the egress binding.
func remoteIP(w http.ResponseWriter, r *http.Request) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Write([]byte(ap.Addr().String()))
}

func do(t testing.TB, p *Pool, req *Request) *Response {
	t.Helper()
	res := p.Do(context.Background(), req)
	if res == nil {
		t.Fatal("Do returned nil")
	}
	return res
}

type runtimeMem struct{ totalAlloc uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.totalAlloc = s.TotalAlloc
}
