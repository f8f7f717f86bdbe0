package netpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring naming the field; "" for valid
	}{
		{"zero is valid", Config{}, ""},
		{"defaults are valid", DefaultConfig(), ""},
		{"pools", Config{EgressIPs: []netip.Addr{ip2, ip3}, Pools: map[string][]netip.Addr{"eu": {ip3}}}, ""},
		{"zero address", Config{EgressIPs: []netip.Addr{{}}}, "EgressIPs[0]"},
		{"unspecified", Config{EgressIPs: []netip.Addr{ip2, netip.IPv4Unspecified()}}, "EgressIPs[1]"},
		{"duplicate", Config{EgressIPs: []netip.Addr{ip2, netip.MustParseAddr("::ffff:127.0.0.2")}}, "EgressIPs[1]"},
		{"empty pool name", Config{Pools: map[string][]netip.Addr{"": {ip2}}}, `Pools[""]`},
		{"empty pool", Config{Pools: map[string][]netip.Addr{"eu": nil}}, `Pools["eu"]`},
		{"bad pool ip", Config{Pools: map[string][]netip.Addr{"eu": {ip3, ip3}}}, `Pools["eu"][1]`},
		{"negative idle", Config{MaxIdleConnsPerHost: -1}, "MaxIdleConnsPerHost"},
		{"negative conns", Config{MaxConnsPerHost: -1}, "MaxConnsPerHost"},
		{"negative idle timeout", Config{IdleConnTimeout: -1}, "IdleConnTimeout"},
		{"negative dial timeout", Config{DialTimeout: -1}, "DialTimeout"},
		{"negative timeout", Config{DefaultTimeout: -1}, "DefaultTimeout"},
		{"negative keep", Config{KeepBodyBytes: -1}, "KeepBodyBytes"},
		{"negative drain", Config{DrainBodyBytes: -1}, "DrainBodyBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				def := DefaultConfig()
				def.EgressIPs, def.Pools = cfg.EgressIPs, cfg.Pools
				if fmt.Sprint(cfg) != fmt.Sprint(def) {
					t.Fatalf("defaults not filled:\n got %+v\nwant %+v", cfg, def)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want ErrConfig naming %s", err, tt.wantErr)
			}
			if _, err := New(tt.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
}

// TestEgress checks that the server sees the egress IP Do reports, and that a key keeps its IP.
func TestEgress(t *testing.T) {
	srv, _ := newSink(t, http.HandlerFunc(remoteIP))
	cfg := Config{
		EgressIPs: []netip.Addr{ip2, ip3},
		Pools:     map[string][]netip.Addr{"eu": {ip3}, "us": {ip2}, "both": {ip3, ip2}},
	}
	p := newPool(t, cfg)
	pSystem := newPool(t, Config{})

	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("ep_%d", i)
	}
	tests := []struct {
		name    string
		pool    *Pool
		egress  string
		keys    []string
		wantIPs []string // the set of IPs the keys must spread over
	}{
		{"default pool spreads keys over both IPs", p, "", keys, []string{"127.0.0.2", "127.0.0.3"}},
		{"named pool eu", p, "eu", keys, []string{"127.0.0.3"}},
		{"named pool us", p, "us", keys, []string{"127.0.0.2"}},
		{"named pool sharing both IPs", p, "both", keys, []string{"127.0.0.2", "127.0.0.3"}},
		{"empty key hashes the URL", p, "", []string{""}, nil},
		{"no egress IPs: system's choice", pSystem, "", keys[:2], []string{"127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, key := range tt.keys {
				first := ""
				for i := range 3 {
					res := do(t, tt.pool, &Request{URL: srv.URL + "/" + key, Key: key, EgressPool: tt.egress})
					if res.Err != nil || res.StatusCode != 200 {
						t.Fatalf("key %q: status %d err %v", key, res.StatusCode, res.Err)
					}
					if got := string(res.Body); got != res.EgressIP {
						t.Fatalf("key %q: server saw %s, Response.EgressIP %s", key, got, res.EgressIP)
					}
					if i == 0 {
						first = res.EgressIP
					} else if res.EgressIP != first {
						t.Fatalf("key %q moved from %s to %s", key, first, res.EgressIP)
					}
				}
				seen[first] = true
			}
			for _, ip := range tt.wantIPs {
				if !seen[ip] {
					t.Errorf("no key left from %s; seen %v", ip, seen)
				}
			}
			if tt.wantIPs != nil && len(seen) != len(tt.wantIPs) {
				t.Errorf("seen %v, want only %v", seen, tt.wantIPs)
			}
		})
	}
}

