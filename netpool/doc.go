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
// local address (httptrace GotConn, or the lean client's connection), not assumed.
//
// # Two clients: lean HTTP/1.1 and net/http
//
// A plain http:// attempt with no proxy (neither Config.Proxy nor Request.Proxy) and no Request.TLS
// goes through netpool's own HTTP/1.1 client; everything else (https with HTTP/2 through ALPN, mTLS,
// CONNECT and absolute-form proxying) goes through net/http, and Config.StdlibHTTP1 sends plain http
// there too (the escape hatch and the A/B switch). net/http's client spends most of its CPU on
// machinery a delivery does not need: a read loop and a write loop goroutine per connection and three
// goroutine hand-offs per request. The lean client does the exchange on the calling goroutine:
//
//   - Connections are pooled per egress (its net.Dialer, so LocalAddr and the SSRF guard's
//     ControlContext apply exactly as on the net/http path) and per URL host, in a LIFO idle list
//     capped at MaxIdleConnsPerHost. A connection idle for IdleConnTimeout is closed by a per-host
//     time.AfterFunc sweep (armed only while connections are idle; Close stops it) or when found
//     expired on take. MaxConnsPerHost is a semaphore per host; a waiter also takes a connection that
//     goes idle meanwhile. Close closes idle connections, and ones returned after Close.
//   - The request is "METHOD path?query HTTP/1.1", Host (without a default :80), the caller's Header as
//     is (User-Agent added when absent, on the wire, never in the map; Host, Content-Length,
//     Transfer-Encoding and Trailer in the map are ignored, as net/http does), Content-Length, body: one
//     write for a head and body within 4 KiB, one writev beyond. Header names and values that are not
//     valid (CR, LF, NUL, a name that is not a token) fail with ErrBadRequest before anything is sent.
//   - The response parser accepts HTTP/1.0 and 1.1 status lines, skips up to 5 interim 1xx responses,
//     canonicalises header keys, and caps the whole head (1xx heads and chunked trailers included) at
//     256 KiB. It is stricter than net/http where RFC 9112 lets a client be: obs-fold continuation
//     lines, a space before the colon, an unsolicited 101 and a sixth 1xx fail with ErrTransport and a
//     message naming the line. Bodies are Content-Length, chunked (chunk-size lines up to 4 KiB,
//     extensions and trailers skipped) or delimited by close (the connection is then not reused); 204,
//     304 and HEAD have none. Transfer-Encoding with Content-Length is read as chunked and the
//     connection dropped; conflicting, negative or overlong Content-Length values, and any
//     Transfer-Encoding but chunked, fail with ErrTransport and no status. Connection: close, or
//     HTTP/1.0 without keep-alive, ends the connection after the response. The keep/drain/close policy
//     below is one function shared with the net/http path.
//   - The attempt's deadline is the connection's deadline; the caller's context is watched with
//     context.AfterFunc, which sets a past deadline so a blocked read or write returns at once, and such
//     a connection is closed, never reused.
//   - A reused connection that fails with EOF, ECONNRESET or EPIPE before any response byte arrived is
//     one the receiver closed while it sat idle (nothing reads an idle connection, so that is only seen
//     on use): the attempt is resent once on a fresh connection. Delivery is at-least-once and receivers
//     dedupe on the delivery id; net/http retries the same case for requests with GetBody. Nothing is
//     retried once a response byte arrived, or on a fresh connection.
//
// Differences that remain: the lean client's dial is bounded by the attempt too, not only by
// DialTimeout (there is no background dial to hand to the next request), and host entries (a few
// hundred bytes per egress and destination host:port) are kept until Close. International host names
// go to net/http, which converts them to punycode.
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
// bounds dials and TLS handshakes on their own; the lean client's dials end with their attempt.
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
// The lean client allocates per attempt only the Response, the parsed URL, the response header map and
// its value strings, the kept body and the context.AfterFunc registration (9 allocations, ~840 B in
// BenchmarkDo): each connection has its own 4 KiB bufio.Reader and parse state, allocated once, and
// request heads are built in pooled 4 KiB buffers. A webhook whose head and body fit in 4 KiB is one
// write syscall; a larger body goes out with the head in one writev. No fmt on the hot path, no
// goroutine per attempt or per connection. CPU profiles of BenchmarkDo show the lean path spending over
// half its CPU in the read and write syscalls themselves.
//
// On the net/http path, body-read buffers (KeepBodyBytes) come from a sync.Pool; a response with a
// small Content-Length is read straight into its exact-size Body. The request body is
// io.NopCloser(bytes.NewReader(body)), allocated per attempt, on purpose on both counts. net/http
// recognises only that shape as an in-memory body and then writes headers and body with one syscall; a
// leaner custom ReadCloser made it flush the headers separately, one extra write and TCP segment per
// attempt, ~10% more client CPU in BenchmarkDo. And it is not pooled because net/http may still read a
// request body after RoundTrip returns (its write loop runs on when a receiver answers early): a
// recycled reader could send one endpoint's payload to another. Do calls Transport.RoundTrip directly:
// no http.Client, so no redirect machinery and no cookie jar. A Header without User-Agent is copied to
// add one, never modified; the dispatcher saves that copy by setting it.
//
// # Client choice: our own HTTP/1.1, net/http for the rest
//
// The design brief measured fasthttp's client at ~20 µs of client CPU per request on this machine
// against net/http's ~35, and net/http's client side was the largest single item (~41 µs) of the
// engine's CPU per delivery (issue #8). fasthttp itself was not adopted: no HTTP/2, weaker proxy
// support, and binding a source address, per-endpoint TLS and capped body reads are plain net/http
// configuration. So plain-http deliveries, the egress-critical case, use the lean client above, and
// everything needing TLS, HTTP/2 or a proxy stays on net/http. BenchmarkDo (1 KiB POST, 64 goroutines,
// keep-alive, the server in a separate process so cpu-us/req is the client's CPU):
//
//	go test -c -o /tmp/netpool.test ./netpool
//	for i in 1..8; for c in netpool netpool-stdlib http.Client:
//	    /tmp/netpool.test -test.run '^$' -test.bench "BenchmarkDo/$c\$" -test.benchtime 2s
//	(2 cores shared with other builds, 2026-11-27; medians of 8 alternating runs, min-max in brackets)
//	                          req/s                  client CPU/req     allocs/op   B/op
//	netpool.Do (lean)         20.4k (17.5k-27.7k)    24 us (21-26)       9          840
//	netpool.Do (StdlibHTTP1)  13.1k ( 6.4k-14.9k)    54 us (44-69)      59          4.4k
//	http.Client               11.3k (10.7k-14.3k)    61 us (58-68)      66          5.7k
//
// The machine was busier than on 2026-11-26, when the net/http path measured 41 us and http.Client
// 45 us; the comparison between alternating runs is the point. In the whole delivery path
// (Raft, Pebble, engine and an in-process sink, so the sink's CPU is counted too):
//
//	go test -c -o /tmp/dispatcher.test ./dispatcher; 6 alternating runs of each of
//	    /tmp/dispatcher.test -test.run '^$' -test.bench 'EngineEgress/endpoints=1$' -test.benchtime 40000x -egress.stdlib=false|true
//	                 cpu-µs/delivery        allocs/delivery
//	lean             190 (181-204)          82
//	StdlibHTTP1      225 (198-237)          126
//
// and a CPU profile of that benchmark (-egress.cpuprofile) puts Pool.Do at ~20 µs per delivery,
// against the ~41 µs net/http's client took in issue #8's profile.
package netpool
