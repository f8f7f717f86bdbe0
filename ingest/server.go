package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/model"
)

// Publisher commits one event. *api.Server implements it.
//
// Publish is called concurrently from many goroutines (never from a gnet event loop). It returns
// only once the event and its deliveries are committed and applied, or with an error that
// api.ClientError classifies. in has been validated with in.Validate for its mode. ctx is cancelled
// when the server stops after its drain timeout.
type Publisher interface {
	Publish(ctx context.Context, projectID string, in *api.PublishRequest) (*api.Published, error)
}

// BatchPublisher is a Publisher that can also publish many events from one goroutine; *api.Server
// implements it. When the Publisher has it, a PUBLISH_BATCH is published with one PublishAll call
// instead of a goroutine per item, which under deep pipelines meant thousands of goroutines whose
// stacks the GC shrank and each publish grew again. Items' outcomes are as Publish's, filled in place.
type BatchPublisher interface {
	PublishAll(ctx context.Context, items []api.PublishItem)
}

// Authenticator resolves an API key. *api.Server implements it.
//
// Authenticate is called on a gnet event-loop goroutine, once per connection, so it must not block:
// a hash-map lookup, never a slow KDF. It returns nil for an unknown key.
type Authenticator interface {
	Authenticate(key string) *model.APIKey
}

var (
	_ Publisher      = (*api.Server)(nil)
	_ BatchPublisher = (*api.Server)(nil)
	_ Authenticator  = (*api.Server)(nil)
)

// Errors.
var (
	ErrStarted = errors.New("ingest: server already started")
	ErrStopped = errors.New("ingest: server stopped")
)

// Stats is a snapshot of the server's counters.
type Stats struct {
	Conns      int64  // open connections
	InFlight   int64  // publishes between read and ACK/NACK, all connections
	Acked      uint64 // ACKs sent (duplicates included)
	Duplicates uint64 // ACKs for an idempotency key seen before
	Nacked     uint64 // NACKs sent
	ConnErrors uint64 // connections closed with an ERROR frame
	Paused     uint64 // times a connection stopped being read because an in-flight cap was reached
}

// Server is the TCP ingest server. Build it with NewServer, then Start and Stop it once.
type Server struct {
	cfg        Config
	log        *slog.Logger
	pub        Publisher
	auth       Authenticator
	maxPayload int // cfg.MaxFrameBytes - header
	lim        limiter
	h          *handler

	// ctx is the parent of every Publish call; cancel ends those still running after the drain.
	ctx    context.Context
	cancel context.CancelFunc

	// runMu makes "not stopping, so count this publish goroutine" atomic with Stop's switch to
	// stopping; work counts publish goroutines.
	runMu    sync.RWMutex
	stopping atomic.Bool
	work     sync.WaitGroup
	// jobs hands a job to an idle publish goroutine (unbuffered: a send succeeds only if one waits);
	// workers counts publish goroutines, busy or idle.
	jobs    chan func()
	workers sync.WaitGroup

	// mu guards the fields below.
	mu      sync.Mutex
	conns   map[*conn]struct{}
	started bool
	// noConns is closed when stopping and the last connection has closed.
	noConns chan struct{}

	eng      gnet.Engine
	addr     atomic.Pointer[net.TCPAddr]
	booted   chan struct{}
	runDone  chan struct{}
	runErr   error // set before runDone is closed
	stopCh   chan struct{}
	bg       sync.WaitGroup // the reaper
	stopOnce sync.Once

	acked, dups, nacked, connErrs, paused atomic.Uint64
	nextID                                atomic.Uint64
}

// NewServer checks cfg and builds a server; it does not listen until Start.
func NewServer(cfg Config, pub Publisher, auth Authenticator) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil || auth == nil {
		return nil, errors.New("ingest: NewServer needs a Publisher and an Authenticator")
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("component", "ingest"), pub: pub, auth: auth,
		maxPayload: cfg.MaxFrameBytes - 16,
		conns:      make(map[*conn]struct{}),
		noConns:    make(chan struct{}),
		booted:     make(chan struct{}),
		runDone:    make(chan struct{}),
		stopCh:     make(chan struct{}),
		jobs:       make(chan func()),
	}
	s.lim.max = cfg.MaxInFlight
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.h = &handler{s: s}
	return s, nil
}

// Start binds the listener and starts the event loops and the reaper. It returns once the server
// accepts connections, or with the error that prevented it; ctx bounds only that wait.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.stopping.Load():
		s.mu.Unlock()
		return ErrStopped
	case s.started:
		s.mu.Unlock()
		return ErrStarted
	}
	s.started = true
	s.mu.Unlock()
	opts := []gnet.Option{
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTCPKeepAlive(time.Minute),
		gnet.WithReusePort(false),
		// As net.Listen does: without SO_REUSEADDR a restart right after a crash cannot bind while
		// the old connections sit in TIME_WAIT. (gnet 2.9.7 then reports the failed bind as
		// "setsockopt: bad file descriptor": it overwrites the bind error with a keepalive setsockopt
		// on the already closed descriptor.)
		gnet.WithReuseAddr(true),
	}
	if s.cfg.EventLoops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(s.cfg.EventLoops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	go func() {
		defer close(s.runDone)
		s.runErr = gnet.Run(s.h, "tcp://"+s.cfg.Addr, opts...)
		if s.runErr != nil && !s.stopping.Load() {
			s.log.Error("tcp ingest engine stopped", "err", s.runErr)
		}
	}()
	select {
	case <-s.booted:
	case <-s.runDone:
		if s.runErr == nil {
			s.runErr = errors.New("engine stopped at start")
		}
		return fmt.Errorf("ingest: listen on %s: %w", s.cfg.Addr, s.runErr)
	case <-ctx.Done():
		s.Stop()
		return ctx.Err()
	}
	s.bg.Add(1)
	go s.reap()
	s.log.Info("tcp ingest listening", "addr", s.Addr(), "max_frame_bytes", s.cfg.MaxFrameBytes,
		"max_in_flight_per_conn", s.cfg.MaxInFlightPerConn, "max_in_flight", s.cfg.MaxInFlight)
	return nil
}

