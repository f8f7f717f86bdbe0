package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/internal/clock"
)

// Request is one publish: the HTTP publish body plus an optional project (root key only) and target.
type Request = wire.Publish

// Ack says a publish is committed: the event id, how many endpoints it goes to, and whether its
// idempotency key had been seen (the event is then the original one).
type Ack struct {
	EventID   string
	Matched   int
	Duplicate bool
}

// NackError is a publish the server refused.
type NackError struct {
	Code    wire.Code
	Message string
}

func (e *NackError) Error() string { return fmt.Sprintf("nack %s: %s", e.Code, e.Message) }

// Retryable reports whether the same request may succeed later (it was already retried
// Options.MaxRetries times when the client gives up).
func (e *NackError) Retryable() bool { return e.Code.Retryable() }

// ServerError is an ERROR frame: the server closed the connection for this reason.
type ServerError struct{ wire.Problem }

func (e *ServerError) Error() string { return "server closed the connection: " + e.Problem.Error() }

// Errors.
var (
	ErrClosed = errors.New("client: closed")
)

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// Key is a project key or the root key.
	Key string
	// Project is the connection's default project: required with the root key unless every Request
	// names its ProjectID; optional with a project key (its own project).
	Project string
	// TLS, when set, wraps the connection in TLS. The Sluice server itself speaks plain TCP; use this
	// to reach it through a TLS-terminating proxy.
	TLS *tls.Config
	// Compress S2-compresses frame payloads of at least 512 bytes when that makes them smaller.
	Compress bool
	// MaxInFlight is how many publishes may be accepted and unanswered at once; PublishAsync blocks
	// beyond it. The client also never has more on the wire than the server's max_in_flight.
	// Default 1024.
	MaxInFlight int
	// MaxBatch caps how many queued publishes one PUBLISH_BATCH frame carries (also capped by the
	// server's max_batch). 1 sends every publish in its own frame. Default 256.
	MaxBatch int
	// DialTimeout bounds connecting and authenticating. Default 5 s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff (with jitter) between reconnects and
	// before resending a retryable NACK. Defaults 50 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetries is how many times one publish is resent after retryable NACKs. Default 8. Resends
	// after a lost connection are not counted: they continue until Close.
	MaxRetries int
	// PingInterval: a PING is sent when nothing was written for this long, so idle connections stay
	// open. Default 15 s.
	PingInterval time.Duration
	// ReadTimeout: a connection that delivers nothing (no ACK, NACK or PONG) for this long is
	// considered dead and replaced. Default 60 s; it must exceed PingInterval.
	ReadTimeout time.Duration
	// Name identifies the client in the server's logs.
	Name   string
	Clock  clock.Clock
	Logger *slog.Logger
	// Dial replaces net.Dialer (tests, proxies).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (o *Options) setDefaults() {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 8
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 15 * time.Second
	}
	if o.ReadTimeout <= o.PingInterval {
		o.ReadTimeout = max(60*time.Second, 2*o.PingInterval)
	}
	if o.Name == "" {
		o.Name = "sluice-go"
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
}

// Future is the outcome of one publish.
type Future struct {
	done chan struct{}
	ack  Ack
	err  error
}

// Done is closed when the outcome is known.
func (f *Future) Done() <-chan struct{} { return f.done }

// Result blocks until the outcome is known.
func (f *Future) Result() (Ack, error) {
	<-f.done
	return f.ack, f.err
}

