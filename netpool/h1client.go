package netpool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The lean HTTP/1.1 client: plain-http attempts without a proxy (see the package doc, "Two clients").
// The calling goroutine writes the request and reads the response itself on a pooled keep-alive
// connection; there are no per-connection goroutines, so an idle connection is only found dead when
// it is next used (see the stale-connection retry in doLean).

// leanBufSize sizes a connection's read buffer and the pooled request buffers: a webhook request head
// plus a small body goes out in one write, and a receiver's usual answer is read with one read.
const leanBufSize = 4 << 10

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads and writes return at once.
var aLongTimeAgo = time.Unix(1, 0)

// leanConn is one keep-alive connection. It is owned by exactly one attempt at a time, or by its
// host's idle list.
type leanConn struct {
	c      net.Conn
	br     *bufio.Reader
	ip     string // egress IP, read from the local address once
	h      *leanHost
	idleAt time.Time
	rp     respParser
}

// close closes the connection and frees its MaxConnsPerHost slot. Only the owner calls it, once.
func (lc *leanConn) close() {
	lc.c.Close()
	if lc.h.sem != nil {
		<-lc.h.sem
	}
}

// abort makes the owner's blocked read or write return; it runs on context.AfterFunc's goroutine.
func (lc *leanConn) abort() { lc.c.SetDeadline(aLongTimeAgo) }

// leanHost is the connections of one egress to one destination host:port.
type leanHost struct {
	p    *Pool
	eg   *egress
	addr string // host:port to dial
	host string // the Host header: the URL's host, without a default port
	// sem holds one token per open connection when MaxConnsPerHost is set; nil when unlimited.
	sem chan struct{}
	// idleReady wakes one attempt waiting for a MaxConnsPerHost slot when a connection goes idle.
	idleReady chan struct{}

	mu    sync.Mutex  // guards idle, armed and timer
	idle  []*leanConn // LIFO: the most recently used last, so idle[0] is the oldest
	armed bool        // timer is set to expire the oldest idle connection
	timer *time.Timer // the idle-timeout sweep; nil until first needed
}

// leanHost returns the host entry for a URL host (as written in the URL, port optional).
func (e *egress) leanHost(p *Pool, urlHost string) *leanHost {
	e.hostsMu.RLock()
	h := e.hosts[urlHost]
	e.hostsMu.RUnlock()
	if h != nil {
		return h
	}
	e.hostsMu.Lock()
	defer e.hostsMu.Unlock()
	if h := e.hosts[urlHost]; h != nil {
		return h
	}
	h = &leanHost{p: p, eg: e, addr: urlHost, host: urlHost}
	// url.URL.Port is "" for "host" and "host:"; net/http dials :80 for both.
	u := url.URL{Host: urlHost}
	switch port := u.Port(); port {
	case "", "80":
		h.addr = net.JoinHostPort(u.Hostname(), "80")
		h.host = u.Hostname()
		if len(h.host) > 0 && h.host[0] != '[' && indexByteString(h.host, ':') >= 0 {
			h.host = "[" + h.host + "]" // IPv6 literal
		}
	}
	if p.cfg.MaxConnsPerHost > 0 {
		h.sem = make(chan struct{}, p.cfg.MaxConnsPerHost)
		h.idleReady = make(chan struct{}, 1)
	}
	e.hosts[urlHost] = h
	return h
}

// takeIdle pops the most recently used idle connection that has not timed out, or returns nil.
func (h *leanHost) takeIdle() *leanConn {
	now := time.Now()
	h.mu.Lock()
	n := len(h.idle)
	if n == 0 {
		h.mu.Unlock()
		return nil
	}
	lc := h.idle[n-1]
	h.idle[n-1] = nil
	h.idle = h.idle[:n-1]
	var expired []*leanConn
	if now.Sub(lc.idleAt) >= h.p.cfg.IdleConnTimeout {
		// The newest is too old, so are all the others.
		expired = append(h.idle, lc)
		h.idle = nil
		lc = nil
	}
	h.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
	return lc
}

// put returns a connection whose last response was read to its end.
func (h *leanHost) put(lc *leanConn) {
	lc.idleAt = time.Now()
	h.mu.Lock()
	// Close checks p.closed under no lock of ours but sweeps every host under h.mu after setting it,
	// so a connection added here either is seen by that sweep or sees closed.
	if h.p.closed.Load() || len(h.idle) >= h.p.cfg.MaxIdleConnsPerHost {
		h.mu.Unlock()
		lc.close()
		return
	}
	h.idle = append(h.idle, lc)
	if !h.armed {
		h.armed = true
		if h.timer == nil {
			h.timer = time.AfterFunc(h.p.cfg.IdleConnTimeout, h.expire)
		} else {
			h.timer.Reset(h.p.cfg.IdleConnTimeout)
		}
	}
	h.mu.Unlock()
	if h.idleReady != nil {
		select {
		case h.idleReady <- struct{}{}:
		default:
		}
	}
}

