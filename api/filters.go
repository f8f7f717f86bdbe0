package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/incoming"
	"github.com/sluice-gw/sluice/model"
)

// incomingState is the API's in-memory state for sources and filters. Its zero value is ready.
type incomingState struct {
	// filters caches compiled subscription filters by subscription id; an entry is valid for the
	// subscription version (UpdatedAt) it was compiled from.
	filters sync.Map // string -> *filterEntry
	// sources caches compiled sources (verifier, extraction settings) by source id and version.
	sources sync.Map // string -> *sourceEntry
	// stores counts cache insertions; every sweepEvery-th one sweeps entries of deleted records.
	stores atomic.Uint64
	// stats counts ingest outcomes per source.
	stats       sync.Map // source id -> *SourceStats
	unknownMask atomic.Uint64
}

const sweepEvery = 1024

type filterEntry struct {
	pid       string
	updatedAt time.Time
	f         *model.CompiledFilter
	err       error
}

type sourceEntry struct {
	pid       string
	updatedAt time.Time
	c         *incoming.Source
	err       error
}

// filterFor returns sub's compiled filter, compiling it once per subscription version.
func (s *Server) filterFor(sub *model.Subscription) (*model.CompiledFilter, error) {
	if v, ok := s.inc.filters.Load(sub.UID); ok {
		if e := v.(*filterEntry); e.updatedAt.Equal(sub.UpdatedAt) {
			return e.f, e.err
		}
	}
	f, err := model.CompileFilter(sub.FilterConfig.Filter)
	if err != nil {
		// Filters are checked when saved; one that no longer compiles matches nothing rather than
		// everything.
		s.log.Error("subscription filter does not compile; it matches nothing", "subscription", sub.UID, "err", err)
	}
	s.inc.filters.Store(sub.UID, &filterEntry{pid: sub.ProjectID, updatedAt: sub.UpdatedAt, f: f, err: err})
	s.sweepCaches()
	return f, err
}

// sweepCaches drops cache entries of deleted subscriptions and sources, now and then.
func (s *Server) sweepCaches() {
	if s.inc.stores.Add(1)%sweepEvery != 0 {
		return
	}
	s.inc.filters.Range(func(k, v any) bool {
		if s.st.Subscription(v.(*filterEntry).pid, k.(string)) == nil {
			s.inc.filters.Delete(k)
		}
		return true
	})
	s.inc.sources.Range(func(k, v any) bool {
		if s.st.Source(v.(*sourceEntry).pid, k.(string)) == nil {
			s.inc.sources.Delete(k)
		}
		return true
	})
}

// subscriptionMatcher returns the test resolveTargets applies to each subscription for one event:
// its source (an event received by a source goes only to that source's subscriptions), its event
// types, then its filter. The payload is parsed at most once per event, and only if some
// subscription filters on it.
func (s *Server) subscriptionMatcher(ev *model.Event, data []byte) func(*model.Subscription) bool {
	var doc *model.FilterDoc
	return func(sub *model.Subscription) bool {
		// A source's events go only to that source's subscriptions. Subscriptions of outgoing
		// projects name no source, so a broker source's events there reach all of them.
		if ev.SourceID != "" && sub.SourceID != "" && sub.SourceID != ev.SourceID {
			return false
		}
		if !sub.Matches(ev.EventType) {
			return false
		}
		f, err := s.filterFor(sub)
		if err != nil {
			return false
		}
		if f.IsEmpty() {
			return true
		}
		if doc == nil {
			doc = model.NewFilterDoc(data, ev.Headers)
		}
		return f.Match(doc)
	}
}

// applySubscriptionRouting validates what routes a subscription beyond its endpoint: its source (in
// incoming projects) and its filter, which is compiled here, once, and cached for this version.
func (s *Server) applySubscriptionRouting(in *subscriptionInput, sub *model.Subscription) error {
	if in.SourceID != nil {
		sub.SourceID = ""
		if raw := strings.TrimSpace(*in.SourceID); raw != "" {
			sid, err := model.ParseID(raw)
			if err != nil || s.st.Source(sub.ProjectID, sid) == nil {
				return errf(http.StatusBadRequest, "source_id: source %q not found", raw)
			}
			sub.SourceID = sid
		}
	}
	if p := s.st.Project(sub.ProjectID); p != nil {
		switch {
		case p.Type == model.ProjectIncoming && sub.SourceID == "":
			return errf(http.StatusBadRequest, "source_id: required in an incoming project (the source whose events this subscription routes)")
		case p.Type != model.ProjectIncoming && sub.SourceID != "":
			return errf(http.StatusBadRequest, "source_id: only subscriptions of incoming projects have a source")
		}
	}
	f, err := model.CompileFilter(sub.FilterConfig.Filter)
	if err != nil {
		return errf(http.StatusBadRequest, "filter_config.filter: %s", strings.TrimPrefix(err.Error(), model.ErrFilter.Error()+": "))
	}
	s.inc.filters.Store(sub.UID, &filterEntry{pid: sub.ProjectID, updatedAt: sub.UpdatedAt, f: f})
	return nil
}

// filterSample is one side of a test_filter request (Convoy's shape): headers and body.
type filterSample struct {
	Header  json.RawMessage `json:"header"`
	Headers json.RawMessage `json:"headers"`
	Body    json.RawMessage `json:"body"`
}

func (f *filterSample) headers() json.RawMessage {
	if len(f.Headers) > 0 {
		return f.Headers
	}
	return f.Header
}

type testFilterInput struct {
	// Request is the sample event; Schema the filter to test.
	Request filterSample `json:"request"`
	Schema  filterSample `json:"schema"`
}

type testFilterOut struct {
	IsMatch bool `json:"is_match"`
	// FailedClause names the first clause that did not match.
	FailedClause string `json:"failed_clause,omitempty"`
}

// testFilter evaluates a filter against a sample event and says which clause failed.
func (s *Server) testFilter(w http.ResponseWriter, r *http.Request, a *access) error {
	var in testFilterInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	f, err := model.CompileFilter(model.Filter{Headers: in.Schema.headers(), Body: in.Schema.Body})
	if err != nil {
		return errf(http.StatusBadRequest, "schema: %s", strings.TrimPrefix(err.Error(), model.ErrFilter.Error()+": "))
	}
	hdrs := map[string]string{}
	if raw := in.Request.headers(); len(raw) > 0 && string(raw) != "null" {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return errf(http.StatusBadRequest, "request.header: must be an object of header names to values")
		}
		for k, v := range m {
			switch x := v.(type) {
			case string:
				hdrs[k] = x
			case []any: // Convoy sends header values as arrays
				var parts []string
				for _, p := range x {
					if ps, ok := p.(string); ok {
						parts = append(parts, ps)
					}
				}
				hdrs[k] = strings.Join(parts, ", ")
			default:
				return errf(http.StatusBadRequest, "request.header: %q must be a string or an array of strings", k)
			}
		}
	}
	body := in.Request.Body
	if len(body) == 0 {
		body = json.RawMessage("null")
	}
	ok, why := f.Explain(model.NewFilterDoc(body, hdrs))
	msg := "The filter matches the sample"
	if !ok {
		msg = "The filter does not match the sample"
	}
	writeJSON(w, http.StatusOK, msg, testFilterOut{IsMatch: ok, FailedClause: why})
	return nil
}

// configError turns an incoming.ErrConfig into a 400 naming the field.
func configError(err error) error {
	if errors.Is(err, incoming.ErrConfig) {
		return errf(http.StatusBadRequest, "%s", strings.Replace(err.Error(), incoming.ErrConfig.Error()+": ", "", 1))
	}
	return err
}
