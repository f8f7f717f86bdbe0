package api

import (
	"bytes"
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
}

const maxIdempotencyKey = 255

// DecodePublish parses and validates a publish body for a mode. Data is kept as the exact bytes of the
// "data" value. It is the parser the fuzz test guards.
func decodePublish(body io.Reader, mode publishMode) (*PublishRequest, error) {
	var in PublishRequest
	if err := decodeJSON(body, &in); err != nil {
		return nil, err
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
// type; one with subscriptions receives the types they match. Disabled endpoints receive nothing;
// paused ones get deliveries that wait for reactivation.
func (s *Server) resolveTargets(pid string, ev *model.Event, at time.Time) ([]raftstore.Target, error) {
	subs := s.st.Subscriptions(pid)
	wants := func(eid string) bool {
		has := false
		for _, sub := range subs {
			if sub.EndpointID != eid {
				continue
			}
			if sub.Matches(ev.EventType) {
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
			if seen[sub.EndpointID] || !sub.Matches(ev.EventType) {
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

func (s *Server) publishHandler(mode publishMode) handler {
	return func(w http.ResponseWriter, r *http.Request, a *access) error {
		in, err := decodePublish(http.MaxBytesReader(w, r.Body, s.cfg.MaxPayloadBytes), mode)
		if err != nil {
			return err
		}
		pid := a.project.UID
		if in.IdempotencyKey != "" {
			if id, ok := s.st.IdempotentEvent(pid, in.IdempotencyKey); ok {
				return s.replyDuplicate(w, pid, id)
			}
		}
		now := s.clock.Now().UTC()
		ev := model.Event{
			UID: model.NewID(now), ProjectID: pid, EventType: in.EventType, EndpointID: in.EndpointID,
			OwnerID: in.OwnerID, Headers: in.CustomHeaders, IdempotencyKey: in.IdempotencyKey, CreatedAt: now,
		}
		targets, err := s.resolveTargets(pid, &ev, now)
		if err != nil {
			return err
		}
		ev.Endpoints = make([]string, len(targets))
		for i, t := range targets {
			ev.Endpoints[i] = t.EndpointID
		}
		res, err := s.propose(r, raftstore.CmdPublish, raftstore.Publish{Event: ev, Targets: targets}, raftstore.CompressData(in.Data))
		if err != nil {
			return err
		}
		if res.Duplicate {
			return s.replyDuplicate(w, pid, res.EventID)
		}
		ev.Data = in.Data
		writeJSON(w, http.StatusCreated, "Event created successfully", eventOut{Event: &ev, MatchedEndpoints: res.Matched})
		return nil
	}
}

// replyDuplicate answers a publish whose idempotency key was seen: the original event, nothing new.
func (s *Server) replyDuplicate(w http.ResponseWriter, pid, evid string) error {
	ev, err := s.st.Event(pid, evid)
	if err != nil {
		return err
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSON(w, http.StatusOK, "Event already exists for this idempotency_key; nothing was created", eventOut{Event: ev, MatchedEndpoints: len(ev.Endpoints)})
	return nil
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, a *access) error {
	evid, err := pathID(r, "eventID")
	if err != nil {
		return err
	}
	ev, err := s.st.Event(a.project.UID, evid)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Event fetched successfully", ev)
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
	evs, next, err := s.st.ListEvents(a.project.UID, raftstore.EventFilter{EventType: q.Get("eventType"), From: from, To: to, Page: page})
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []*model.Event{}
	}
	writeJSON(w, http.StatusOK, "Events fetched successfully", pageData{Content: evs,
		Pagination: pagination{PerPage: page.Limit, HasNextPage: next != "", NextPageCursor: next}})
	return nil
}

// replayEvent creates new deliveries of an event to the endpoints that match it now.
func (s *Server) replayEvent(w http.ResponseWriter, r *http.Request, a *access) error {
	evid, err := pathID(r, "eventID")
	if err != nil {
		return err
	}
	ev, err := s.st.Event(a.project.UID, evid)
	if err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	targets, err := s.resolveTargets(a.project.UID, ev, now)
	if err != nil {
		return err
	}
	meta := *ev
	meta.Data = nil
	res, err := s.propose(r, raftstore.CmdPublish, raftstore.Publish{Event: meta, Targets: targets, Replay: true}, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Event replayed successfully", eventOut{Event: ev, MatchedEndpoints: res.Matched})
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
