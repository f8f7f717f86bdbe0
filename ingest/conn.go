package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/model"
)

// conn is the server's state for one connection.
type conn struct {
	s  *Server
	c  gnet.Conn // its concurrency-safe methods (AsyncWrite, Wake) may be called from any goroutine
	id uint64

	// Owned by the connection's event-loop goroutine.
	authed  bool
	root    bool
	project string // default project; "" for the root key without one
	closing bool   // an ERROR was written and Close returned; ignore further traffic

	// Shared with publish goroutines and the reaper.
	openedAt  int64        // clock nanos at accept; immutable
	lastFrame atomic.Int64 // clock nanos of the last complete frame
	authOK    atomic.Bool  // mirrors authed for the reaper
	inflight  atomic.Int64 // publishes read and not yet answered
	// pausedConn: the loop stopped reading because inflight hit MaxInFlightPerConn; the publish
	// goroutine that swaps it back to false wakes the loop.
	pausedConn atomic.Bool
	// stalled: the loop's last pass stopped at a cap (per connection or global) with a whole frame
	// waiting; the reaper does not count that as idle.
	stalled atomic.Bool
	closed  atomic.Bool
	killed  atomic.Pointer[wire.Problem] // set by other goroutines; the loop sends it as ERROR and closes

	// waitingGlobal is guarded by Server.lim.mu.
	waitingGlobal bool
}

func problem(c wire.Code, msg string) wire.Problem { return wire.Problem{Code: c, Message: msg} }

// kill asks the connection's loop to send p as an ERROR frame and close. Safe from any goroutine.
func (c *conn) kill(p wire.Problem) {
	if c.killed.CompareAndSwap(nil, &p) {
		_ = c.c.Wake(nil)
	}
}

// reply queues a server frame with gnet's async write. Called from publish goroutines.
func (c *conn) reply(frame []byte) {
	if c.closed.Load() {
		return
	}
	_ = c.c.AsyncWrite(frame, c.afterWrite)
}

// afterWrite runs on the event loop once a reply is written or buffered: a peer that does not read
// its ACKs is closed before the buffer grows past MaxOutboundBytes.
func (c *conn) afterWrite(gc gnet.Conn, err error) error {
	if err == nil && gc.OutboundBuffered() > c.s.cfg.MaxOutboundBytes {
		c.kill(problem(wire.CodeOverloaded, "replies are not being read"))
	}
	return nil
}

// handler is the gnet.EventHandler. Its methods run on event-loop goroutines: OnOpen, OnTraffic and
// OnClose of one connection always on that connection's loop, so they own its non-atomic fields.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.eng = eng
	a, err := listenAddr(eng)
	if err != nil {
		s.log.Error("tcp ingest: cannot read the bound address", "err", err)
	} else {
		s.addr.Store(a)
	}
	close(s.booted)
	return gnet.None
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	now := s.cfg.Clock.Now().UnixNano()
	c := &conn{s: s, c: gc, id: s.nextID.Add(1), openedAt: now}
	c.lastFrame.Store(now)
	s.mu.Lock()
	full := len(s.conns) >= s.cfg.MaxConns
	if !full && !s.stopping.Load() {
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	switch {
	case s.stopping.Load():
		s.connErrs.Add(1)
		return wire.AppendProblem(nil, wire.TypeError, 0, problem(wire.CodeShuttingDown, "the node is shutting down")), gnet.Close
	case full:
		s.connErrs.Add(1)
		return wire.AppendProblem(nil, wire.TypeError, 0, problem(wire.CodeTooManyConns, fmt.Sprintf("the server's limit of %d connections is reached", s.cfg.MaxConns))), gnet.Close
	}
	gc.SetContext(c)
	return nil, gnet.None
}

func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	c.closed.Store(true)
	h.s.lim.forget(c)
	s := h.s
	s.mu.Lock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.stopping.Load() {
		closeOnce(s.noConns)
	}
	s.mu.Unlock()
	return gnet.None
}

