// Package netpool sends webhook delivery attempts over pooled keep-alive HTTP connections that leave
// from static egress IPs.
//
// # What it owns
//
// The client side of one attempt: picking the egress IP, the connection pools behind it, per-endpoint
// TLS, an optional forward proxy, the SSRF guard, the attempt timeout, reading the response under a
// memory cap, and classifying failures. It does not sign, retry, rate-limit or break circuits; the
// dispatcher does, and bounds in-flight attempts per endpoint (which is why MaxConnsPerHost defaults
// to unlimited).
//
//	p, err := netpool.New(netpool.Config{EgressIPs: ips, Pools: map[string][]netip.Addr{"eu": euIPs}})
//	res := p.Do(ctx, &netpool.Request{URL: ep.URL, Header: h, Body: payload, Key: ep.ID, Timeout: ep.Timeout})
//	switch {
//	case errors.Is(res.Err, netpool.ErrCanceled): // shutting down: not the endpoint's fault
//	case errors.Is(res.Err, netpool.ErrConnect):  // nothing was sent
//	case res.Err == nil && res.StatusCode/100 == 2:
//	}
//
// # One transport per egress IP
//
// net/http pools connections by (proxy, scheme, host:port); the local address is not part of the key.
// A single *http.Transport dialing from several source IPs would hand any idle connection to any
// request, so an endpoint could leave from an IP its receiver never allowlisted. Each egress IP
// therefore has its own http.Transport whose net.Dialer has LocalAddr set; an IP listed in several
// pools is one egress and shares its connections. With LocalAddr set the dialer only tries
// destination addresses of the same family (an IPv4 egress never dials an AAAA record). Environment
// proxies (HTTP_PROXY) are ignored on purpose: they would make every delivery leave from the proxy
// (an explicit Config.Proxy does that knowingly; see below).
//
// Request.Key (the endpoint id) picks the IP within the pool: 64-bit FNV-1a, then jump consistent
// hashing. The mapping has no random seed, so it survives restarts, and growing a pool by one IP moves
// only 1/n of the endpoints (all to the new IP). Response.EgressIP is read back from the connection's
// local address (httptrace GotConn), not assumed.
//
// # TLS and HTTP/2
//
// Without Request.TLS the system roots are used. HTTP/1.1 keep-alive always; HTTP/2 when a TLS
// receiver offers it through ALPN (ForceAttemptHTTP2, which a custom DialContext otherwise turns
// off). Request.TLS is the seam for per-endpoint client certificates (mTLS) and CA bundles: each
// egress caches one transport per *tls.Config pointer, so a cached lookup is a mutex and a map read.
// The cache key is a weak pointer and the transport holds a clone, so the cache never keeps an
// endpoint's config (and private key) alive: when the endpoint's certificate rotates the dispatcher
// builds a new *tls.Config, and the old one's transport is dropped, its idle connections closed, once
// the old config is garbage collected (runtime.AddCleanup). The rule for callers is one long-lived
// *tls.Config per endpoint, never modified after first use: a fresh config per attempt would get a
// fresh transport, and a fresh TLS handshake, every time.
//
// # SSRF guard
//
// Endpoint URLs come from tenants, so a delivery must not become a way into the operator's network.
// With Config.BlockPrivate each egress's dialer gets a ControlContext hook (Policy.Check) that sees the
// numeric address the socket is about to connect to, after DNS resolution and for every address the
// dialer tries: loopback, RFC 1918 and ULA (fc00::/7) private ranges, link-local (169.254/16,
// fe80::/10, cloud metadata included), CGNAT (100.64/10), multicast, unspecified, documentation,
// benchmarking and the other IANA special-purpose ranges are refused. IPv4-mapped IPv6 addresses are
// judged as IPv4 and NAT64 (64:ff9b::/96) by the IPv4 address they embed. Because the check runs on
// the resolved address at connect time, a name that resolves, or is rebound between a check and the
// dial, to an internal address is refused too; a pooled keep-alive connection stays on the address
// that was checked when it was dialed. Config.AllowCIDRs opens ranges (127.0.0.0/8 for tests and
// "make run", an internal receiver's subnet). A refused attempt fails with ErrConnect and
// ErrForbiddenAddress, and the message names the IP and its range:
//
//	netpool: connect failed: POST http://localhost:8080/h: dial tcp 127.0.0.1:8080: netpool: forbidden
//	address: 127.0.0.1 is loopback (127.0.0.0/8); add it to AllowCIDRs to allow it
//
// The guard is off in the zero Config so library tests can deliver to 127.0.0.1; the binary turns it
// on by default.
//
// # Forward proxy
//
// Config.Proxy (or Request.Proxy, per request) sends attempts through an HTTP forward proxy: https
// destinations in a CONNECT tunnel, with TLS (and Request.TLS, mTLS included) end to end to the
// destination; http destinations in absolute form. user:password in the proxy URL becomes
// Proxy-Authorization. Transports are cached per (egress IP, TLS config, proxy URL); the egress IP
// binds the connection to the proxy, and Response.EgressIP is the local address towards the proxy.
// The environment's HTTP(S)_PROXY is never read.
//
// The proxy and the guard: the proxy is operator-configured and trusted, so its own address (often
// private) is not checked. The destination's name is resolved by the proxy, not here, so the
// dial-time guard cannot see the destination's address; only IP-literal destinations
// (http://10.0.0.5/) are still judged, before anything is sent. A name that resolves to an internal
// address goes through. With a proxy, SSRF protection for names is therefore the proxy's job: run
// one that filters internal addresses at its own dial time (Stripe's smokescreen, or squid with
// destination ACLs) and place it where it cannot reach internal services. Resolving the name here as
// well would not help: the proxy resolves again, and may get another answer.
//
// # Response bodies: keep, drain, or close
//
// Up to KeepBodyBytes (64 KiB) are kept in Response.Body for the attempt log. A longer body is read
// and discarded for up to DrainBodyBytes (256 KiB) more, so the HTTP/1.1 connection can be reused;
// if it is longer still, the body is closed unread, which closes that connection (net/http never
// reuses a connection with unread body bytes). When Content-Length already says the body exceeds
// both budgets, nothing beyond the kept part is read. Over HTTP/2 nothing is drained: closing the
// body resets only its stream, and one extra byte is read to tell whether the body was truncated. A
// 100 MB response therefore costs at most KeepBodyBytes+DrainBodyBytes of reading and KeepBodyBytes
// of memory. Related bounds: response headers are capped at 256 KiB (net/http's default is 10 MiB),
// an HTTP/2 stream may buffer at most KeepBodyBytes+DrainBodyBytes and a connection 4 MiB unread, and
// HTTP/2 connections silent for 30 s are pinged so a dead one is dropped.
//
// # Timeouts
//
// Request.Timeout (default Config.DefaultTimeout) bounds the whole attempt: waiting for a pooled
// connection, connect, TLS handshake, writing the request, the response headers and the capped body
// read, so a receiver dripping one byte a second is cut at the deadline. Latency runs from the send
// to the end of the body read. The caller's context bounds it too. net/http keeps a dial going after
// the request that started it has given up, for the next request, so DialTimeout (default 10 s)
// bounds dials and TLS handshakes on their own.
//
// # Errors
//
// Response.Err wraps sentinels with %w plus the method, the URL (password redacted) and the cause:
//
//	ErrConnect    no connection was obtained, nothing was sent (alone: refused, unreachable)
//	ErrTimeout    the attempt's Timeout or the caller's deadline passed, or a dial timed out
//	ErrTLS        handshake or certificate failure, either side
//	ErrTransport  the connection failed after it was obtained (reset, short body, protocol error)
//	ErrCanceled   the caller's context was canceled
//	ErrForbiddenAddress  the SSRF guard refused the destination (with ErrConnect)
//	ErrBadRequest, ErrUnknownPool, ErrClosed: the attempt could not start
//
// ErrConnect is combined with ErrTimeout, ErrTLS or ErrCanceled when that is why no connection was
// obtained. A response whose headers arrived but whose body read failed has both StatusCode and Err
// set; the receiver answered, so its status stands. One limit of net/http: a TLS 1.3 server that
// rejects our client certificate does so after the handshake, and if its alert reaches the HTTP/2
// connection before the request does, the error no longer carries the TLS cause (ErrTransport).
//
// # Allocations and syscalls
//
// Body-read buffers (KeepBodyBytes) come from a sync.Pool; a response with a small Content-Length is
// read straight into its exact-size Body. The request body is io.NopCloser(bytes.NewReader(body)),
// allocated per attempt, on purpose on both counts. net/http recognises only that shape as an
// in-memory body and then writes headers and body with one syscall; a leaner custom ReadCloser made
// it flush the headers separately, one extra write and TCP segment per attempt, ~10% more client CPU
// in BenchmarkDo. And it is not pooled because net/http may still read a request body after
// RoundTrip returns (its write loop runs on when a receiver answers early): a recycled reader could
// send one endpoint's payload to another. Do calls Transport.RoundTrip directly: no http.Client, so
// no redirect machinery and no cookie jar. A Header without User-Agent is copied to add one, never
// modified; the dispatcher saves that copy by setting it.
//
// # Client choice: net/http, not fasthttp
//
// The design brief measured fasthttp's client at ~1.4x net/http's throughput on this machine (~20 vs
// ~35 µs of client CPU per request). We still use net/http: fasthttp has no HTTP/2 and weaker proxy
// support, and binding a source address, per-endpoint TLS and capped body reads are all plain
// net/http configuration. BenchmarkDo measures Do against a bare http.Client (1 KiB POST, 64
// goroutines, keep-alive, the server in a separate process so cpu-us/req is the client's CPU):
//
//	go test -run '^$' -bench BenchmarkDo -benchtime 2s ./netpool/   (2 cores, 2026-11-26)
//	medians of 12 alternating runs, min-max in brackets
//	               req/s                  client CPU/req      allocs/op   B/op
//	netpool.Do     14.4k (11.1k-18.0k)    41 us (36-57)       59          4.4k
//	http.Client    13.0k ( 9.4k-18.0k)    45 us (40-53)       66          5.7k
//
// The machine was shared with other builds (load average 9-13 on 2 cores), so absolute figures sit
// below the brief's quiet ~24-28k req/s and ~35 us; the comparison between the two, run alternately,
// is the point. Do costs no more than a bare http.Client (it skips the http.Client layer; its own
// egress pick, trace hook and capped read are small). Before the request body took the NopCloser
// shape described above, Do measured ~52 against ~48 us/req. fasthttp would save ~15 us of client
// CPU per request; if that ever becomes the egress ceiling, scale out across nodes (each with its own
// egress IPs) before giving up HTTP/2.
package netpool
