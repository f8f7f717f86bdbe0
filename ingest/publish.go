package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// dispatch hands a consumed PUBLISH or PUBLISH_BATCH (payload owned, cost slots taken) to a publish
// goroutine. It runs on the event loop and never blocks.
func (s *Server) dispatch(c *conn, h wire.Header, payload []byte, cost int) {
	s.runMu.RLock()
	if s.stopping.Load() {
		s.runMu.RUnlock()
		p := problem(wire.CodeShuttingDown, "the node is shutting down; resend to a running node")
		for i := 0; i < cost; i++ {
			c.write(wire.AppendProblem(nil, wire.TypeNack, h.Seq+uint64(i), p))
			s.nacked.Add(1)
		}
		s.release(c, cost)
		return
	}
	s.work.Add(1)
	s.runMu.RUnlock()
	s.spawn(func() {
		defer s.work.Done()
		if h.Type == wire.TypePublish {
			s.publishFrame(c, h, payload)
		} else {
			s.publishBatch(c, h, payload, cost)
		}
	})
}

// workerIdle is how long a publish goroutine waits for another job before it exits.
const workerIdle = 10 * time.Second

// spawn runs job on an idle publish goroutine, or on a new one. Reusing goroutines matters: a
// publish grows its stack deep inside Pebble, and a fresh goroutine per publish paid that stack
// growth (and the GC its shrinking) every time. The number of goroutines is bounded by the
// in-flight slots the jobs hold, plus those idling for at most workerIdle.
func (s *Server) spawn(job func()) {
	select {
	case s.jobs <- job:
		return
	default:
	}
	s.workers.Add(1)
	go s.worker(job)
}

func (s *Server) worker(job func()) {
	defer s.workers.Done()
	idle := s.cfg.Clock.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(workerIdle)
		select {
		case job = <-s.jobs:
		case <-idle.C():
			return
		case <-s.stopCh:
			return
		}
	}
}

func (s *Server) publishFrame(c *conn, h wire.Header, payload []byte) {
	if h.Compressed() {
		var err error
		if payload, err = wire.Decompress(payload, s.maxPayload); err != nil {
			s.answer(c, h.Seq, nil, frameProblem(err))
			return
		}
	}
	s.publishOne(c, h.Seq, payload)
}

// publishBatch splits a batch and publishes its items together (with PublishAll when the Publisher
// has it, else concurrently), item i answered as seq+i, so they reach the proposer together (and
// usually share one Raft entry). A batch whose item block is
// malformed gets a NACK for every item; the connection stays usable because the frame boundary was
// sound.
func (s *Server) publishBatch(c *conn, h wire.Header, payload []byte, count int) {
	_, block, err := wire.BatchCount(payload)
	if err == nil && h.Compressed() {
		block, err = wire.Decompress(block, s.maxPayload)
	}
	var items [][]byte
	if err == nil {
		items, err = wire.SplitBatch(block, count, s.maxPayload)
	}
	if err != nil {
		p := frameProblem(err)
		for i := 0; i < count; i++ {
			s.answer(c, h.Seq+uint64(i), nil, p)
		}
		return
	}
	if bp, ok := s.pub.(BatchPublisher); ok {
		s.publishAll(c, h.Seq, items, bp)
		return
	}
	for i := 1; i < len(items); i++ {
		s.work.Add(1) // the batch goroutine holds the count above zero, so Stop cannot be waiting on zero
		s.spawn(func() {
			defer s.work.Done()
			s.publishOne(c, h.Seq+uint64(i), items[i])
		})
	}
	s.publishOne(c, h.Seq, items[0])
}

// publishOne decodes, authorises, validates and publishes one item, then answers it and releases its
// slot.
func (s *Server) publishOne(c *conn, seq uint64, item []byte) {
	pid, in, p, ok := s.decodePublish(c, item)
	if !ok {
		s.answer(c, seq, nil, p)
		return
	}
	res, err := s.pub.Publish(s.ctx, pid, in)
	s.published(c, seq, pid, res, err)
}

// publishAll decodes a batch's items and publishes the valid ones with one PublishAll call; item i
// is answered as seq+i.
func (s *Server) publishAll(c *conn, seq uint64, items [][]byte, bp BatchPublisher) {
	batch := make([]api.PublishItem, 0, len(items))
	seqs := make([]uint64, 0, len(items))
	for i, item := range items {
		pid, in, p, ok := s.decodePublish(c, item)
		if !ok {
			s.answer(c, seq+uint64(i), nil, p)
			continue
		}
		batch = append(batch, api.PublishItem{ProjectID: pid, Req: in})
		seqs = append(seqs, seq+uint64(i))
	}
	if len(batch) == 0 {
		return
	}
	bp.PublishAll(s.ctx, batch)
	for i := range batch {
		s.published(c, seqs[i], batch[i].ProjectID, batch[i].Res, batch[i].Err)
	}
}

// published answers a publish with its outcome.
func (s *Server) published(c *conn, seq uint64, pid string, res *api.Published, err error) {
	if err != nil {
		s.answer(c, seq, nil, s.problemFor(err))
		return
	}
	if !res.Duplicate && s.cfg.OnPublish != nil {
		s.cfg.OnPublish(pid)
	}
	s.answer(c, seq, res, wire.Problem{})
}