// OnTraffic consumes every complete frame in the connection's inbound buffer unless an in-flight cap
// is reached; what it leaves stays in gnet's buffer until a publish goroutine wakes the loop.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok || c.closing {
		_, _ = gc.Discard(-1)
		return gnet.None
	}
	s := h.s
	if p := c.killed.Load(); p != nil {
		return c.fail(0, *p)
	}
	consumed, stalled := false, false
	for !s.stopping.Load() {
		hdr, err := gc.Peek(wire.HeaderLen)
		if err != nil {
			break // not a whole header yet
		}
		seq := binary.BigEndian.Uint64(hdr[8:16])
		fh, err := wire.ParseHeader(hdr, s.maxPayload)
		if err != nil {
			var fe *wire.FrameError
			if errors.As(err, &fe) {
				return c.fail(seq, problem(fe.Code, fe.Msg))
			}
			return c.fail(seq, problem(wire.CodeBadFrame, err.Error()))
		}
		switch {
		case !fh.Type.FromClient():
			return c.fail(seq, problem(wire.CodeUnknownType, fmt.Sprintf("a client may not send %s", fh.Type)))
		case !c.authed && fh.Type != wire.TypeAuth:
			return c.fail(seq, problem(wire.CodeAuthRequired, fmt.Sprintf("the first frame must be AUTH, not %s", fh.Type)))
		case c.authed && fh.Type == wire.TypeAuth:
			return c.fail(seq, problem(wire.CodeAuthRequired, "AUTH sent twice on one connection"))
		}
		total := wire.HeaderLen + fh.PayloadLen
		if gc.InboundBuffered() < total {
			break // the rest of the frame has not arrived
		}
		cost := 0
		switch fh.Type {
		case wire.TypePublish:
			cost = 1
		case wire.TypePublishBatch:
			b, err := gc.Peek(wire.HeaderLen + 4)
			if err != nil || fh.PayloadLen < 4 {
				return c.fail(seq, problem(wire.CodeBadFrame, "PUBLISH_BATCH payload has no item count"))
			}
			n := binary.BigEndian.Uint32(b[wire.HeaderLen:])
			if n == 0 || n > uint32(s.cfg.MaxBatch) {
				return c.fail(seq, problem(wire.CodeBadFrame, fmt.Sprintf("PUBLISH_BATCH of %d items; the limit is 1 to %d", n, s.cfg.MaxBatch)))
			}
			if uint64(seq)+uint64(n)-1 < seq {
				return c.fail(seq, problem(wire.CodeBadFrame, "PUBLISH_BATCH sequence numbers wrap around"))
			}
			cost = int(n)
		}
		if cost > 0 && !s.acquire(c, cost) {
			stalled = true
			break
		}
		frame, err := gc.Peek(total)
		if err != nil {
			return c.fail(seq, problem(wire.CodeInternal, "BUG: buffered frame could not be read"))
		}
		payload := frame[wire.HeaderLen:]
		consumed = true
		switch fh.Type {
		case wire.TypeAuth:
			if p, ok := c.authenticate(payload); !ok {
				return c.fail(seq, p)
			}
			_, _ = gc.Discard(total)
			ok := c.write(wire.AppendFrame(nil, wire.TypeAuthOK, 0, seq, c.authOKPayload()))
			if !ok {
				return gnet.None
			}
		case wire.TypePing:
			pong := wire.AppendFrame(nil, wire.TypePong, 0, seq, payload)
			_, _ = gc.Discard(total)
			if !c.write(pong) {
				return gnet.None
			}
		default: // PUBLISH, PUBLISH_BATCH
			own := bytes.Clone(payload)
			_, _ = gc.Discard(total)
			s.dispatch(c, fh, own, cost)
		}
	}
	if consumed {
		c.lastFrame.Store(s.cfg.Clock.Now().UnixNano())
	}
	c.stalled.Store(stalled)
	if gc.OutboundBuffered() > s.cfg.MaxOutboundBytes {
		return c.fail(0, problem(wire.CodeOverloaded, "replies are not being read"))
	}
	if gc.InboundBuffered() > s.cfg.MaxBufferedBytes {
		return c.fail(0, problem(wire.CodeOverloaded, fmt.Sprintf("more than %d bytes sent while the server was not reading; respect max_in_flight", s.cfg.MaxBufferedBytes)))
	}
	return gnet.None
}

// write writes a reply from the event loop; false means gnet closed the connection on a write error.
func (c *conn) write(frame []byte) bool {
	_, _ = c.c.Write(frame)
	return !c.closed.Load()
}

// fail sends an ERROR frame and closes the connection (gnet flushes what it can first).
func (c *conn) fail(seq uint64, p wire.Problem) gnet.Action {
	c.closing = true
	c.s.connErrs.Add(1)
	if p.Code != wire.CodeShuttingDown && p.Code != wire.CodeIdleTimeout {
		c.s.log.Debug("tcp ingest: closing connection", "conn", c.id, "code", p.Code.String(), "msg", p.Message)
	}
	_, _ = c.c.Discard(-1)
	_, _ = c.c.Write(wire.AppendProblem(nil, wire.TypeError, seq, p))
	return gnet.Close
}