func TestPickIsStableAndConsistent(t *testing.T) {
	// Fixed values: the mapping must not change between releases, or endpoints change egress IP.
	for _, tt := range []struct {
		key  string
		n    int
		want int
	}{
		{"ep_0", 2, 1}, {"ep_1", 2, 0}, {"ep_2", 3, 2}, {"ep_0", 10, 9}, {"01HZX3K9V7", 10, 6},
		{"", 1, 0}, {"anything", 0, 0},
	} {
		if got := pick(tt.key, tt.n); got != tt.want {
			t.Errorf("pick(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
		}
	}
	// Growing a pool from 4 to 5 IPs moves about 1/5 of the keys, all of them to the new IP.
	moved := 0
	const keys = 10000
	for i := range keys {
		k := "ep_" + strconv.Itoa(i)
		a, b := pick(k, 4), pick(k, 5)
		if a != b {
			moved++
			if b != 4 {
				t.Fatalf("key %s moved from %d to %d, not to the new IP", k, a, b)
			}
		}
	}
	if moved < keys/5-keys/50 || moved > keys/5+keys/50 {
		t.Errorf("moved %d of %d keys, want about 1/5", moved, keys)
	}
}

// TestRequestAsSent checks method, body, headers and User-Agent as the receiver sees them.
func TestRequestAsSent(t *testing.T) {
	type seen struct {
		method, ua, ct, body string
		contentLength        int64
	}
	got := make(chan seen, 1)
	srv, _ := newSink(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Get("User-Agent"), r.Header.Get("Content-Type"), string(b), r.ContentLength}
	}))
	p := newPool(t, Config{UserAgent: "Sluice/test"})

	shared := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name string
		req  Request
		want seen
	}{
		{"default POST with body", Request{Header: shared, Body: []byte(`{"a":1}`)},
			seen{"POST", "Sluice/test", "application/json", `{"a":1}`, 7}},
		{"caller's User-Agent wins", Request{Header: http.Header{"User-Agent": {"mine"}}, Body: []byte("x")},
			seen{"POST", "mine", "", "x", 1}},
		{"nil header, empty POST", Request{}, seen{"POST", "Sluice/test", "", "", 0}},
		{"PUT", Request{Method: "PUT", Body: []byte("abc")}, seen{"PUT", "Sluice/test", "", "abc", 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.URL = srv.URL
			res := do(t, p, &req)
			if res.Err != nil || res.StatusCode != 200 {
				t.Fatalf("status %d err %v", res.StatusCode, res.Err)
			}
			if s := <-got; s != tt.want {
				t.Fatalf("server saw %+v, want %+v", s, tt.want)
			}
		})
	}
	if len(shared) != 1 {
		t.Fatalf("caller's header was modified: %v", shared)
	}
}

// TestKeepAlive checks that sequential attempts reuse one connection, including responses that must be
// drained to make that possible.
func TestKeepAlive(t *testing.T) {
	const keep, drain = 1 << 10, 4 << 10
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 100},
		{"kept exactly", keep},
		{"drained", keep + 100},
		{"drained exactly", keep + drain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte("k"), tt.size)
			srv, cc := newSink(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Write(payload)
			}))
			p := newPool(t, Config{EgressIPs: []netip.Addr{ip2}, KeepBodyBytes: keep, DrainBodyBytes: drain})
			const n = 20
			for i := range n {
				res := do(t, p, &Request{URL: srv.URL, Body: []byte("ping"), Key: "ep"})
				if res.Err != nil || res.StatusCode != 200 {
					t.Fatalf("attempt %d: status %d err %v", i, res.StatusCode, res.Err)
				}
			}
			if got := cc.count(); got != 1 {
				t.Fatalf("%d sequential attempts used %d connections, want 1", n, got)
			}
		})
	}
}