// Wait is Result bounded by ctx; the publish itself goes on when ctx ends first.
func (f *Future) Wait(ctx context.Context) (Ack, error) {
	select {
	case <-f.done:
		return f.ack, f.err
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
}

// call is one publish from acceptance to answer.
type call struct {
	item    []byte // the PUBLISH payload, idempotency key included
	fut     *Future
	retries int
	due     time.Time // for a retry: not before
}

// Stats counts the client's work.
type Stats struct {
	Connects   uint64 // successful connections, the first included
	Resent     uint64 // publishes sent again on a new connection
	Retried    uint64 // publishes sent again after a retryable NACK
	Acked      uint64
	Nacked     uint64 // final NACKs (after retries)
	InFlight   int    // accepted and unanswered
	Duplicates uint64
}

// Client publishes over one TCP connection at a time. It is safe for concurrent use.
type Client struct {
	opts   Options
	addr   string
	log    *slog.Logger
	window chan struct{} // one token per accepted, unanswered publish
	wake   chan struct{} // 1-buffered: something to send, or room to send it
	stopCh chan struct{}
	wg     sync.WaitGroup
	// ctx is cancelled by Close; reconnect attempts derive from it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the fields below and every session's inflight map.
	mu     sync.Mutex
	queue  []*call // to send, in order
	retry  []*call // waiting for their due time
	cur    *session
	closed bool
	fatal  error // the server refused this client for good

	connects, resent, retried, acked, nacked, dups atomic.Uint64
}

// session is one authenticated connection.
type session struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer // owned by the run goroutine
	limits   wire.AuthOK
	nextSeq  uint64
	inflight map[uint64]*call // guarded by Client.mu
	dead     chan struct{}    // closed by the reader when it stops
	err      error            // why, set before dead is closed
}

// Dial connects to a node and authenticates. It fails if the first connection cannot be made; after
// that the client reconnects by itself until Close.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	opts.setDefaults()
	cl := &Client{
		opts: opts, addr: addr, log: opts.Logger.With("component", "ingest-client", "addr", addr),
		window: make(chan struct{}, opts.MaxInFlight),
		wake:   make(chan struct{}, 1),
		stopCh: make(chan struct{}),
	}
	s, err := cl.connect(ctx)
	if err != nil {
		return nil, err
	}
	cl.ctx, cl.cancel = context.WithCancel(context.Background())
	cl.mu.Lock()
	cl.cur = s
	cl.mu.Unlock()
	cl.wg.Add(1)
	go cl.run(s)
	return cl, nil
}

// Publish sends one publish and waits for its answer: nil error means committed and acknowledged.
// When ctx ends first the publish still goes on (and may commit).
func (cl *Client) Publish(ctx context.Context, req *Request) (Ack, error) {
	f, err := cl.submit(ctx, req)
	if err != nil {
		return Ack{}, err
	}
	return f.Wait(ctx)
}

// PublishAsync queues one publish for pipelining and returns its future. It blocks while
// Options.MaxInFlight publishes are unanswered; errors (including ErrClosed) arrive in the future.
func (cl *Client) PublishAsync(req *Request) *Future {
	f, err := cl.submit(context.Background(), req)
	if err != nil {
		f = &Future{done: make(chan struct{}), err: err}
		close(f.done)
	}
	return f
}

// Close stops the client. Publishes not yet answered fail with ErrClosed; wait for their futures
// first to let them finish.
func (cl *Client) Close() error {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil
	}
	cl.closed = true
	if cl.cur != nil {
		cl.cur.nc.Close() // unblocks a write stuck on a peer that stopped reading
	}
	cl.mu.Unlock()
	close(cl.stopCh)
	cl.cancel()
	cl.wg.Wait()
	cl.failAll(ErrClosed)
	return nil
}

// Stats returns the counters.
func (cl *Client) Stats() Stats {
	return Stats{
		Connects: cl.connects.Load(), Resent: cl.resent.Load(), Retried: cl.retried.Load(),
		Acked: cl.acked.Load(), Nacked: cl.nacked.Load(), InFlight: len(cl.window), Duplicates: cl.dups.Load(),
	}
}

func (cl *Client) submit(ctx context.Context, req *Request) (*Future, error) {
	item, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}
	select {
	case cl.window <- struct{}{}:
	case <-cl.stopCh:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c := &call{item: item, fut: &Future{done: make(chan struct{})}}
	cl.mu.Lock()
	if cl.closed || cl.fatal != nil {
		err := cl.fatal
		cl.mu.Unlock()
		<-cl.window
		if err == nil {
			err = ErrClosed
		}
		return nil, err
	}
	cl.queue = append(cl.queue, c)
	cl.mu.Unlock()
	cl.signal()
	return c.fut, nil
}

