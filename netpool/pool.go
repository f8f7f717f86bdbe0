package netpool

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// Sentinel errors. Response.Err wraps one or two of them with %w, followed by the method, the URL
// (password redacted) and the underlying cause, which stays reachable too (errors.Is(err,
// syscall.ECONNREFUSED), errors.As(err, &x509Err)...). Classify with errors.Is, never by message.
var (
	// ErrConnect: no connection was obtained, so nothing was sent and a retry cannot duplicate the
	// delivery. It is paired with ErrTimeout, ErrTLS or ErrCanceled when one of those is the reason.
	ErrConnect = errors.New("netpool: connect failed")
	// ErrTimeout: the attempt's Timeout (or the caller's context deadline) passed, or a dial or TLS
	// handshake timed out.
	ErrTimeout = errors.New("netpool: timeout")
	// ErrTLS: the TLS handshake or certificate verification failed, on either side.
	ErrTLS = errors.New("netpool: tls failed")
	// ErrTransport: the connection failed after it was obtained (reset, EOF before the response ended,
	// protocol error). The request may have been processed; if StatusCode is set, it was answered.
	ErrTransport = errors.New("netpool: transport error")
	// ErrCanceled: the caller's context was canceled (shutdown, lost dispatch ownership); not the
	// endpoint's fault.
	ErrCanceled = errors.New("netpool: canceled")
	// ErrBadRequest: the Request cannot be sent at all (bad URL or method, nil Request); retrying will
	// not help.
	ErrBadRequest = errors.New("netpool: bad request")
	// ErrUnknownPool: Request.EgressPool names no configured pool.
	ErrUnknownPool = errors.New("netpool: unknown egress pool")
	// ErrClosed: Do was called after Close.
	ErrClosed = errors.New("netpool: pool closed")
	// ErrConfig: Config.Validate rejected a field; the message names it.
	ErrConfig = errors.New("netpool: invalid config")
	// ErrForbiddenAddress: the SSRF guard (Config.BlockPrivate) refused the destination address; the
	// message names the IP and its range. It comes with ErrConnect: nothing was sent.
	ErrForbiddenAddress = errors.New("netpool: forbidden address")
)

// errAttemptTimeout is the cancel cause of an attempt's own deadline. It tells "our Timeout fired" apart
// from "the caller's context ended", and still matches context.DeadlineExceeded.
var errAttemptTimeout = fmt.Errorf("attempt timeout: %w", context.DeadlineExceeded)

const (
	// maxResponseHeaderBytes bounds response headers. net/http's default is 10 MiB per response, which
	// would let hostile endpoints undo the body cap; webhook receivers answer with a few hundred bytes.
	maxResponseHeaderBytes = 256 << 10
	// h2ConnWindow bounds what one HTTP/2 connection may buffer unread (net/http's default is 1 GiB).
	h2ConnWindow = 4 << 20
	// h2PingAfter sends a health-check ping on an HTTP/2 connection silent this long, so a dead
	// connection is found before every multiplexed attempt on it times out.
	h2PingAfter = 30 * time.Second
)

// Request is one delivery attempt.
type Request struct {
	Method string // "" means POST
	URL    string // absolute http or https URL
	// Header is sent as is and never modified; if it has no User-Agent, Config.UserAgent is sent on a
	// copy (set one to save the copy). Like Body, do not modify it once Do has been called.
	Header http.Header
	// Body is sent as is. Treat it as immutable: net/http may still be reading it when Do returns
	// (a receiver can answer before reading the whole request).
	Body []byte
	// Timeout bounds the whole attempt: waiting for a connection, connect, TLS, writing the request,
	// the response headers and the capped body read. 0 means Config.DefaultTimeout.
	Timeout time.Duration
	// EgressPool selects a named pool of Config.Pools; "" is the default pool (Config.EgressIPs).
	EgressPool string
	// Key is stable per endpoint (its id). It picks the egress IP within the pool by a deterministic
	// hash, so an endpoint always leaves from the same IP. "" hashes the URL instead.
	Key string
	// TLS is the endpoint's TLS client configuration: client certificate for mTLS, CA bundle,
	// ServerName. nil means the system roots. Transports are cached per (egress IP, *tls.Config
	// pointer): keep one *tls.Config per endpoint and pass the same pointer on every attempt, and do
	// not modify it after first use (crypto/tls already requires that). When the endpoint's
	// certificate changes build a new *tls.Config; the old one's transport is closed once the old
	// config is garbage collected. A config whose callbacks capture the config itself is never
	// collected, so its transport lives until Close.
	TLS *tls.Config
	// Proxy, when set, overrides Config.Proxy for this request (same rules: http or https URL, trusted,
	// see Config.Proxy). Transports are cached per proxy URL, so keep the set of proxies small.
	Proxy *url.URL
}

