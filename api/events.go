package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// publishMode is how a publish picks its endpoints.
type publishMode int

const (
	modeEndpoint  publishMode = iota // one endpoint by id
	modeFanout                       // every endpoint with an owner id
	modeBroadcast                    // every matching subscription in the project
)

// PublishRequest is the body of the three publish routes (and of one TCP/broker publish).
type PublishRequest struct {
	EndpointID     string            `json:"endpoint_id,omitempty"`
	OwnerID        string            `json:"owner_id,omitempty"`
	EventType      string            `json:"event_type"`
	Data           json.RawMessage   `json:"data"`
	CustomHeaders  map[string]string `json:"custom_headers,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	// SourceID is set by ingest (never decoded): the incoming source that received the event.
	SourceID string `json:"-"`
}

const maxIdempotencyKey = 255

// DecodePublish parses and validates a publish body for a mode. Data is kept as the exact bytes of the
// "data" value. The body is read whole first, so one over the reader's limit is a 413 whatever it
// holds. It is the parser the fuzz tests guard.
func decodePublish(body io.Reader, mode publishMode) (*PublishRequest, error) {
	buf, err := readPublishBody(body)
	if err != nil {
		return nil, err
	}
	defer releaseBody(buf)
	var in PublishRequest
	// The fast path takes the canonical body; encoding/json decides everything else.
	if !decodePublishFast(buf.Bytes(), &in) {
		if err := decodeJSON(bytes.NewReader(buf.Bytes()), &in); err != nil {
			return nil, err
		}
	}
	if err := in.validate(mode); err != nil {
		return nil, err
	}
	return &in, nil
}

func (in *PublishRequest) validate(mode publishMode) error {
	if in.EventType == "" {
		return errf(http.StatusBadRequest, "event_type: required")
	}
	if err := validateEventType("event_type", in.EventType); err != nil {
		return err
	}
	if len(bytes.TrimSpace(in.Data)) == 0 || bytes.Equal(bytes.TrimSpace(in.Data), []byte("null")) {
		return errf(http.StatusBadRequest, "data: required (any JSON value but null)")
	}
	if len(in.IdempotencyKey) > maxIdempotencyKey {
		return errf(http.StatusBadRequest, "idempotency_key: longer than %d bytes", maxIdempotencyKey)
	}
	for k, v := range in.CustomHeaders {
		if err := validateHeader("custom_headers", k, v); err != nil {
			return err
		}
	}
	switch mode {
	case modeEndpoint:
		if in.EndpointID == "" {
			return errf(http.StatusBadRequest, "endpoint_id: required (use /events/fanout for owner_id, /events/broadcast for all subscribers)")
		}
		id, err := model.ParseID(in.EndpointID)
		if err != nil {
			return errf(http.StatusNotFound, "endpoint %q not found", in.EndpointID)
		}
		in.EndpointID = id
	case modeFanout:
		if in.OwnerID == "" {
			return errf(http.StatusBadRequest, "owner_id: required")
		}
	case modeBroadcast:
		if in.EndpointID != "" || in.OwnerID != "" {
			return errf(http.StatusBadRequest, "broadcast takes neither endpoint_id nor owner_id")
		}
	}
	return nil
}

// resolveTargets picks the endpoints an event goes to, from the current endpoints and
// subscriptions. An endpoint named directly (or by owner) with no subscriptions receives every event
// type; one with subscriptions receives the events they match (source, types and filters on data
// and headers: see subscriptionMatcher). Disabled endpoints receive nothing; paused ones get
// deliveries that wait for reactivation.
func (s *Server) resolveTargets(pid string, ev *model.Event, data []byte, at time.Time) ([]raftstore.Target, error) {
	subs := s.st.Subscriptions(pid)
	matches := s.subscriptionMatcher(ev, data)
	wants := func(eid string) bool {
		has := false
		for _, sub := range subs {
			if sub.EndpointID != eid {
				continue
			}
			if matches(sub) {
				return true
			}
			has = true
		}
		return !has
	}
	var eps []*model.Endpoint
	switch {
	case ev.EndpointID != "":
		e := s.st.Endpoint(pid, ev.EndpointID)
		if e == nil {
			return nil, errf(http.StatusNotFound, "endpoint %s not found", ev.EndpointID)
		}
		if wants(e.UID) {
			eps = append(eps, e)
		}
	case ev.OwnerID != "":
		for _, e := range s.st.Endpoints(pid) {
			if e.OwnerID == ev.OwnerID && wants(e.UID) {
				eps = append(eps, e)
			}
		}
	default:
		seen := map[string]bool{}
		for _, sub := range subs {
			if seen[sub.EndpointID] || !matches(sub) {
				continue
			}
			if e := s.st.Endpoint(pid, sub.EndpointID); e != nil {
				seen[e.UID] = true
				eps = append(eps, e)
			}
		}
	}
	targets := make([]raftstore.Target, 0, len(eps))
	for _, e := range eps {
		if e.Status == model.EndpointDisabled {
			continue
		}
		targets = append(targets, raftstore.Target{EndpointID: e.UID, DeliveryID: model.NewID(at), OwnerID: e.OwnerID})
	}
	return targets, nil
}

type eventOut struct {
	*model.Event
	MatchedEndpoints int `json:"matched_endpoints"`
}

// PublishMode is how a publish picks its endpoints.
type PublishMode = publishMode

// Publish modes for callers outside this package (TCP and broker ingest).
const (
	PublishToEndpoint = modeEndpoint
	PublishFanout     = modeFanout
	PublishBroadcast  = modeBroadcast
)

// Published is the outcome of a publish.
type Published struct {
	Event     *model.Event
	Matched   int
	Duplicate bool // the idempotency key was seen: Event is the original and nothing was created
}

// Validate checks a publish request decoded by another protocol; errors are client errors.
func (in *PublishRequest) Validate(mode PublishMode) error { return in.validate(mode) }

// Publish stores an event and its deliveries and returns once they are committed and applied. It is
// the one publish path: HTTP, TCP and broker ingest all call it (or PublishAll), so all share the
// proposer's batches. in must have been validated.
func (s *Server) Publish(ctx context.Context, projectID string, in *PublishRequest) (*Published, error) {
	ev, cmd, done, err := s.preparePublish(projectID, in)
	if err != nil || done != nil {
		return done, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.st.Propose(ctx, cmd)
	return s.finishPublish(projectID, in, ev, res, err)
}

// PublishItem is one publish of PublishAll: ProjectID and Req in, Res or Err out.
type PublishItem struct {
	ProjectID string
	Req       *PublishRequest
	Res       *Published
	Err       error
}

// PublishAll publishes items as concurrent Publish calls would, from the calling goroutine: their
// commands are proposed back to back (usually into one Raft entry) and waited for together. Each
// item's outcome is as Publish's; two items with the same idempotency key create one event.
func (s *Server) PublishAll(ctx context.Context, items []PublishItem) {
	evs := make([]*model.Event, 0, len(items))
	cmds := make([]raftstore.Command, 0, len(items))
	idx := make([]int, 0, len(items))
	for i := range items {
		it := &items[i]
		ev, cmd, done, err := s.preparePublish(it.ProjectID, it.Req)
		if err != nil || done != nil {
			it.Res, it.Err = done, err
			continue
		}
		evs, cmds, idx = append(evs, ev), append(cmds, cmd), append(idx, i)
	}
	if len(cmds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	outs := s.st.ProposeAll(ctx, cmds)
	for k, i := range idx {
		it := &items[i]
		it.Res, it.Err = s.finishPublish(it.ProjectID, it.Req, evs[k], outs[k].Result, outs[k].Err)
	}
}

// preparePublish answers a repeated idempotency key from the state (done), or builds the command
// that stores the event. The lookup costs no read for a key never used (raftstore's key filter);
// the FSM checks the key again when it applies, which is what settles concurrent repeats.
func (s *Server) preparePublish(projectID string, in *PublishRequest) (ev *model.Event, cmd raftstore.Command, done *Published, err error) {
	if in.IdempotencyKey != "" {
		if id, ok := s.st.IdempotentEvent(projectID, in.IdempotencyKey); ok {
			orig, err := s.st.Event(projectID, id)
			if err != nil {
				return nil, cmd, nil, err
			}
			return nil, cmd, &Published{Event: orig, Matched: len(orig.Endpoints), Duplicate: true}, nil
		}
	}
	if s.st.Project(projectID) == nil {
		return nil, cmd, nil, errf(http.StatusNotFound, "project %s not found", projectID)
	}
	now := s.clock.Now().UTC()
	ev = &model.Event{
		UID: model.NewID(now), ProjectID: projectID, EventType: in.EventType, EndpointID: in.EndpointID,
		OwnerID: in.OwnerID, Headers: in.CustomHeaders, IdempotencyKey: in.IdempotencyKey, CreatedAt: now,
		SourceID: in.SourceID,
	}
	targets, err := s.resolveTargets(projectID, ev, in.Data, now)
	if err != nil {
		return nil, cmd, nil, err
	}
	ev.Endpoints = make([]string, len(targets))
	for i, t := range targets {
		ev.Endpoints[i] = t.EndpointID
	}
	if s.st.BinaryCommands() {
		cmd, err = raftstore.NewPublishCommand(raftstore.Publish{Event: *ev, Targets: targets}, raftstore.CompressData(in.Data))
	} else {
		cmd, err = raftstore.NewCommand(raftstore.CmdPublish, raftstore.Publish{Event: *ev, Targets: targets}, raftstore.CompressData(in.Data))
	}
	if err != nil {
		return nil, cmd, nil, err
	}
	return ev, cmd, nil, nil
}

// finishPublish turns the outcome of proposing ev's command into Publish's result.
func (s *Server) finishPublish(projectID string, in *PublishRequest, ev *model.Event, res raftstore.Result, err error) (*Published, error) {
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return nil, err
	}
	if res.Duplicate {
		orig, err := s.st.Event(projectID, res.EventID)
		if err != nil {
			return nil, err
		}
		return &Published{Event: orig, Matched: len(orig.Endpoints), Duplicate: true}, nil
	}
	ev.Data = model.EventData(in.Data)
	return &Published{Event: ev, Matched: res.Matched}, nil
}

func (s *Server) publishHandler(mode publishMode) handler {
	return func(w http.ResponseWriter, r *http.Request, a *access) error {
		in, err := decodePublish(http.MaxBytesReader(w, r.Body, s.cfg.MaxPayloadBytes), mode)
		if err != nil {
			return err
		}
		p, err := s.Publish(r.Context(), a.project.UID, in)
		if err != nil {
			return err
		}
		if p.Duplicate {
			w.Header().Set("Idempotent-Replayed", "true")
			writeEventJSON(w, http.StatusOK, "Event already exists for this idempotency_key; nothing was created", p.Event, p.Matched)
			return nil
		}
		if s.cfg.OnPublish != nil {
			s.cfg.OnPublish(a.project.UID)
		}
		writeEventJSON(w, http.StatusCreated, "Event created successfully", p.Event, p.Matched)
		return nil
	}
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, a *access) error {
	ev, err := s.event(r, a)
	if err != nil {
		return err
	}
	writeEventReply(w, http.StatusOK, "Event fetched successfully", &eventReply{kind: replyEvent, ev: ev})
	return nil
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	page, err := parsePage(q.Get("perPage"), q.Get("next_page_cursor"))
	if err != nil {
		return err
	}
	from, to, err := parseRange(q.Get("startDate"), q.Get("endDate"))
	if err != nil {
		return err
	}
	evs, next, err := s.queryEvents(a, q, raftstore.EventFilter{EventType: q.Get("eventType"), From: from, To: to, Page: page})
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []*model.Event{}
	}
	writeEventReply(w, http.StatusOK, "Events fetched successfully", &eventReply{kind: replyPage, list: evs,
		page: pagination{PerPage: page.Limit, HasNextPage: next != "", NextPageCursor: next}})
	return nil
}

// replayEvent creates new deliveries of an event to the endpoints that match it now.
func (s *Server) replayEvent(w http.ResponseWriter, r *http.Request, a *access) error {
	ev, err := s.event(r, a)
	if err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	targets, err := s.resolveTargets(a.project.UID, ev, ev.Data, now)
	if err != nil {
		return err
	}
	targets = a.ownTargets(s, targets)
	meta := *ev
	meta.Data = nil
	res, err := s.propose(r, raftstore.CmdPublish, raftstore.Publish{Event: meta, Targets: targets, Replay: true}, nil)
	if err != nil {
		return err
	}
	writeEventJSON(w, http.StatusOK, "Event replayed successfully", ev, res.Matched)
	return nil
}

func parsePage(perPage, cursor string) (raftstore.Page, error) {
	p := raftstore.Page{Limit: 20}
	if perPage != "" {
		n, err := strconv.Atoi(perPage)
		if err != nil || n < 1 || n > 1000 {
			return p, errf(http.StatusBadRequest, "perPage: %q must be a number from 1 to 1000", perPage)
		}
		p.Limit = n
	}
	if cursor != "" {
		id, err := model.ParseID(cursor)
		if err != nil {
			return p, errf(http.StatusBadRequest, "next_page_cursor: %q is not a cursor this API returned", cursor)
		}
		p.Cursor = id
	}
	return p, nil
}

func parseRange(start, end string) (from, to time.Time, err error) {
	parse := func(name, v string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return t, errf(http.StatusBadRequest, "%s: %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", name, v)
		}
		return t, nil
	}
	if from, err = parse("startDate", start); err != nil {
		return
	}
	if to, err = parse("endDate", end); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		err = errf(http.StatusBadRequest, "endDate is before startDate")
	}
	return
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