func (cl *Client) signal() {
	select {
	case cl.wake <- struct{}{}:
	default:
	}
}

// complete answers a call and frees its window slot. Called once per call, never with mu held.
func (cl *Client) complete(c *call, ack Ack, err error) {
	c.fut.ack, c.fut.err = ack, err
	close(c.fut.done)
	<-cl.window
}

// failAll answers every call still held with err.
func (cl *Client) failAll(err error) {
	cl.mu.Lock()
	var all []*call
	all = append(all, cl.queue...)
	all = append(all, cl.retry...)
	cl.queue, cl.retry = nil, nil
	if s := cl.cur; s != nil {
		for _, c := range s.inflight {
			all = append(all, c)
		}
		clear(s.inflight)
	}
	cl.mu.Unlock()
	for _, c := range all {
		cl.complete(c, Ack{}, err)
	}
}

// run owns the connection: it writes on the live session, and when that dies it puts the session's
// unanswered publishes back at the head of the queue and reconnects with backoff.
func (cl *Client) run(s *session) {
	defer cl.wg.Done()
	attempt := 0
	for {
		if s == nil {
			if attempt > 0 && !cl.sleep(cl.backoff(attempt)) {
				return
			}
			attempt++
			ctx, cancel := context.WithTimeout(cl.ctx, cl.opts.DialTimeout)
			var err error
			s, err = cl.connect(ctx)
			cancel()
			if err != nil {
				if cl.isFatal(err) {
					cl.setFatal(err)
					return
				}
				if !cl.stopping() {
					cl.log.Warn("reconnect failed", "attempt", attempt, "err", err)
				}
				s = nil
				continue
			}
			cl.mu.Lock()
			if cl.closed {
				cl.mu.Unlock()
				s.nc.Close()
				return
			}
			cl.cur = s
			cl.mu.Unlock()
		}
		attempt = 0
		err := cl.serve(s)
		s.nc.Close()
		<-s.dead
		if err == nil {
			err = s.err
		}
		cl.requeue(s)
		if cl.stopping() {
			return
		}
		if cl.isFatal(err) {
			cl.setFatal(err)
			return
		}
		cl.log.Info("connection lost; reconnecting", "err", err)
		s, attempt = nil, 1
	}
}

func (cl *Client) stopping() bool {
	select {
	case <-cl.stopCh:
		return true
	default:
		return false
	}
}

// sleep waits d on the client's clock; false if the client is closing.
func (cl *Client) sleep(d time.Duration) bool {
	t := cl.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-cl.stopCh:
		return false
	}
}

// backoff is the delay before attempt n (1-based): MinBackoff doubling up to MaxBackoff, with the
// upper half jittered so clients that lost the same node do not reconnect in lockstep.
func (cl *Client) backoff(n int) time.Duration {
	return Backoff(cl.opts.MinBackoff, cl.opts.MaxBackoff, n, mrand.Float64())
}

// Backoff returns the delay before attempt n >= 1: min doubling per attempt, capped at max, then
// scaled into [d/2, d] by jitter in [0, 1).
func Backoff(min, max time.Duration, n int, jitter float64) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

func (cl *Client) isFatal(err error) bool {
	var se *ServerError
	if errors.As(err, &se) {
		return !se.Code.Retryable()
	}
	return false
}

func (cl *Client) setFatal(err error) {
	cl.log.Error("the server refused this client; giving up", "err", err)
	cl.mu.Lock()
	cl.fatal = err
	cl.mu.Unlock()
	cl.failAll(err)
}