// Response is the outcome of one attempt. Err and StatusCode are independent: a status with an error
// means the response headers arrived but the body read failed (reset, timeout); the receiver did
// answer, so a 2xx there is the receiver's acceptance.
type Response struct {
	StatusCode int         // 0 if no response headers arrived
	Header     http.Header // response headers, nil if none arrived
	// Body is at most Config.KeepBodyBytes of the response body, the part received before any error.
	Body          []byte
	BodyTruncated bool          // the body was longer than Body
	Latency       time.Duration // from sending to the end of the body read (or the error)
	EgressIP      string        // local IP of the connection used, "" if none was obtained
	Err           error         // see the Err* sentinels
}

// Pool sends attempts over keep-alive connections bound to egress IPs. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	guard  *Policy              // nil: no SSRF guard
	proxy  string               // cfg.Proxy.String(), "" when direct: the key of every egress's plain transport
	pools  map[string][]*egress // "" is the default pool; immutable after New
	all    []*egress            // every distinct egress once, for Close; immutable after New
	ua     []string             // {cfg.UserAgent}, shared by every header that lacks one
	bufs   sync.Pool            // *[]byte of cfg.KeepBodyBytes: body-read buffers
	closed atomic.Bool
}

// egress is one source address and the transports dialing from it. net/http pools connections by
// (proxy, scheme, addr) only, so binding a local address needs a transport of its own.
type egress struct {
	ip    netip.Addr      // invalid means the system's choice
	ipStr string          // ip.String(), so filling Response.EgressIP costs nothing
	plain *http.Transport // no Request.TLS, default proxy (Config.Proxy or none): the lock-free common case
	mk    func(*tls.Config, *url.URL) *http.Transport

	mu    sync.Mutex // guards byKey
	byKey map[transportKey]*http.Transport

	// direct dials destinations (guarded); the lean client dials with it too.
	direct  *net.Dialer
	hostsMu sync.RWMutex         // guards hosts
	hosts   map[string]*leanHost // lean client connections by URL host
}

// transportKey names a non-plain transport of one egress.
type transportKey struct {
	tls   weak.Pointer[tls.Config] // zero: no per-request TLS config
	proxy string                   // the proxy URL, "" for direct connections
}

// New validates cfg (filling defaults) and builds one transport per distinct egress IP. Transports for
// Request.TLS configs are built on first use.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:   cfg,
		pools: make(map[string][]*egress, 1+len(cfg.Pools)),
		ua:    []string{cfg.UserAgent},
	}
	if cfg.BlockPrivate {
		allow := make([]netip.Prefix, len(cfg.AllowCIDRs))
		for i, pre := range cfg.AllowCIDRs {
			allow[i] = pre.Masked()
		}
		p.guard = &Policy{Allow: allow}
	}
	if cfg.Proxy != nil {
		p.proxy = cfg.Proxy.String()
	}
	keep := cfg.KeepBodyBytes
	p.bufs.New = func() any { b := make([]byte, keep); return &b }

	// An IP listed in several pools shares one egress, so its connections are shared too.
	byIP := make(map[netip.Addr]*egress)
	resolve := func(ips []netip.Addr) []*egress {
		if len(ips) == 0 {
			ips = []netip.Addr{{}}
		}
		out := make([]*egress, len(ips))
		for i, ip := range ips {
			ip = ip.Unmap()
			e := byIP[ip]
			if e == nil {
				e = p.newEgress(ip)
				byIP[ip] = e
				p.all = append(p.all, e)
			}
			out[i] = e
		}
		return out
	}
	p.pools[""] = resolve(cfg.EgressIPs)
	for name, ips := range cfg.Pools {
		p.pools[name] = resolve(ips)
	}
	// The caller's slices are not retained.
	p.cfg.EgressIPs, p.cfg.Pools, p.cfg.AllowCIDRs = nil, nil, nil
	return p, nil
}

