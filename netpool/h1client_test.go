package netpool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStdlibHTTP1 runs the plain-http tests again with Config.StdlibHTTP1, so both clients are held to
// the same expectations.
func TestStdlibHTTP1(t *testing.T) {
	stdlibHTTP1 = true
	t.Cleanup(func() { stdlibHTTP1 = false })
	for _, tt := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Egress", TestEgress}, {"RequestAsSent", TestRequestAsSent}, {"KeepAlive", TestKeepAlive},
		{"BodyCap", TestBodyCap}, {"Errors", TestErrors}, {"Close", TestClose}, {"GuardAtDial", TestGuardAtDial},
		{"RawResponses", TestRawResponses},
	} {
		t.Run(tt.name, tt.run)
	}
}

// TestLeanPathChosen checks which client each kind of attempt takes: a regression would silently
// measure the wrong one.
func TestLeanPathChosen(t *testing.T) {
	srv, _ := newSink(t, http.HandlerFunc(remoteIP))
	for _, tt := range []struct {
		name     string
		cfg      Config
		wantLean bool
	}{
		{"default", Config{}, true},
		{"StdlibHTTP1", Config{StdlibHTTP1: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, tt.cfg)
			if res := do(t, p, &Request{URL: srv.URL}); res.Err != nil {
				t.Fatalf("Do: %v", res.Err)
			}
			if got := leanHosts(p) > 0; got != tt.wantLean {
				t.Fatalf("lean client used: %v, want %v", got, tt.wantLean)
			}
		})
	}
}

func leanHosts(p *Pool) int {
	n := 0
	for _, e := range p.all {
		e.hostsMu.RLock()
		n += len(e.hosts)
		e.hostsMu.RUnlock()
	}
	return n
}

// leanIdle reports the idle lean connections of p.
func leanIdle(p *Pool) int {
	n := 0
	for _, e := range p.all {
		e.hostsMu.RLock()
		for _, h := range e.hosts {
			n += h.idleCount()
		}
		e.hostsMu.RUnlock()
	}
	return n
}

// rawServer is a TCP listener on 127.0.0.1 that runs serve on each connection: for responses
// net/http's server would never send.
type rawServer struct {
	url    string
	conns  atomic.Int32
	closed chan struct{} // one value each time serve returns (the connection is then closed)
}

func newRawServer(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &rawServer{url: "http://" + ln.Addr().String(), closed: make(chan struct{}, 64)}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards open
	open := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(rs.conns.Add(1))
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					rs.closed <- struct{}{}
				}()
				serve(n, c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return rs
}

// readReq reads one request, body included; false when the client closed the connection.
func readReq(br *bufio.Reader) (*http.Request, bool) {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	io.Copy(io.Discard, r.Body)
	return r, true
}

// waitClosed waits for n server-side connection closes.
func (rs *rawServer) waitClosed(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-rs.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the server's connection was not closed")
		}
	}
}