// requeue puts a dead session's unanswered publishes, in the order they were sent, before the queue.
func (cl *Client) requeue(s *session) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.cur == s {
		cl.cur = nil
	}
	if len(s.inflight) == 0 {
		return
	}
	seqs := make([]uint64, 0, len(s.inflight))
	for seq := range s.inflight {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	back := make([]*call, 0, len(seqs)+len(cl.queue))
	for _, seq := range seqs {
		back = append(back, s.inflight[seq])
	}
	cl.resent.Add(uint64(len(seqs)))
	cl.queue = append(back, cl.queue...)
	clear(s.inflight)
}

// connect dials, authenticates and starts the session's reader.
func (cl *Client) connect(ctx context.Context) (*session, error) {
	nc, err := cl.opts.Dial(ctx, cl.addr)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", cl.addr, err)
	}
	ok := false
	defer func() {
		if !ok {
			nc.Close()
		}
	}()
	if cl.opts.TLS != nil {
		tc := tls.Client(nc, cl.opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("client: TLS handshake with %s: %w", cl.addr, err)
		}
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	auth, _ := json.Marshal(wire.Auth{Key: cl.opts.Key, ProjectID: cl.opts.Project, Client: cl.opts.Name})
	if _, err := nc.Write(wire.AppendFrame(nil, wire.TypeAuth, 0, 0, auth)); err != nil {
		return nil, fmt.Errorf("client: send AUTH: %w", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	f, err := readFrame(br)
	if err != nil {
		return nil, fmt.Errorf("client: read AUTH reply: %w", err)
	}
	s := &session{nc: nc, br: br, bw: bufio.NewWriterSize(nc, 64<<10), nextSeq: 1,
		inflight: make(map[uint64]*call), dead: make(chan struct{})}
	switch f.Type {
	case wire.TypeAuthOK:
		if err := json.Unmarshal(f.Payload, &s.limits); err != nil {
			return nil, fmt.Errorf("client: AUTH_OK: %w", err)
		}
	case wire.TypeError:
		p, err := wire.ParseProblem(f.Payload)
		if err != nil {
			return nil, err
		}
		return nil, &ServerError{p}
	default:
		return nil, fmt.Errorf("client: server answered AUTH with %s", f.Type)
	}
	if s.limits.MaxInFlight <= 0 || s.limits.MaxBatch <= 0 || s.limits.MaxPayload <= 0 {
		return nil, fmt.Errorf("client: AUTH_OK without limits: %+v", s.limits)
	}
	nc.SetDeadline(time.Time{})
	ok = true
	cl.connects.Add(1)
	cl.wg.Add(1)
	go cl.read(s)
	return s, nil
}

// readFrame reads one server frame; the payload is a fresh slice.
func readFrame(br *bufio.Reader) (wire.Frame, error) {
	hdr, err := br.Peek(wire.HeaderLen)
	if err != nil {
		return wire.Frame{}, err
	}
	h, err := wire.ParseHeader(hdr, 0)
	if err != nil {
		return wire.Frame{}, err
	}
	if _, err := br.Discard(wire.HeaderLen); err != nil {
		return wire.Frame{}, err
	}
	p := make([]byte, h.PayloadLen)
	if _, err := io.ReadFull(br, p); err != nil {
		return wire.Frame{}, err
	}
	return wire.Frame{Header: h, Payload: p}, nil
}

// read resolves futures from the session's replies until the connection fails.
func (cl *Client) read(s *session) {
	defer cl.wg.Done()
	defer close(s.dead)
	var deadline time.Time
	for {
		// Moving the deadline costs a timer update: do it only when a quarter of it has passed.
		if now := time.Now(); deadline.Sub(now) < cl.opts.ReadTimeout*3/4 {
			deadline = now.Add(cl.opts.ReadTimeout)
			s.nc.SetReadDeadline(deadline)
		}
		f, err := readFrame(s.br)
		if err != nil {
			s.err = fmt.Errorf("client: read: %w", err)
			s.nc.Close()
			return
		}
		switch f.Type {
		case wire.TypeAck:
			a, err := wire.ParseAck(f.Payload)
			if err != nil {
				s.err = err
				s.nc.Close()
				return
			}
			if c := cl.take(s, f.Seq); c != nil {
				cl.acked.Add(1)
				if a.Duplicate {
					cl.dups.Add(1)
				}
				cl.complete(c, Ack{EventID: a.EventID, Matched: int(a.Matched), Duplicate: a.Duplicate}, nil)
			}
		case wire.TypeNack:
			p, err := wire.ParseProblem(f.Payload)
			if err != nil {
				s.err = err
				s.nc.Close()
				return
			}
			if c := cl.take(s, f.Seq); c != nil {
				cl.nack(c, p)
			}
		case wire.TypePong:
		case wire.TypeError:
			p, err := wire.ParseProblem(f.Payload)
			if err == nil {
				err = &ServerError{p}
			}
			s.err = err
			s.nc.Close()
			return
		default:
			s.err = fmt.Errorf("client: unexpected %s frame from the server", f.Type)
			s.nc.Close()
			return
		}
	}
}

// take removes the call answered by seq from the session and signals the writer that the window
// has room.
func (cl *Client) take(s *session, seq uint64) *call {
	cl.mu.Lock()
	c := s.inflight[seq]
	delete(s.inflight, seq)
	cl.mu.Unlock()
	cl.signal()
	return c
}

func (cl *Client) nack(c *call, p wire.Problem) {
	if p.Code.Retryable() && c.retries < cl.opts.MaxRetries {
		c.retries++
		c.due = cl.opts.Clock.Now().Add(cl.backoff(c.retries))
		cl.retried.Add(1)
		cl.mu.Lock()
		cl.retry = append(cl.retry, c)
		cl.mu.Unlock()
		cl.signal()
		return
	}
	cl.nacked.Add(1)
	cl.complete(c, Ack{}, &NackError{Code: p.Code, Message: p.Message})
}

// serve writes queued publishes on s within its window until s dies or the client closes.
func (cl *Client) serve(s *session) error {
	clk := cl.opts.Clock
	ping := clk.NewTimer(cl.opts.PingInterval)
	defer ping.Stop()
	retryT := clk.NewTimer(time.Hour)
	defer retryT.Stop()
	var frame []byte
	for {
		sent, tooBig, nextDue := cl.nextFrame(s)
		for _, c := range tooBig {
			cl.nacked.Add(1)
			cl.complete(c, Ack{}, &NackError{Code: wire.CodeTooLarge,
				Message: fmt.Sprintf("publish of %d bytes exceeds the server's %d-byte limit", len(c.item), s.limits.MaxPublishBytes)})
		}
		if len(sent) > 0 {
			frame = cl.encode(frame[:0], s, sent)
			if _, err := s.bw.Write(frame); err != nil {
				return err
			}
			ping.Reset(cl.opts.PingInterval)
			continue
		}
		if s.bw.Buffered() > 0 {
			if err := s.bw.Flush(); err != nil {
				return err
			}
		}
		if !nextDue.IsZero() {
			retryT.Reset(max(nextDue.Sub(clk.Now()), 0))
		}
		select {
		case <-cl.wake:
		case <-retryT.C():
		case <-ping.C():
			if _, err := s.bw.Write(wire.AppendFrame(nil, wire.TypePing, 0, 0, nil)); err != nil {
				return err
			}
			if err := s.bw.Flush(); err != nil {
				return err
			}
			ping.Reset(cl.opts.PingInterval)
		case <-s.dead:
			return s.err
		case <-cl.stopCh:
			return ErrClosed
		}
	}
}

// nextFrame moves due retries to the queue and takes the next publishes that fit the session's window
// and one frame, registering them in flight under consecutive sequence numbers.
func (cl *Client) nextFrame(s *session) (sent, tooBig []*call, nextDue time.Time) {
	now := cl.opts.Clock.Now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.retry) > 0 {
		keep := cl.retry[:0]
		var due []*call
		for _, c := range cl.retry {
			if !c.due.After(now) {
				due = append(due, c)
				continue
			}
			if nextDue.IsZero() || c.due.Before(nextDue) {
				nextDue = c.due
			}
			keep = append(keep, c)
		}
		clear(cl.retry[len(keep):])
		cl.retry = keep
		if len(due) > 0 {
			cl.queue = append(due, cl.queue...)
		}
	}
	room := s.limits.MaxInFlight - len(s.inflight)
	maxN := min(room, cl.opts.MaxBatch, s.limits.MaxBatch)
	size := 4
	for len(cl.queue) > 0 && len(sent) < maxN {
		c := cl.queue[0]
		if len(c.item) > s.limits.MaxPublishBytes || len(c.item)+8 > s.limits.MaxPayload {
			cl.queue[0] = nil
			cl.queue = cl.queue[1:]
			tooBig = append(tooBig, c)
			continue
		}
		if len(sent) > 0 && size+4+len(c.item) > s.limits.MaxPayload {
			break
		}
		size += 4 + len(c.item)
		cl.queue[0] = nil
		cl.queue = cl.queue[1:]
		sent = append(sent, c)
	}
	for _, c := range sent {
		s.inflight[s.nextSeq] = c
		s.nextSeq++
	}
	if len(cl.queue) == 0 {
		cl.queue = nil // let the backing array go
	}
	return sent, tooBig, nextDue
}

const compressMin = 512

// encode appends the frame for calls, numbered from the session's sequence numbers just assigned.
func (cl *Client) encode(dst []byte, s *session, calls []*call) []byte {
	seq := s.nextSeq - uint64(len(calls))
	if len(calls) == 1 {
		p, fl := cl.maybeCompress(calls[0].item, s.limits.MaxPayload)
		return wire.AppendFrame(dst, wire.TypePublish, fl, seq, p)
	}
	block := make([]byte, 0, 4*len(calls)+sumLen(calls))
	for _, c := range calls {
		block = binary.BigEndian.AppendUint32(block, uint32(len(c.item)))
		block = append(block, c.item...)
	}
	p, fl := cl.maybeCompress(block, s.limits.MaxPayload-4)
	dst = wire.AppendHeader(dst, wire.TypePublishBatch, fl, seq, 4+len(p))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(calls)))
	return append(dst, p...)
}