func (p *Pool) newEgress(ip netip.Addr) *egress {
	// direct dials destinations and is guarded; viaProxy dials only the (trusted) proxy.
	direct := &net.Dialer{Timeout: p.cfg.DialTimeout}
	if p.guard != nil {
		direct.ControlContext = p.guard.control
	}
	viaProxy := &net.Dialer{Timeout: p.cfg.DialTimeout}
	e := &egress{ip: ip, byKey: make(map[transportKey]*http.Transport), direct: direct, hosts: make(map[string]*leanHost)}
	if ip.IsValid() {
		// With LocalAddr set, the dialer also keeps only destination addresses of the same family.
		direct.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
		viaProxy.LocalAddr = direct.LocalAddr
		e.ipStr = ip.String()
	}
	e.mk = func(tc *tls.Config, proxy *url.URL) *http.Transport {
		if proxy != nil {
			return p.newTransport(viaProxy, tc, proxy)
		}
		return p.newTransport(direct, tc, nil)
	}
	e.plain = e.mk(nil, p.cfg.Proxy)
	return e
}

func (p *Pool) newTransport(d *net.Dialer, tc *tls.Config, proxy *url.URL) *http.Transport {
	c := &p.cfg
	stream := min(int64(c.KeepBodyBytes)+c.DrainBodyBytes, h2ConnWindow)
	var proxyFunc func(*http.Request) (*url.URL, error)
	if proxy != nil {
		proxyFunc = http.ProxyURL(proxy)
	}
	return &http.Transport{
		// Only an explicitly configured proxy: HTTP(S)_PROXY from the environment would make deliveries
		// leave from the proxy's address and silently defeat static egress.
		Proxy:               proxyFunc,
		DialContext:         d.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: c.DialTimeout,
		// A custom DialContext turns HTTP/2 off unless forced; receivers that offer h2 over TLS get it.
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: c.MaxIdleConnsPerHost,
		MaxConnsPerHost:     c.MaxConnsPerHost,
		IdleConnTimeout:     c.IdleConnTimeout,
		// The attempt log shows the bytes on the wire, and "Header sent as is" means no
		// Accept-Encoding the caller did not set: no transparent gzip.
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		HTTP2: &http.HTTP2Config{
			// An HTTP/2 stream may buffer no more than we would read of it (net/http: 4 MiB).
			MaxReceiveBufferPerStream:     int(stream),
			MaxReceiveBufferPerConnection: h2ConnWindow,
			SendPingTimeout:               h2PingAfter,
		},
	}
}

// transport returns the transport for (tc, proxy): the shared plain one when both are the defaults,
// or the one cached for them. proxyKey is proxy.String() ("" for direct) and defProxy the key of the
// plain transport's proxy.
func (e *egress) transport(tc *tls.Config, proxy *url.URL, proxyKey, defProxy string) *http.Transport {
	if tc == nil && proxyKey == defProxy {
		return e.plain
	}
	// TLS configs are keyed weakly so the cache never keeps an endpoint's config (and its private key)
	// alive; the transport holds a clone, which also shields the caller's config from net/http adding
	// "h2" to NextProtos. Proxies are operator-configured and few: keyed by URL, kept until Close.
	key := transportKey{proxy: proxyKey}
	if tc != nil {
		key.tls = weak.Make(tc)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.byKey[key]; t != nil {
		return t
	}
	var clone *tls.Config
	if tc != nil {
		clone = tc.Clone()
	}
	t := e.mk(clone, proxy)
	e.byKey[key] = t
	if tc != nil {
		runtime.AddCleanup(tc, e.forget, key)
	}
	return t
}

// forget drops the transport of a collected TLS config. It runs on the runtime's cleanup goroutine.
func (e *egress) forget(key transportKey) {
	e.mu.Lock()
	t := e.byKey[key]
	delete(e.byKey, key)
	e.mu.Unlock()
	if t != nil {
		t.CloseIdleConnections()
	}
}

func (e *egress) closeIdle() {
	e.plain.CloseIdleConnections()
	e.hostsMu.RLock()
	for _, h := range e.hosts {
		h.closeIdle()
	}
	e.hostsMu.RUnlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.byKey {
		t.CloseIdleConnections()
	}
}

// tlsTransports reports how many per-TLS-config transports are cached; for tests.
func (e *egress) tlsTransports() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k := range e.byKey {
		if k.tls != (weak.Pointer[tls.Config]{}) {
			n++
		}
	}
	return n
}