// TestRawResponses sends each canned response twice: status, body, error class, and whether the
// connection was reused.
func TestRawResponses(t *testing.T) {
	const keep, drain = 64, 128
	big := strings.Repeat("b", keep+10)
	tests := []struct {
		name       string
		resp       string
		method     string
		wantStatus int
		wantBody   string
		wantTrunc  bool
		wantErr    error // nil: success
		wantConns  int   // connections used by two attempts
		// leanOnly: net/http treats this differently (it unfolds obs-fold, tolerates a space before
		// the colon, returns a 101 as is, reuses the connection after chunked plus Content-Length);
		// the lean client refuses or closes, as RFC 9112 allows.
		leanOnly bool
	}{
		{name: "content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			wantStatus: 200, wantBody: "hello", wantConns: 1},
		{name: "no reason phrase", resp: "HTTP/1.1 202\r\nContent-Length: 0\r\n\r\n", wantStatus: 202, wantConns: 1},
		{name: "chunked with extension and trailers", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
			wantStatus: 200, wantBody: "hello world", wantConns: 1},
		{name: "chunked, uppercase hex", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n" +
			"A\r\n0123456789\r\n0\r\n\r\n", wantStatus: 200, wantBody: "0123456789", wantConns: 1},
		{name: "close-delimited", resp: "HTTP/1.1 200 OK\r\n\r\nuntil close",
			wantStatus: 200, wantBody: "until close", wantConns: 2},
		{name: "100 and 103 then 200", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", wantStatus: 200, wantBody: "ok", wantConns: 1},
		{name: "Connection: close", resp: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 200, wantBody: "ok", wantConns: 2},
		{name: "HTTP/1.0", resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", wantStatus: 200, wantBody: "ok", wantConns: 2},
		{name: "HTTP/1.0 keep-alive", resp: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 200, wantBody: "ok", wantConns: 1},
		{name: "204 has no body", resp: "HTTP/1.1 204 No Content\r\n\r\n", wantStatus: 204, wantConns: 1},
		{name: "304 ignores Content-Length", resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", wantStatus: 304, wantConns: 1},
		{name: "HEAD ignores Content-Length", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", wantStatus: 200, wantConns: 1},
		{name: "chunked and Content-Length: chunked wins, no reuse", resp: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nok\r\n0\r\n\r\n", wantStatus: 200, wantBody: "ok", wantConns: 2, leanOnly: true},
		{name: "kept and drained", resp: "HTTP/1.1 200 OK\r\nContent-Length: 74\r\n\r\n" + big,
			wantStatus: 200, wantBody: big[:keep], wantTrunc: true, wantConns: 1},
		{name: "longer than the drain budget", resp: fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", keep+drain+1, strings.Repeat("b", keep+drain+1)),
			wantStatus: 200, wantBody: strings.Repeat("b", keep), wantTrunc: true, wantConns: 2},
		{name: "same Content-Length twice", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 200, wantBody: "ok", wantConns: 1},

		{name: "bad status line", resp: "HTTP/1.1 OK\r\n\r\n", wantErr: ErrTransport, wantConns: 2},
		{name: "not HTTP", resp: "SSH-2.0-OpenSSH\r\n\r\n", wantErr: ErrTransport, wantConns: 2},
		{name: "HTTP/2 status line", resp: "HTTP/2 200\r\n\r\n", wantErr: ErrTransport, wantConns: 2},
		{name: "101 unsolicited", resp: "HTTP/1.1 101 Switching Protocols\r\n\r\n", wantErr: ErrTransport, wantConns: 2, leanOnly: true},
		{name: "too many 1xx", resp: strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
			wantErr: ErrTransport, wantConns: 2, leanOnly: true},
		{name: "bad chunk size", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
			wantStatus: 200, wantErr: ErrTransport, wantConns: 2},
		{name: "chunk size line too long", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("e", 5000) + "\r\nx\r\n0\r\n\r\n",
			wantStatus: 200, wantErr: ErrTransport, wantConns: 2},
		{name: "chunk without CRLF", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
			wantStatus: 200, wantBody: "ok", wantErr: ErrTransport, wantConns: 2},
		{name: "unsupported Transfer-Encoding", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", wantErr: ErrTransport, wantConns: 2},
		{name: "negative Content-Length", resp: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: ErrTransport, wantConns: 2},
		{name: "huge Content-Length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", wantErr: ErrTransport, wantConns: 2},
		{name: "conflicting Content-Length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", wantErr: ErrTransport, wantConns: 2},
		{name: "short body", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
			wantStatus: 200, wantBody: "short", wantErr: ErrTransport, wantConns: 2},
		{name: "obs-fold", resp: "HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n", wantErr: ErrTransport, wantConns: 2, leanOnly: true},
		{name: "space before colon", resp: "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", wantErr: ErrTransport, wantConns: 2, leanOnly: true},
		{name: "no colon", resp: "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", wantErr: ErrTransport, wantConns: 2},
		{name: "oversized headers", resp: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Big: "+strings.Repeat("v", 1000)+"\r\n", 300) + "\r\n",
			wantErr: ErrTransport, wantConns: 2},
		{name: "closed before the head ends", resp: "HTTP/1.1 200 OK\r\nContent-Le", wantErr: ErrTransport, wantConns: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.leanOnly && stdlibHTTP1 {
				t.Skip("net/http accepts this response")
			}
			rs := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
				for {
					if _, ok := readReq(br); !ok {
						return
					}
					if _, err := io.WriteString(c, tt.resp); err != nil {
						return
					}
					if tt.wantConns == 2 {
						return // the client does not reuse it; closing also ends close-delimited bodies
					}
				}
			})
			p := newPool(t, Config{KeepBodyBytes: keep, DrainBodyBytes: drain})
			for i := range 2 {
				res := do(t, p, &Request{Method: tt.method, URL: rs.url + "/hook", Timeout: 10 * time.Second})
				if tt.wantErr == nil && res.Err != nil {
					t.Fatalf("attempt %d: Err = %v", i, res.Err)
				}
				if tt.wantErr != nil {
					t.Logf("Err: %v", res.Err)
					if !errors.Is(res.Err, tt.wantErr) || errors.Is(res.Err, ErrConnect) || errors.Is(res.Err, ErrTimeout) {
						t.Fatalf("attempt %d: Err = %v, want %v only", i, res.Err, tt.wantErr)
					}
				}
				if res.StatusCode != tt.wantStatus || string(res.Body) != tt.wantBody || res.BodyTruncated != tt.wantTrunc {
					t.Fatalf("attempt %d: status %d body %q truncated %v, want %d %q %v",
						i, res.StatusCode, res.Body, res.BodyTruncated, tt.wantStatus, tt.wantBody, tt.wantTrunc)
				}
				if res.EgressIP != "127.0.0.1" {
					t.Fatalf("EgressIP %q", res.EgressIP)
				}
			}
			if got := int(rs.conns.Load()); got != tt.wantConns {
				t.Fatalf("2 attempts used %d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestLeanResponseHeader checks headers arrive canonicalised, repeated ones in order.
func TestLeanResponseHeader(t *testing.T) {
	rs := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		readReq(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-custom-thing:  v1 \r\nX-CUSTOM-THING: v2\r\nContent-Length: 0\r\n\r\n")
	})
	p := newPool(t, Config{})
	res := do(t, p, &Request{URL: rs.url})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := http.Header{"Content-Type": {"text/plain"}, "X-Custom-Thing": {"v1", "v2"}, "Content-Length": {"0"}}
	if fmt.Sprint(res.Header) != fmt.Sprint(want) {
		t.Fatalf("Header = %v, want %v", res.Header, want)
	}
}

// TestLeanRequestHead checks the request line and framing headers the receiver gets, and that headers
// that could split the request are refused before anything is sent.
func TestLeanRequestHead(t *testing.T) {
	type seen struct {
		line, host, cl, agent, te string
	}
	got := make(chan seen, 1)
	rs := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tp := http.Header{}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				l = strings.TrimRight(l, "\r\n")
				if l == "" {
					break
				}
				k, v, _ := strings.Cut(l, ": ")
				tp.Add(k, v)
			}
			var n int
			fmt.Sscan(tp.Get("Content-Length"), &n)
			io.CopyN(io.Discard, br, int64(n))
			got <- seen{strings.TrimRight(line, "\r\n"), tp.Get("Host"), tp.Get("Content-Length"), tp.Get("User-Agent"), tp.Get("Transfer-Encoding")}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	host := strings.TrimPrefix(rs.url, "http://")
	p := newPool(t, Config{})
	big := strings.Repeat("x", 2*leanBufSize) // sent with writev, not copied behind the head
	for _, tt := range []struct {
		name string
		req  Request
		want seen
	}{
		{"path and query", Request{URL: rs.url + "/a%20b/c?x=1&y=%2F", Body: []byte("hi")},
			seen{"POST /a%20b/c?x=1&y=%2F HTTP/1.1", host, "2", "Sluice", ""}},
		{"empty path", Request{URL: rs.url, Method: "GET"}, seen{"GET / HTTP/1.1", host, "", "Sluice", ""}},
		{"bodiless POST says 0", Request{URL: rs.url + "/p"}, seen{"POST /p HTTP/1.1", host, "0", "Sluice", ""}},
		{"framing headers of the caller are ignored", Request{URL: rs.url + "/p", Body: []byte("abc"), Header: http.Header{
			"Host": {"evil"}, "Content-Length": {"1"}, "Transfer-Encoding": {"chunked"}, "User-Agent": {"mine"}}},
			seen{"POST /p HTTP/1.1", host, "3", "mine", ""}},
		{"large body", Request{URL: rs.url + "/big", Body: []byte(big)}, seen{"POST /big HTTP/1.1", host, fmt.Sprint(len(big)), "Sluice", ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, p, &tt.req)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if s := <-got; s != tt.want {
				t.Fatalf("server saw %+v, want %+v", s, tt.want)
			}
		})
	}
	for _, h := range []http.Header{
		{"X-Evil": {"a\r\nInjected: 1"}},
		{"X-Evil": {"a\nb"}},
		{"Bad Name": {"v"}},
		{"X-Nul": {"a\x00"}},
		{"": {"v"}},
	} {
		res := do(t, p, &Request{URL: rs.url, Header: h})
		if !errors.Is(res.Err, ErrBadRequest) {
			t.Fatalf("header %q: Err = %v, want ErrBadRequest", h, res.Err)
		}
	}
	if n := rs.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestLeanHostHeader(t *testing.T) {
	p := newPool(t, Config{})
	e := p.all[0]
	for _, tt := range []struct{ urlHost, addr, host string }{
		{"example.com", "example.com:80", "example.com"},
		{"example.com:80", "example.com:80", "example.com"},
		{"example.com:", "example.com:80", "example.com"},
		{"example.com:8080", "example.com:8080", "example.com:8080"},
		{"[::1]", "[::1]:80", "[::1]"},
		{"[::1]:80", "[::1]:80", "[::1]"},
		{"[::1]:81", "[::1]:81", "[::1]:81"},
	} {
		h := e.leanHost(p, tt.urlHost)
		if h.addr != tt.addr || h.host != tt.host {
			t.Errorf("%s: addr %q host %q, want %q %q", tt.urlHost, h.addr, h.host, tt.addr, tt.host)
		}
	}
}

// TestLeanStaleConnection: a receiver closes an idle keep-alive connection; the next attempt finds it
// dead before any response byte and is resent once on a fresh connection. A receiver that closes
// after reading every request is not retried forever.
func TestLeanStaleConnection(t *testing.T) {
	for _, tt := range []struct {
		name      string
		linger0   bool // close with RST rather than FIN
		alwaysEOF bool // every connection but the first closes after reading the request
		wantErr   error
		wantConns int32
	}{
		{name: "FIN while idle", wantConns: 2},
		{name: "RST while idle", linger0: true, wantConns: 2},
		{name: "closes after reading the request", alwaysEOF: true, wantErr: ErrTransport, wantConns: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var served atomic.Int32
			rs := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
				if tt.linger0 {
					c.(*net.TCPConn).SetLinger(0)
				}
				if _, ok := readReq(br); !ok {
					return
				}
				if n > 1 && tt.alwaysEOF {
					return
				}
				served.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				if tt.alwaysEOF {
					readReq(br) // the second request on this connection: read, then close unanswered
				}
			})
			p := newPool(t, Config{})
			if res := do(t, p, &Request{URL: rs.url, Body: []byte("one")}); res.Err != nil {
				t.Fatalf("first attempt: %v", res.Err)
			}
			if !tt.alwaysEOF {
				rs.waitClosed(t, 1) // the idle connection is now dead on the server's side
			}
			res := do(t, p, &Request{URL: rs.url, Body: []byte("two")})
			if tt.wantErr == nil && (res.Err != nil || res.StatusCode != 200) {
				t.Fatalf("attempt on a stale connection: status %d err %v, want a transparent retry", res.StatusCode, res.Err)
			}
			if tt.wantErr != nil && !errors.Is(res.Err, tt.wantErr) {
				t.Fatalf("Err = %v, want %v", res.Err, tt.wantErr)
			}
			if got := rs.conns.Load(); got != tt.wantConns {
				t.Fatalf("%d connections, want %d", got, tt.wantConns)
			}
			// A fresh connection that fails is never retried.
			if tt.alwaysEOF {
				res := do(t, p, &Request{URL: rs.url})
				if !errors.Is(res.Err, ErrTransport) || rs.conns.Load() != tt.wantConns+1 {
					t.Fatalf("on a fresh connection: Err %v after %d connections, want ErrTransport after %d", res.Err, rs.conns.Load(), tt.wantConns+1)
				}
			}
		})
	}
}

// TestLeanCancel: canceling the caller's context aborts an attempt blocked reading the response.
func TestLeanCancel(t *testing.T) {
	got := make(chan struct{})
	rs := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, ok := readReq(br); ok {
			close(got)
		}
		br.ReadByte() // until the client goes away
	})
	p := newPool(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Response, 1)
	go func() { done <- p.Do(ctx, &Request{URL: rs.url, Timeout: time.Minute}) }()
	<-got
	cancel()
	var res *Response
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not abort the blocked read")
	}
	if !errors.Is(res.Err, ErrCanceled) || errors.Is(res.Err, ErrConnect) || errors.Is(res.Err, ErrTimeout) {
		t.Fatalf("Err = %v, want ErrCanceled only", res.Err)
	}
	rs.waitClosed(t, 1) // the connection was closed, not pooled
	if n := leanIdle(p); n != 0 {
		t.Fatalf("%d idle connections after a canceled attempt", n)
	}
}

// TestLeanIdleTimeoutAndClose: idle connections are closed after IdleConnTimeout, by Close, and when
// they come back from an attempt that was in flight during Close.
func TestLeanIdleTimeoutAndClose(t *testing.T) {
	release := make(chan struct{})
	rs := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			r, ok := readReq(br)
			if !ok {
				return
			}
			if r.URL.Path == "/hold" {
				<-release
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		p := newPool(t, Config{IdleConnTimeout: 50 * time.Millisecond})
		for range 3 {
			if res := do(t, p, &Request{URL: rs.url}); res.Err != nil {
				t.Fatal(res.Err)
			}
			rs.waitClosed(t, 1)
		}
		if n := rs.conns.Load(); n != 3 {
			t.Fatalf("%d connections, want 3: each expired before the next attempt", n)
		}
	})
	t.Run("Close", func(t *testing.T) {
		p := newPool(t, Config{EgressIPs: []netip.Addr{ip2, ip3}})
		for _, k := range []string{"a", "b", "c", "d"} {
			if res := do(t, p, &Request{URL: rs.url, Key: k}); res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		if n := leanIdle(p); n != 2 {
			t.Fatalf("%d idle connections, want 2 (one per egress IP)", n)
		}
		p.Close()
		rs.waitClosed(t, 2)
	})
	t.Run("returned after Close", func(t *testing.T) {
		p := newPool(t, Config{})
		done := make(chan *Response, 1)
		go func() { done <- p.Do(context.Background(), &Request{URL: rs.url + "/hold"}) }()
		for deadline := time.Now().Add(10 * time.Second); rs.conns.Load() < 6; {
			if time.Now().After(deadline) {
				t.Fatal("the held attempt never connected")
			}
			time.Sleep(time.Millisecond) // polling interval
		}
		p.Close()
		close(release)
		if res := <-done; res.Err != nil {
			t.Fatalf("attempt in flight during Close: %v", res.Err)
		}
		rs.waitClosed(t, 1)
		if n := leanIdle(p); n != 0 {
			t.Fatalf("%d idle connections after Close", n)
		}
	})
}

// TestLeanMaxConnsPerHost: concurrent attempts share the one allowed connection.
func TestLeanMaxConnsPerHost(t *testing.T) {
	srv, cc := newSink(t, http.HandlerFunc(remoteIP))
	p := newPool(t, Config{MaxConnsPerHost: 1})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if res := p.Do(context.Background(), &Request{URL: srv.URL, Timeout: 30 * time.Second}); res.Err != nil {
					t.Errorf("Do: %v", res.Err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := cc.count(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestLeanAllocs keeps the lean path's allocations per attempt in check (a count, not a speed). The
// server is a raw loop that allocates nothing per request, since AllocsPerRun counts every goroutine.
func TestLeanAllocs(t *testing.T) {
	rs := newRawServer(t, func(_ int, c net.Conn, _ *bufio.Reader) {
		buf := make([]byte, 4096)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			if bytes.HasSuffix(buf[:n], []byte("\r\n\r\n{}")) {
				n = 0
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Fri, 27 Nov 2026 05:00:00 GMT\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"); err != nil {
					return
				}
			}
		}
	})
	p := newPool(t, Config{})
	req := &Request{URL: rs.url + "/hook", Header: http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Sluice"}}, Body: []byte("{}")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	do(t, p, req)
	allocs := testing.AllocsPerRun(100, func() {
		if res := p.Do(ctx, req); res.Err != nil || string(res.Body) != `{"ok":true}` {
			t.Fatalf("status %d body %q err %v", res.StatusCode, res.Body, res.Err)
		}
	})
	t.Logf("%.0f allocs per attempt", allocs)
	if allocs > 16 {
		t.Fatalf("%.0f allocs per attempt, want at most 16", allocs)
	}
}