// TestBodyCap checks the keep/drain/close policy for bodies of known and unknown length.
func TestBodyCap(t *testing.T) {
	const keep, drain = 1 << 10, 4 << 10
	tests := []struct {
		size          int
		chunked       bool // no Content-Length: the client only learns the length by reading
		wantTruncated bool
		wantReuse     bool
	}{
		{0, false, false, true},
		{10, false, false, true},
		{10, true, false, true},
		{keep, false, false, true},
		{keep, true, false, true},
		{keep + 1, false, true, true},
		{keep + 1, true, true, true},
		{keep + drain, false, true, true},
		{keep + drain, true, true, true},
		{keep + drain + 1, false, true, false}, // known too long: closed without reading
		{keep + 2*drain, true, true, false},    // found too long while draining
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("size=%d/chunked=%v", tt.size, tt.chunked), func(t *testing.T) {
			payload := make([]byte, tt.size)
			for i := range payload {
				payload[i] = byte('a' + i%26)
			}
			srv, cc := newSink(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
					w.Write(payload)
					return
				}
				// Flushing before the end forces chunked encoding.
				half := len(payload) / 2
				w.Write(payload[:half])
				w.(http.Flusher).Flush()
				w.Write(payload[half:])
			}))
			p := newPool(t, Config{KeepBodyBytes: keep, DrainBodyBytes: drain})
			for i := range 2 {
				res := do(t, p, &Request{URL: srv.URL})
				if res.Err != nil || res.StatusCode != 200 {
					t.Fatalf("status %d err %v", res.StatusCode, res.Err)
				}
				wantBody := payload[:min(len(payload), keep)]
				if !bytes.Equal(res.Body, wantBody) {
					t.Fatalf("attempt %d: Body has %d bytes, want the first %d", i, len(res.Body), len(wantBody))
				}
				if res.BodyTruncated != tt.wantTruncated {
					t.Fatalf("attempt %d: BodyTruncated %v, want %v", i, res.BodyTruncated, tt.wantTruncated)
				}
			}
			wantConns := 2
			if tt.wantReuse {
				wantConns = 1
			}
			if got := cc.count(); got != wantConns {
				t.Fatalf("2 attempts used %d connections, want %d", got, wantConns)
			}
		})
	}
}

// TestHugeResponse sends 100 MB responses: Do must return after the drain limit with the connection
// closed, without reading (or allocating) anything like 100 MB.
func TestHugeResponse(t *testing.T) {
	const size = 100 << 20
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", known), func(t *testing.T) {
			written := make(chan int64, 1)
			srv, cc := newSink(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if known {
					w.Header().Set("Content-Length", strconv.Itoa(size))
				}
				chunk := make([]byte, 32<<10)
				var n int64
				for n < size {
					m, err := w.Write(chunk)
					n += int64(m)
					if err != nil {
						break
					}
				}
				written <- n
			}))
			p := newPool(t, Config{EgressIPs: []netip.Addr{ip3}})

			var before, after runtimeMem
			before.read()
			res := do(t, p, &Request{URL: srv.URL})
			after.read()

			if res.Err != nil || res.StatusCode != 200 {
				t.Fatalf("status %d err %v", res.StatusCode, res.Err)
			}
			if len(res.Body) != defaultKeepBodyBytes || !res.BodyTruncated {
				t.Fatalf("Body %d bytes truncated=%v, want %d truncated", len(res.Body), res.BodyTruncated, defaultKeepBodyBytes)
			}
			// The client closed the connection, so the handler's writes fail long before 100 MB.
			select {
			case addr := <-cc.closed:
				if !strings.HasPrefix(addr, "127.0.0.3:") {
					t.Fatalf("closed connection from %s, want the egress IP", addr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server's connection was not closed")
			}
			if n := <-written; n >= size {
				t.Fatalf("server wrote all %d bytes: the client read the whole body", n)
			}
			// The server's goroutines allocate a little too; 100 MB read into memory would show.
			if d := after.totalAlloc - before.totalAlloc; d > 16<<20 {
				t.Fatalf("allocated %d MiB during Do", d>>20)
			}
		})
	}
}