// proxyTransports reports how many transports are cached for a non-default proxy without a TLS
// config; for tests.
func (e *egress) proxyTransports() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k := range e.byKey {
		if k.tls == (weak.Pointer[tls.Config]{}) {
			n++
		}
	}
	return n
}

// localIP names the local address of c, without allocating in the common case of a bound egress IP.
func (e *egress) localIP(c net.Conn) string {
	la := c.LocalAddr()
	ta, ok := la.(*net.TCPAddr)
	if !ok {
		return la.String()
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip == e.ip {
		return e.ipStr
	}
	return ip.String()
}

// Close closes idle connections of every transport and makes later Do calls fail with ErrClosed.
// Attempts in flight finish; their connections are closed as they become idle.
func (p *Pool) Close() {
	p.closed.Store(true)
	for _, e := range p.all {
		e.closeIdle()
	}
}

// attempt is the per-Do state the httptrace hook writes into. GotConn runs on the goroutine calling
// RoundTrip (both HTTP/1 and HTTP/2), so conn needs no lock.
type attempt struct {
	trace httptrace.ClientTrace
	conn  net.Conn
}

func (a *attempt) gotConn(info httptrace.GotConnInfo) { a.conn = info.Conn }

// Do sends req and reads the capped response. It never panics and never returns nil; every failure is
// in Response.Err. Redirects are not followed: a 3xx is returned like any response.
func (p *Pool) Do(ctx context.Context, req *Request) *Response {
	res := &Response{}
	if req == nil {
		res.Err = fmt.Errorf("%w: nil Request", ErrBadRequest)
		return res
	}
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	if ctx == nil {
		res.Err = fmt.Errorf("%w: %s %s: nil Context", ErrBadRequest, method, redactRaw(req.URL))
		return res
	}
	if p.closed.Load() {
		res.Err = fmt.Errorf("%w: %s %s", ErrClosed, method, redactRaw(req.URL))
		return res
	}
	pool, ok := p.pools[req.EgressPool]
	if !ok {
		res.Err = fmt.Errorf("%w %q: %s %s", ErrUnknownPool, req.EgressPool, method, redactRaw(req.URL))
		return res
	}
	key := req.Key
	if key == "" {
		key = req.URL
	}
	eg := pool[pick(key, len(pool))]
	if !p.cfg.StdlibHTTP1 && req.TLS == nil && req.Proxy == nil && p.cfg.Proxy == nil && strings.HasPrefix(req.URL, "http://") {
		return p.doLean(ctx, req, method, eg, res)
	}
	return p.doStd(ctx, req, method, eg, res)
}

// doStd sends the attempt through net/http: https (HTTP/2, mTLS), proxies, and plain http when
// Config.StdlibHTTP1 is set.
func (p *Pool) doStd(ctx context.Context, req *Request, method string, eg *egress, res *Response) *Response {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = p.cfg.DefaultTimeout
	}
	actx, cancel := context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
	defer cancel()
	a := &attempt{}
	a.trace.GotConn = a.gotConn
	actx = httptrace.WithClientTrace(actx, &a.trace)

	hreq, err := http.NewRequestWithContext(actx, method, req.URL, nil)
	if err != nil {
		res.Err = badURL(method, req.URL, err)
		return res
	}
	if s := hreq.URL.Scheme; (s != "http" && s != "https") || hreq.URL.Host == "" {
		res.Err = fmt.Errorf("%w: %s %s: want an absolute http or https URL", ErrBadRequest, method, hreq.URL.Redacted())
		return res
	}
	hreq.Header = req.Header
	if _, ok := req.Header["User-Agent"]; !ok {
		// Copy rather than add: callers may share one Header between attempts and goroutines.
		hreq.Header = req.Header.Clone()
		if hreq.Header == nil {
			hreq.Header = make(http.Header, 1)
		}
		hreq.Header["User-Agent"] = p.ua
	}
	if len(req.Body) > 0 {
		setBody(hreq, req.Body)
	}

	proxy, proxyKey := p.cfg.Proxy, p.proxy
	if req.Proxy != nil {
		if err := checkProxy(req.Proxy); err != nil {
			res.Err = fmt.Errorf("%w: %s %s: Proxy %w", ErrBadRequest, method, hreq.URL.Redacted(), err)
			return res
		}
		proxy, proxyKey = req.Proxy, req.Proxy.String()
	}
	if proxy != nil && p.guard != nil {
		// The proxy resolves and dials the destination, so the dial-time guard only ever sees the
		// proxy's address; an IP-literal destination can still be judged here.
		if ip, err := netip.ParseAddr(hreq.URL.Hostname()); err == nil {
			if err := p.guard.Check(ip); err != nil {
				res.Err = fmt.Errorf("%w: %s %s: %w", ErrConnect, method, hreq.URL.Redacted(), err)
				return res
			}
		}
	}

	tr := eg.transport(req.TLS, proxy, proxyKey, p.proxy)
	start := time.Now()
	hres, err := tr.RoundTrip(hreq)
	if err == nil {
		res.StatusCode, res.Header = hres.StatusCode, hres.Header
		err = p.readBody(hres, res)
	}
	res.Latency = time.Since(start)
	if p.closed.Load() {
		// Close ran during this attempt, whose connection may have undone Close's "close newly idle
		// connections" by asking for an idle one; it is idle again now (or closed), so close it.
		tr.CloseIdleConnections()
	}
	if a.conn != nil {
		res.EgressIP = eg.localIP(a.conn)
	}
	if err != nil {
		res.Err = attemptErr(err, ctx, actx, a.conn != nil, method, hreq.URL)
	}
	return res
}