// Addr is the bound listen address (useful with port 0); nil before Start.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return a
	}
	return nil
}

// Stop stops reading new requests, lets in-flight publishes finish and be acknowledged for up to
// DrainTimeout (then cancels them: they are NACKed with timeout), sends ERROR shutting_down on every
// connection, closes them and the listener, and returns once every goroutine of the server has
// exited. It is safe to call more than once and from any goroutine except an event loop.
func (s *Server) Stop() {
	s.stopOnce.Do(s.stop)
}

func (s *Server) stop() {
	s.runMu.Lock()
	s.stopping.Store(true)
	s.runMu.Unlock()
	close(s.stopCh)
	s.bg.Wait() // the reaper: nothing but publish goroutines wakes connections now

	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		s.cancel()
		return
	}
	defer s.workers.Wait() // idle publish goroutines exit on stopCh, busy ones after their job
	select {
	case <-s.booted:
	case <-s.runDone:
	}

	drained := make(chan struct{})
	go func() { s.work.Wait(); close(drained) }()
	t := s.cfg.Clock.NewTimer(s.cfg.DrainTimeout)
	select {
	case <-drained:
	case <-t.C():
		s.log.Warn("tcp ingest: drain timeout; cancelling in-flight publishes", "in_flight", s.lim.inUse())
		s.cancel()
		<-drained
	}
	t.Stop()
	s.cancel()

	// Every publish goroutine has exited, so nothing else touches the connections: say goodbye.
	s.mu.Lock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	if len(s.conns) == 0 {
		closeOnce(s.noConns)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.kill(problem(wire.CodeShuttingDown, "the node is shutting down; reconnect and resend unacknowledged publishes"))
	}
	t = s.cfg.Clock.NewTimer(2 * time.Second)
	select {
	case <-s.noConns:
	case <-t.C():
		s.log.Warn("tcp ingest: connections did not close in time; the engine closes them")
	case <-s.runDone:
	}
	t.Stop()

	select {
	case <-s.runDone:
	default:
		expired, cancel := context.WithCancel(context.Background())
		cancel() // Engine.Stop then only triggers the shutdown; runDone says when it is complete
		_ = s.eng.Stop(expired)
		<-s.runDone
	}
	if s.runErr != nil {
		s.log.Error("tcp ingest engine", "err", s.runErr)
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{
		Conns: int64(n), InFlight: int64(s.lim.inUse()), Acked: s.acked.Load(), Duplicates: s.dups.Load(),
		Nacked: s.nacked.Load(), ConnErrors: s.connErrs.Load(), Paused: s.paused.Load(),
	}
}

// closeAll closes every connection abruptly, with no ERROR frame, as a network failure would. Tests
// use it to force reconnects.
func (s *Server) closeAll() int {
	s.mu.Lock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.c.Close()
	}
	return len(cs)
}

// reap closes connections past their auth or idle timeout. It is the server's only background
// goroutine besides gnet's and the publish goroutines.
func (s *Server) reap() {
	defer s.bg.Done()
	tick := s.cfg.tick()
	t := s.cfg.Clock.NewTimer(tick)
	defer t.Stop()
	var batch []*conn
	for {
		select {
		case <-s.stopCh:
			return
		case <-t.C():
		}
		now := s.cfg.Clock.Now().UnixNano()
		batch = batch[:0]
		s.mu.Lock()
		for c := range s.conns {
			batch = append(batch, c)
		}
		s.mu.Unlock()
		for _, c := range batch {
			switch {
			case !c.authOK.Load():
				if now-c.openedAt > int64(s.cfg.AuthTimeout) {
					c.kill(problem(wire.CodeAuthTimeout, fmt.Sprintf("no AUTH within %s", s.cfg.AuthTimeout)))
				}
			case c.inflight.Load() == 0 && !c.stalled.Load():
				if now-c.lastFrame.Load() > int64(s.cfg.IdleTimeout) {
					c.kill(problem(wire.CodeIdleTimeout, fmt.Sprintf("no frame for %s; send PING to keep an idle connection", s.cfg.IdleTimeout)))
				}
			}
		}
		clear(batch)
		t.Reset(tick)
	}
}

// listenAddr reads the bound address from a duplicate of the listener's descriptor.
func listenAddr(eng gnet.Engine) (*net.TCPAddr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))), nil
	case *syscall.SockaddrInet6:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))), nil
	}
	return nil, fmt.Errorf("ingest: unexpected listener address %T", sa)
}

// gnetLogger routes gnet's logs to slog; its chatty info lines become debug.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