// expire closes idle connections past IdleConnTimeout and re-arms for the oldest remaining one. It
// runs on the timer's goroutine; Close stops the timer.
func (h *leanHost) expire() {
	timeout := h.p.cfg.IdleConnTimeout
	now := time.Now()
	h.mu.Lock()
	n := 0
	for n < len(h.idle) && now.Sub(h.idle[n].idleAt) >= timeout {
		n++
	}
	expired := make([]*leanConn, n)
	copy(expired, h.idle[:n])
	h.idle = append(h.idle[:0], h.idle[n:]...)
	clear(h.idle[len(h.idle):cap(h.idle)])
	if len(h.idle) > 0 && !h.p.closed.Load() {
		h.timer.Reset(timeout - now.Sub(h.idle[0].idleAt))
	} else {
		h.armed = false
	}
	h.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// closeIdle closes every idle connection and stops the sweep; for Close.
func (h *leanHost) closeIdle() {
	h.mu.Lock()
	idle := h.idle
	h.idle = nil
	if h.timer != nil {
		h.timer.Stop()
	}
	h.armed = false
	h.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// idleCount reports how many connections are idle; for tests.
func (h *leanHost) idleCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.idle)
}

// get returns an idle connection (reused true) or dials one. fresh skips the idle list. Errors mean no
// connection was obtained.
func (h *leanHost) get(ctx context.Context, deadline time.Time, fresh bool) (lc *leanConn, reused bool, err error) {
	if !fresh {
		if lc := h.takeIdle(); lc != nil {
			return lc, true, nil
		}
	}
	if h.sem != nil {
		if lc, err := h.waitSlot(ctx, deadline, fresh); lc != nil || err != nil {
			return lc, lc != nil, err
		}
	}
	lc, err = h.dial(ctx, deadline)
	if err != nil && h.sem != nil {
		<-h.sem
	}
	return lc, false, err
}

