package netpool

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// testProxy is a tiny forward proxy on 127.0.0.1: CONNECT tunnels (https destinations) and
// absolute-form requests (http destinations). It records what it was asked for and the
// Proxy-Authorization it saw.
type testProxy struct {
	*httptest.Server
	mu       sync.Mutex // guards the fields below
	connects []string   // CONNECT targets
	forwards []string   // absolute-form URLs
	auth     []string   // Proxy-Authorization values
}

func newTestProxy(t *testing.T) *testProxy {
	t.Helper()
	tp := &testProxy{}
	fwd := &http.Transport{} // no proxy of its own
	t.Cleanup(fwd.CloseIdleConnections)
	tp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.auth = append(tp.auth, r.Header.Get("Proxy-Authorization"))
		if r.Method == http.MethodConnect {
			tp.connects = append(tp.connects, r.Host)
		} else {
			tp.forwards = append(tp.forwards, r.URL.String())
		}
		tp.mu.Unlock()
		if r.Method != http.MethodConnect {
			out := r.Clone(r.Context())
			out.RequestURI = ""
			out.Header.Del("Proxy-Authorization")
			res, err := fwd.RoundTrip(out)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer res.Body.Close()
			for k, vs := range res.Header {
				w.Header()[k] = vs
			}
			w.WriteHeader(res.StatusCode)
			io.Copy(w, res.Body)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		down, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() {
			defer up.Close()
			defer down.Close()
			go func() { io.Copy(up, buf); up.(*net.TCPConn).CloseWrite() }()
			io.Copy(down, up)
		}()
	}))
	t.Cleanup(tp.Close)
	return tp
}

func (tp *testProxy) url(userinfo *url.Userinfo) *url.URL {
	u, _ := url.Parse(tp.URL)
	u.User = userinfo
	return u
}

func (tp *testProxy) seen() (connects, forwards, auth []string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]string(nil), tp.connects...), append([]string(nil), tp.forwards...), append([]string(nil), tp.auth...)
}

// TestProxy sends through a forward proxy: https destinations in a CONNECT tunnel (TLS end to end, the
// endpoint's TLS config applies to the destination), http destinations in absolute form, with proxy
// basic auth from the URL; Request.Proxy overrides Config.Proxy per request.
func TestProxy(t *testing.T) {
	tlsSink := newTLSSink(t, nil, 0)
	roots := x509.NewCertPool()
	roots.AddCert(tlsSink.Certificate())
	bundle := &tls.Config{RootCAs: roots}
	plainSink, _ := newSink(t, http.HandlerFunc(remoteIP))

	px := newTestProxy(t)
	p := newPool(t, Config{Proxy: px.url(url.UserPassword("sluice", "pw"))})

	res := do(t, p, &Request{URL: tlsSink.URL, TLS: bundle})
	if res.Err != nil || res.StatusCode != 200 {
		t.Fatalf("https through the proxy: status %d err %v", res.StatusCode, res.Err)
	}
	if proxyIP := netip.MustParseAddrPort(px.Listener.Addr().String()).Addr().String(); res.EgressIP != proxyIP {
		t.Errorf("EgressIP %q, want the local address towards the proxy (%s)", res.EgressIP, proxyIP)
	}
	res = do(t, p, &Request{URL: plainSink.URL + "/x"})
	if res.Err != nil || res.StatusCode != 200 {
		t.Fatalf("http through the proxy: status %d err %v", res.StatusCode, res.Err)
	}
	connects, forwards, auth := px.seen()
	sinkHost := tlsSink.Listener.Addr().String()
	if len(connects) != 1 || connects[0] != sinkHost {
		t.Errorf("CONNECT targets %q, want [%s]", connects, sinkHost)
	}
	if len(forwards) != 1 || forwards[0] != plainSink.URL+"/x" {
		t.Errorf("forwarded %q, want [%s/x]", forwards, plainSink.URL)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("sluice:pw"))
	for _, a := range auth {
		if a != wantAuth {
			t.Errorf("Proxy-Authorization %q, want %q", a, wantAuth)
		}
	}

	// Request.Proxy overrides Config.Proxy; each proxy gets its own cached transport.
	other := newTestProxy(t)
	direct := newPool(t, Config{})
	for range 2 {
		if res := do(t, direct, &Request{URL: plainSink.URL + "/y", Proxy: other.url(nil)}); res.Err != nil {
			t.Fatalf("Request.Proxy: %v", res.Err)
		}
		if res := do(t, direct, &Request{URL: plainSink.URL + "/z"}); res.Err != nil {
			t.Fatalf("direct: %v", res.Err)
		}
	}
	if _, fw, _ := other.seen(); len(fw) != 2 {
		t.Errorf("the per-request proxy forwarded %d requests, want 2 (and not the direct ones)", len(fw))
	}
	if got := direct.pools[""][0].proxyTransports(); got != 1 {
		t.Errorf("%d proxy transports cached, want 1", got)
	}

	// A proxy that is down: nothing was sent.
	gone := newTestProxy(t)
	goneURL := gone.url(nil)
	gone.Close()
	res = do(t, direct, &Request{URL: plainSink.URL, Proxy: goneURL})
	if !errors.Is(res.Err, ErrConnect) {
		t.Errorf("dead proxy: err %v, want ErrConnect", res.Err)
	}
	// A bad proxy URL is a bad request.
	res = do(t, direct, &Request{URL: plainSink.URL, Proxy: &url.URL{Scheme: "ftp", Host: "x"}})
	if !errors.Is(res.Err, ErrBadRequest) {
		t.Errorf("ftp proxy: err %v, want ErrBadRequest", res.Err)
	}
	if _, err := New(Config{Proxy: &url.URL{Scheme: "socks5", Host: "x"}}); !errors.Is(err, ErrConfig) {
		t.Errorf("Config.Proxy socks5: %v, want ErrConfig", err)
	}
}

// TestProxyWithGuard documents the guard's reach when a proxy is used: the proxy's own (loopback)
// address is trusted, an IP-literal destination is still judged before anything is sent, and a name
// is resolved by the proxy, so judging it is the proxy's job.
func TestProxyWithGuard(t *testing.T) {
	sink, _ := newSink(t, http.HandlerFunc(remoteIP))
	px := newTestProxy(t)
	p := newPool(t, Config{BlockPrivate: true, Proxy: px.url(nil)})

	res := do(t, p, &Request{URL: sink.URL})
	if !errors.Is(res.Err, ErrForbiddenAddress) || !errors.Is(res.Err, ErrConnect) {
		t.Fatalf("IP literal through the proxy: err %v, want ErrForbiddenAddress", res.Err)
	}
	if _, fw, _ := px.seen(); len(fw) != 0 {
		t.Fatalf("the proxy was asked for %q; the refused request must not be sent", fw)
	}
	byName := "http://localhost:" + strconv.Itoa(sink.Listener.Addr().(*net.TCPAddr).Port)
	if res := do(t, p, &Request{URL: byName}); res.Err != nil || res.StatusCode != 200 {
		t.Fatalf("name through the proxy: status %d err %v; the proxy resolves names", res.StatusCode, res.Err)
	}
}