// setBody sets a request body of known length. It is io.NopCloser around a *bytes.Reader on purpose:
// net/http recognises exactly such bodies as in memory and writes headers and body with one syscall
// (one TCP segment for a small webhook); with any other type, such as a leaner custom ReadCloser, it
// flushes the headers first, which cost ~10% more client CPU in BenchmarkDo. The reader is not pooled
// either: net/http may still read a request body after RoundTrip returns (its write loop runs on when
// a receiver answers early), and a recycled reader could then send one endpoint's payload to another.
func setBody(hreq *http.Request, b []byte) {
	hreq.Body = io.NopCloser(bytes.NewReader(b))
	hreq.ContentLength = int64(len(b))
	// GetBody lets net/http resend on a fresh connection when a reused one died before anything was
	// written.
	hreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// attemptErr classifies a RoundTrip or body-read error.
func attemptErr(err error, parent, actx context.Context, gotConn bool, method string, u *url.URL) error {
	var kind error
	switch {
	case errors.Is(context.Cause(actx), errAttemptTimeout):
		kind = ErrTimeout
	case parent.Err() != nil:
		kind = ErrCanceled
		if errors.Is(parent.Err(), context.DeadlineExceeded) {
			kind = ErrTimeout
		}
	case isTimeout(err):
		kind = ErrTimeout
	case isTLS(err):
		kind = ErrTLS
	}
	switch {
	case gotConn && kind == nil:
		kind = ErrTransport
	case !gotConn && kind == nil:
		kind = ErrConnect
	case !gotConn:
		return fmt.Errorf("%w (%w): %s %s: %w", ErrConnect, kind, method, u.Redacted(), err)
	}
	return fmt.Errorf("%w: %s %s: %w", kind, method, u.Redacted(), err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTLS(err error) bool {
	var (
		rec    tls.RecordHeaderError
		verify *tls.CertificateVerificationError
		alert  tls.AlertError
		unk    x509.UnknownAuthorityError
		host   x509.HostnameError
		inv    x509.CertificateInvalidError
		op     *net.OpError
	)
	return errors.As(err, &rec) || errors.As(err, &verify) || errors.As(err, &alert) ||
		errors.As(err, &unk) || errors.As(err, &host) || errors.As(err, &inv) ||
		// crypto/tls reports an alert received from the peer (e.g. "certificate required" when a
		// TLS 1.3 server rejects our client certificate after the handshake) under this Op.
		(errors.As(err, &op) && op.Op == "remote error")
}

// badURL is the error for a request URL that does not parse.
func badURL(method, raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message would repeat the URL
	}
	return fmt.Errorf("%w: %s %s: %w", ErrBadRequest, method, redactRaw(raw), err)
}

// redactRaw names a URL in an error without its password. An unparsable URL is shown as is.
func redactRaw(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return fmt.Sprintf("%q", raw)
}