func (cl *Client) maybeCompress(p []byte, limit int) ([]byte, uint8) {
	if !cl.opts.Compress || len(p) < compressMin {
		return p, 0
	}
	z := wire.Compress(nil, p)
	if len(z) >= len(p) || len(z) > limit {
		return p, 0
	}
	return z, wire.FlagCompressed
}

func sumLen(calls []*call) int {
	n := 0
	for _, c := range calls {
		n += len(c.item)
	}
	return n
}

// encodeRequest renders a publish as JSON with the data bytes exactly as given (encoding/json would
// compact and HTML-escape a RawMessage) and an idempotency key, generated when the caller gave none
// so that resends cannot create a second event.
func encodeRequest(r *Request) ([]byte, error) {
	meta := struct {
		ProjectID      string            `json:"project_id,omitempty"`
		Target         string            `json:"target,omitempty"`
		EndpointID     string            `json:"endpoint_id,omitempty"`
		OwnerID        string            `json:"owner_id,omitempty"`
		EventType      string            `json:"event_type"`
		CustomHeaders  map[string]string `json:"custom_headers,omitempty"`
		IdempotencyKey string            `json:"idempotency_key"`
	}{r.ProjectID, r.Target, r.EndpointID, r.OwnerID, r.EventType, r.CustomHeaders, r.IdempotencyKey}
	if meta.IdempotencyKey == "" {
		meta.IdempotencyKey = NewIdempotencyKey()
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("client: encode publish: %w", err)
	}
	if len(r.Data) == 0 {
		return b, nil
	}
	b = append(b[:len(b)-1], `,"data":`...)
	b = append(b, r.Data...)
	return append(b, '}'), nil
}

// NewIdempotencyKey returns a random key ("tcp_" and 128 random bits).
func NewIdempotencyKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	return "tcp_" + base64.RawURLEncoding.EncodeToString(b[:])
}