// answer writes the ACK (res != nil) or NACK for seq and releases one slot.
func (s *Server) answer(c *conn, seq uint64, res *api.Published, p wire.Problem) {
	if res != nil {
		s.acked.Add(1)
		if res.Duplicate {
			s.dups.Add(1)
		}
		c.reply(wire.AppendAck(make([]byte, 0, 48), seq, wire.Ack{EventID: res.Event.UID, Matched: uint32(res.Matched), Duplicate: res.Duplicate}))
	} else {
		s.nacked.Add(1)
		c.reply(wire.AppendProblem(nil, wire.TypeNack, seq, p))
	}
	s.release(c, 1)
}

// decodePublish turns one PUBLISH payload into the project and request api.Publish takes.
func (s *Server) decodePublish(c *conn, item []byte) (string, *api.PublishRequest, wire.Problem, bool) {
	if len(item) > s.cfg.MaxPublishBytes {
		return "", nil, problem(wire.CodeTooLarge, fmt.Sprintf("publish body exceeds the %d-byte limit", s.cfg.MaxPublishBytes)), false
	}
	var w wire.Publish
	// The fast path takes the canonical payload; encoding/json decides everything else.
	if !decodePublishFast(item, &w) {
		if err := decodeStrict(item, &w); err != nil {
			return "", nil, problem(wire.CodeBadRequest, err.Error()), false
		}
	}
	target, err := w.ResolveTarget()
	if err != nil {
		return "", nil, problem(wire.CodeBadRequest, err.Error()), false
	}
	pid := c.project
	if w.ProjectID != "" {
		id, err := model.ParseID(w.ProjectID)
		if err != nil {
			return "", nil, problem(wire.CodeNotFound, fmt.Sprintf("project %q not found", w.ProjectID)), false
		}
		pid = id
	}
	switch {
	case pid == "":
		return "", nil, problem(wire.CodeBadRequest, "project_id: required (the root key connected without a default project)"), false
	case !c.root && pid != c.project:
		return "", nil, problem(wire.CodeForbidden, fmt.Sprintf("this key is not authorised for project %s", pid)), false
	}
	in := &api.PublishRequest{
		EndpointID: w.EndpointID, OwnerID: w.OwnerID, EventType: w.EventType, Data: w.Data,
		CustomHeaders: w.CustomHeaders, IdempotencyKey: w.IdempotencyKey,
	}
	mode := api.PublishBroadcast
	switch target {
	case wire.TargetEndpoint:
		mode = api.PublishToEndpoint
	case wire.TargetOwner:
		mode = api.PublishFanout
	}
	if err := in.Validate(mode); err != nil {
		return "", nil, s.problemFor(err), false
	}
	return pid, in, wire.Problem{}, true
}

// problemFor maps a publish error to a NACK with the same words the HTTP API would use.
func (s *Server) problemFor(err error) wire.Problem {
	if code, msg, ok := api.ClientError(err); ok || code != 0 {
		return problem(httpCode(code), msg)
	}
	switch {
	case errors.Is(err, raftstore.ErrExists):
		return problem(wire.CodeConflict, strings.TrimPrefix(err.Error(), "raftstore: "))
	case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raftstore.ErrClosed):
		return problem(wire.CodeUnavailable, "no leader can commit this write right now; retry")
	case errors.Is(err, raftstore.ErrDiskFull):
		return problem(wire.CodeUnavailable, "the node's disk is nearly full: new events are refused until space is freed (nothing was stored; retry later)")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return problem(wire.CodeTimeout, "timed out waiting for the write to commit; its outcome is unknown (retry with the same idempotency_key)")
	}
	s.log.Error("tcp ingest: publish failed", "err", err)
	return problem(wire.CodeInternal, "internal error")
}

// httpCode maps an HTTP status from api.ClientError to a NACK code.
func httpCode(status int) wire.Code {
	switch status {
	case http.StatusUnauthorized:
		return wire.CodeUnauthorized
	case http.StatusForbidden:
		return wire.CodeForbidden
	case http.StatusNotFound:
		return wire.CodeNotFound
	case http.StatusConflict:
		return wire.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return wire.CodeTooLarge
	case http.StatusTooManyRequests:
		return wire.CodeOverloaded
	case http.StatusServiceUnavailable:
		return wire.CodeUnavailable
	case http.StatusGatewayTimeout:
		return wire.CodeTimeout
	}
	if status >= 500 {
		return wire.CodeInternal
	}
	return wire.CodeBadRequest
}

func frameProblem(err error) wire.Problem {
	var fe *wire.FrameError
	if errors.As(err, &fe) {
		return problem(fe.Code, fe.Msg)
	}
	return problem(wire.CodeBadFrame, err.Error())
}

// decodeStrict reads exactly one JSON object into v, refusing unknown fields and trailing data, as
// the HTTP API does.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var (
			syn *json.SyntaxError
			typ *json.UnmarshalTypeError
		)
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("invalid JSON at byte %d: %v", syn.Offset, syn)
		case errors.As(err, &typ):
			return fmt.Errorf("invalid JSON: field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
		case errors.Is(err, io.EOF):
			return errors.New("invalid JSON: empty payload")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("invalid JSON: payload ends early")
		}
		return fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: unexpected data after the object")
	}
	return nil
}