// TestErrors checks each failure mode is classified by its sentinel.
func TestErrors(t *testing.T) {
	release := make(chan struct{})
	hijacked := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target", http.StatusFound)
	})
	var targetHits sync.Map
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) { targetHits.Store(r.URL.Path, true) })
	mux.HandleFunc("/drip", func(w http.ResponseWriter, r *http.Request) {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := w.Write([]byte("d")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			case <-release:
				return
			}
		}
	})
	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	mux.HandleFunc("/hang", hang)
	held, holdRelease := make(chan struct{}, 1), make(chan struct{})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		<-holdRelease
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial"))
		conn.(*net.TCPConn).SetLinger(0) // close with RST rather than FIN
		conn.Close()
		hijacked <- struct{}{}
	})
	srv, _ := newSink(t, mux)
	t.Cleanup(func() { close(release) }) // runs before srv.Close, which waits for handlers

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/"
	ln.Close()

	p := newPool(t, Config{EgressIPs: []netip.Addr{ip2}, Pools: map[string][]netip.Addr{"eu": {ip3}}})
	// One connection per host: a second attempt waits for it and times out before connecting.
	pOne := newPool(t, Config{MaxConnsPerHost: 1})
	hanging := make(chan *Response, 1)
	go func() {
		hanging <- pOne.Do(context.Background(), &Request{URL: srv.URL + "/hold", Timeout: time.Minute})
	}()
	<-held

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	closed := newPool(t, Config{})
	closed.Close()

	tests := []struct {
		name       string
		pool       *Pool
		ctx        func() context.Context // nil: Background
		req        *Request
		wantErrs   []error // every one must match; nil means success
		notErrs    []error // none may match
		wantStatus int
		wantBody   string
		wantEgress string
	}{
		{name: "redirect is not followed", req: &Request{URL: srv.URL + "/redirect"},
			wantStatus: http.StatusFound, wantBody: "", wantEgress: "127.0.0.2"},
		{name: "slow drip cut by timeout", req: &Request{URL: srv.URL + "/drip", Timeout: 300 * time.Millisecond},
			wantErrs: []error{ErrTimeout, context.DeadlineExceeded}, notErrs: []error{ErrConnect, ErrCanceled},
			wantStatus: 200, wantEgress: "127.0.0.2"},
		// A second, not 100 ms: on a loaded machine dialing loopback alone can take longer, and
		// that is (rightly) a connect timeout, not the response timeout this case is about.
		{name: "hang past timeout", req: &Request{URL: srv.URL + "/hang", Timeout: time.Second},
			wantErrs: []error{ErrTimeout}, notErrs: []error{ErrConnect}, wantEgress: "127.0.0.2"},
		{name: "caller's deadline is a timeout too", ctx: func() context.Context { return deadlineCtx(t, time.Second) },
			req:      &Request{URL: srv.URL + "/hang", Timeout: time.Minute},
			wantErrs: []error{ErrTimeout}, notErrs: []error{ErrCanceled}, wantEgress: "127.0.0.2"},
		{name: "waiting for a connection past timeout", pool: pOne,
			req:      &Request{URL: srv.URL + "/hang", Timeout: 100 * time.Millisecond},
			wantErrs: []error{ErrConnect, ErrTimeout}},
		{name: "connection refused", req: &Request{URL: refused},
			wantErrs: []error{ErrConnect, syscall.ECONNREFUSED}, notErrs: []error{ErrTimeout}},
		{name: "reset mid-response", req: &Request{URL: srv.URL + "/reset"},
			wantErrs: []error{ErrTransport}, notErrs: []error{ErrConnect, ErrTimeout},
			wantStatus: 200, wantBody: "partial", wantEgress: "127.0.0.2"},
		{name: "canceled", ctx: func() context.Context { return canceled }, req: &Request{URL: srv.URL + "/hang"},
			wantErrs: []error{ErrCanceled, ErrConnect, context.Canceled}},
		{name: "unknown pool", req: &Request{URL: srv.URL, EgressPool: "mars"}, wantErrs: []error{ErrUnknownPool}},
		{name: "closed pool", pool: closed, req: &Request{URL: srv.URL}, wantErrs: []error{ErrClosed}},
		{name: "nil request", wantErrs: []error{ErrBadRequest}},
		{name: "empty URL", req: &Request{URL: ""}, wantErrs: []error{ErrBadRequest}},
		{name: "unparsable URL", req: &Request{URL: "http://[::1"}, wantErrs: []error{ErrBadRequest}},
		{name: "relative URL", req: &Request{URL: "/hook"}, wantErrs: []error{ErrBadRequest}},
		{name: "no host", req: &Request{URL: "http:///hook"}, wantErrs: []error{ErrBadRequest}},
		{name: "not http", req: &Request{URL: "ftp://127.0.0.1/hook"}, wantErrs: []error{ErrBadRequest}},
		{name: "bad method", req: &Request{Method: "NOT A METHOD", URL: srv.URL}, wantErrs: []error{ErrBadRequest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, ctx := tt.pool, context.Background()
			if pool == nil {
				pool = p
			}
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			res := pool.Do(ctx, tt.req)
			if res == nil {
				t.Fatal("Do returned nil")
			}
			t.Logf("Err: %v", res.Err)
			if len(tt.wantErrs) == 0 && res.Err != nil {
				t.Fatalf("Err = %v, want nil", res.Err)
			}
			for _, want := range tt.wantErrs {
				if !errors.Is(res.Err, want) {
					t.Errorf("Err = %v, want errors.Is %v", res.Err, want)
				}
			}
			for _, not := range tt.notErrs {
				if errors.Is(res.Err, not) {
					t.Errorf("Err = %v, must not match %v", res.Err, not)
				}
			}
			if tt.req != nil && res.Err != nil && tt.req.URL != "" && !strings.Contains(res.Err.Error(), tt.req.URL) {
				t.Errorf("Err = %v does not name the URL %s", res.Err, tt.req.URL)
			}
			if res.StatusCode != tt.wantStatus {
				t.Errorf("StatusCode = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if tt.wantBody != "" && string(res.Body) != tt.wantBody {
				t.Errorf("Body = %q, want %q", res.Body, tt.wantBody)
			}
			if res.EgressIP != tt.wantEgress {
				t.Errorf("EgressIP = %q, want %q", res.EgressIP, tt.wantEgress)
			}
			if errors.Is(res.Err, ErrTimeout) && res.Latency > 5*time.Second {
				t.Errorf("timed out after %v", res.Latency)
			}
		})
	}
	if _, ok := targetHits.Load("/target"); ok {
		t.Error("the redirect was followed")
	}
	close(holdRelease)
	if res := <-hanging; res.StatusCode != 200 {
		t.Errorf("the request holding the only connection: status %d err %v", res.StatusCode, res.Err)
	}
}

func deadlineCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestConcurrent runs attempts from many goroutines over several pools, for the race detector.
func TestConcurrent(t *testing.T) {
	srv, _ := newSink(t, http.HandlerFunc(remoteIP))
	p := newPool(t, Config{EgressIPs: []netip.Addr{ip2, ip3}, Pools: map[string][]netip.Addr{"eu": {ip3}}})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 25 {
				pool := ""
				if i%2 == 0 {
					pool = "eu"
				}
				res := p.Do(context.Background(), &Request{URL: srv.URL, Key: strconv.Itoa(g), EgressPool: pool, Body: []byte("x")})
				if res.Err != nil || string(res.Body) != res.EgressIP {
					t.Errorf("status %d err %v body %q egress %q", res.StatusCode, res.Err, res.Body, res.EgressIP)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestClose checks that Close closes idle connections and that later attempts fail with ErrClosed.
func TestClose(t *testing.T) {
	srv, cc := newSink(t, http.HandlerFunc(remoteIP))
	p := newPool(t, Config{EgressIPs: []netip.Addr{ip2, ip3}})
	for _, key := range []string{"a", "b", "c", "d"} {
		if res := do(t, p, &Request{URL: srv.URL, Key: key}); res.Err != nil {
			t.Fatalf("Do: %v", res.Err)
		}
	}
	open := cc.count()
	p.Close()
	for range open {
		select {
		case <-cc.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("Close left idle connections open (%d opened)", open)
		}
	}
	if res := do(t, p, &Request{URL: srv.URL}); !errors.Is(res.Err, ErrClosed) {
		t.Fatalf("Do after Close: Err = %v, want ErrClosed", res.Err)
	}
}