// waitSlot waits for a MaxConnsPerHost slot (then returns nil, nil and the caller dials) or, unless
// fresh, for an idle connection.
func (h *leanHost) waitSlot(ctx context.Context, deadline time.Time, fresh bool) (*leanConn, error) {
	select {
	case h.sem <- struct{}{}:
		return nil, nil
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	idleReady := h.idleReady
	if fresh {
		idleReady = nil
	}
	for {
		select {
		case h.sem <- struct{}{}:
			return nil, nil
		case <-idleReady:
			if lc := h.takeIdle(); lc != nil {
				return lc, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a connection (MaxConnsPerHost %d): %w", cap(h.sem), context.Cause(ctx))
		case <-timer.C:
			return nil, fmt.Errorf("waiting for a connection (MaxConnsPerHost %d): %w", cap(h.sem), errAttemptTimeout)
		}
	}
}

// dial connects with the egress's dialer, so the local address binding and the SSRF guard apply as on
// the net/http path. DialTimeout and the attempt's deadline both bound it.
func (h *leanHost) dial(ctx context.Context, deadline time.Time) (*leanConn, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := h.eg.direct.DialContext(dctx, "tcp", h.addr)
	if err != nil {
		if !time.Now().Before(deadline) && ctx.Err() == nil {
			err = fmt.Errorf("%w (%w)", errAttemptTimeout, err)
		}
		return nil, err
	}
	return &leanConn{c: c, br: bufio.NewReaderSize(c, leanBufSize), ip: h.eg.localIP(c), h: h}, nil
}

// reqBufs are request-head buffers; a small body is copied in behind the head so one write sends all.
var reqBufs = sync.Pool{New: func() any { b := make([]byte, 0, leanBufSize); return &b }}

// errHeader marks a request header that cannot be sent; it becomes ErrBadRequest.
var errHeader = errors.New("invalid request header")

// appendRequest writes the request head (and the body when it fits in the buffer's capacity) to b.
// It reports whether the body was included.
func (p *Pool) appendRequest(b []byte, method string, u *url.URL, host string, hdr http.Header, body []byte) ([]byte, bool, error) {
	b = append(b, method...)
	b = append(b, ' ')
	if u.Opaque != "" {
		b = append(b, u.RequestURI()...)
	} else {
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		b = append(b, path...)
		if u.ForceQuery || u.RawQuery != "" {
			b = append(b, '?')
			b = append(b, u.RawQuery...)
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	hasUA := false
	for k, vs := range hdr {
		// As net/http's Request.Write: these come from the request itself, not the header map.
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent":
			hasUA = true
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return b, false, fmt.Errorf("%w name %q", errHeader, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return b, false, fmt.Errorf("%w %q: invalid value", errHeader, k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if !hasUA {
		b = append(b, "User-Agent: "...)
		b = append(b, p.cfg.UserAgent...)
		b = append(b, "\r\n"...)
	}
	// net/http sends "Content-Length: 0" for bodiless POST, PUT and PATCH, and nothing for other methods.
	if len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if len(b)+len(body) <= cap(b) {
		return append(b, body...), true, nil
	}
	return b, false, nil
}

// isStale reports whether err on a reused connection, before any response byte, means the peer had
// closed it while it sat idle.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// doLean sends one attempt on the lean client. The caller checked that it is eligible (http scheme,
// no proxy, no TLS config) and filled nothing in res yet.
func (p *Pool) doLean(ctx context.Context, req *Request, method string, eg *egress, res *Response) *Response {
	u, err := url.Parse(req.URL)
	if err != nil {
		res.Err = badURL(method, req.URL, err)
		return res
	}
	if u.Host == "" {
		res.Err = fmt.Errorf("%w: %s %s: want an absolute http or https URL", ErrBadRequest, method, u.Redacted())
		return res
	}
	if !httpguts.ValidHeaderFieldName(method) { // a method is a token, as a header name is
		res.Err = fmt.Errorf("%w: %s: invalid method %q", ErrBadRequest, u.Redacted(), method)
		return res
	}
	for i := 0; i < len(u.Host); i++ {
		if u.Host[i] >= 0x80 {
			// net/http converts international names to punycode; leave that to it.
			return p.doStd(ctx, req, method, eg, res)
		}
	}
	h := eg.leanHost(p, u.Host)

	bp := reqBufs.Get().(*[]byte)
	defer reqBufs.Put(bp)
	head, bodyIn, err := p.appendRequest((*bp)[:0], method, u, h.host, req.Header, req.Body)
	if cap(head) <= 16*leanBufSize { // a caller's huge header should not stay in the pool
		*bp = head[:0]
	}
	if err != nil {
		res.Err = fmt.Errorf("%w: %s %s: %w", ErrBadRequest, method, u.Redacted(), err)
		return res
	}

	start := time.Now()
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = p.cfg.DefaultTimeout
	}
	deadline := start.Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if ctx.Err() != nil {
		res.Err = leanErr(context.Cause(ctx), ctx, deadline, false, method, u)
		return res
	}
	for try := 0; ; try++ {
		lc, reused, err := h.get(ctx, deadline, try > 0)
		if err != nil {
			res.Latency = time.Since(start)
			res.Err = leanErr(err, ctx, deadline, false, method, u)
			return res
		}
		res.EgressIP = lc.ip
		stale, err := p.exchange(ctx, lc, deadline, method, head, bodyIn, req.Body, res)
		if stale && reused && try == 0 {
			// The receiver closed this keep-alive connection while it was idle and nothing of a
			// response arrived: it cannot have been processed as an answered request; resend once on
			// a fresh connection (delivery is at-least-once and receivers dedupe on the delivery id).
			continue
		}
		res.Latency = time.Since(start)
		if err != nil {
			res.Err = leanErr(err, ctx, deadline, true, method, u)
		}
		return res
	}
}

// exchange writes the request on lc and reads the response into res, then returns lc to its host or
// closes it. stale reports a failure that a reused connection's peer having closed it explains.
func (p *Pool) exchange(ctx context.Context, lc *leanConn, deadline time.Time, method string, head []byte, bodyIn bool, body []byte, res *Response) (stale bool, err error) {
	reuse := false
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, lc.abort)
	}
	defer func() {
		if stop != nil && !stop() {
			reuse = false // the abort ran, or is about to: the deadline is in the past
		}
		if reuse {
			lc.h.put(lc)
		} else {
			lc.close()
		}
	}()
	if err := lc.c.SetDeadline(deadline); err != nil {
		return false, err
	}
	if bodyIn || len(body) == 0 {
		_, err = lc.c.Write(head)
	} else {
		bufs := net.Buffers{head, body} // writev: still one syscall
		_, err = bufs.WriteTo(lc.c)
	}
	if err != nil {
		return isStale(err), err
	}
	if _, err := lc.br.Peek(1); err != nil {
		return isStale(err), err
	}
	reuse, err = p.parseResponse(&lc.rp, lc.br, method, res)
	if err != nil {
		if res.StatusCode == 0 {
			res.Header = nil
		}
		return false, err
	}
	if reuse && lc.br.Buffered() > 0 {
		reuse = false // bytes beyond the response: the connection is out of step
	}
	return false, nil
}

// leanErr classifies a lean-client error with attemptErr's rules: the attempt timeout is told from the
// caller's context by the context's state, since a conn deadline serves both.
func leanErr(err error, ctx context.Context, deadline time.Time, gotConn bool, method string, u *url.URL) error {
	var kind error
	switch {
	case ctx.Err() != nil:
		kind = ErrCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kind = ErrTimeout
		}
	case isTimeout(err) || errors.Is(err, errAttemptTimeout) || !time.Now().Before(deadline):
		kind = ErrTimeout
		if !errors.Is(err, errAttemptTimeout) {
			err = fmt.Errorf("%w: %w", errAttemptTimeout, err)
		}
	}
	switch {
	case kind == nil && gotConn:
		kind = ErrTransport
	case kind == nil:
		kind = ErrConnect
	case !gotConn:
		return fmt.Errorf("%w (%w): %s %s: %w", ErrConnect, kind, method, u.Redacted(), err)
	}
	return fmt.Errorf("%w: %s %s: %w", kind, method, u.Redacted(), err)
}