// authenticate checks an AUTH payload and sets the connection's scope.
func (c *conn) authenticate(payload []byte) (wire.Problem, bool) {
	var a wire.Auth
	if err := decodeStrict(payload, &a); err != nil {
		return problem(wire.CodeBadRequest, "AUTH: "+err.Error()), false
	}
	if a.Key == "" {
		return problem(wire.CodeUnauthorized, "missing API key: AUTH needs \"key\""), false
	}
	k := c.s.auth.Authenticate(a.Key)
	if k == nil {
		return problem(wire.CodeUnauthorized, "invalid API key"), false
	}
	var pid string
	if a.ProjectID != "" {
		id, err := model.ParseID(a.ProjectID)
		if err != nil {
			return problem(wire.CodeNotFound, fmt.Sprintf("project %q not found", a.ProjectID)), false
		}
		pid = id
	}
	switch k.Role {
	case model.RoleRoot:
		c.root, c.project = true, pid
	case model.RoleProject:
		if pid != "" && pid != k.ProjectID {
			return problem(wire.CodeForbidden, fmt.Sprintf("this key is not authorised for project %s", pid)), false
		}
		c.project = k.ProjectID
	default:
		return problem(wire.CodeForbidden, fmt.Sprintf("a %s key cannot publish", k.Role)), false
	}
	c.authed = true
	c.authOK.Store(true)
	return wire.Problem{}, true
}

func (c *conn) authOKPayload() []byte {
	cfg := &c.s.cfg
	b, _ := json.Marshal(wire.AuthOK{
		ProjectID: c.project, Root: c.root, MaxPayload: c.s.maxPayload, MaxPublishBytes: cfg.MaxPublishBytes,
		MaxInFlight: cfg.MaxInFlightPerConn, MaxBatch: cfg.MaxBatch, IdleTimeoutMS: cfg.IdleTimeout.Milliseconds(),
		Server: "sluice",
	})
	return b
}

// acquire takes cost in-flight slots for c on its event loop, or registers c to be woken when slots
// free up and reports false. The pause flags are set before the re-check so a release racing with
// it either sees the flag or frees the slot the re-check finds: no wake-up is lost.
func (s *Server) acquire(c *conn, cost int) bool {
	perConn := int64(s.cfg.MaxInFlightPerConn)
	if c.inflight.Load()+int64(cost) > perConn {
		c.pausedConn.Store(true)
		if c.inflight.Load()+int64(cost) > perConn {
			s.paused.Add(1)
			return false
		}
		c.pausedConn.Store(false)
	}
	if !s.lim.acquire(c, cost) {
		s.paused.Add(1)
		return false
	}
	c.inflight.Add(int64(cost))
	return true
}

// release returns n slots of c and wakes the loops of connections paused on them.
func (s *Server) release(c *conn, n int) {
	c.inflight.Add(-int64(n))
	if c.pausedConn.CompareAndSwap(true, false) {
		_ = c.c.Wake(nil)
	}
	for _, w := range s.lim.release(n) {
		_ = w.c.Wake(nil)
	}
}

// limiter is the global in-flight budget. Connections that find it exhausted wait in FIFO order; a
// release of n slots wakes up to n of them (each re-checks on its own loop and queues again if it
// still does not fit), and a release that leaves nothing in flight wakes them all, so a waiter that
// closed after being picked cannot strand the rest.
type limiter struct {
	mu      sync.Mutex // guards used, waiters and every conn.waitingGlobal
	max     int
	used    int
	waiters []*conn
}

func (l *limiter) acquire(c *conn, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used+n <= l.max {
		l.used += n
		return true
	}
	if !c.waitingGlobal {
		c.waitingGlobal = true
		l.waiters = append(l.waiters, c)
	}
	return false
}

func (l *limiter) release(n int) []*conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.used -= n
	if len(l.waiters) == 0 {
		return nil
	}
	k := min(n, len(l.waiters))
	if l.used == 0 {
		k = len(l.waiters)
	}
	w := slices.Clone(l.waiters[:k])
	for _, c := range w {
		c.waitingGlobal = false
	}
	l.waiters = slices.Delete(l.waiters, 0, k)
	return w
}

// forget drops a closed connection from the waiters.
func (l *limiter) forget(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.waitingGlobal {
		return
	}
	c.waitingGlobal = false
	for i, w := range l.waiters {
		if w == c {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			break
		}
	}
}

func (l *limiter) inUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}
