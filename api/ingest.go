package api

import (
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sluice-gw/sluice/incoming"
	"github.com/sluice-gw/sluice/model"
)

// IngestHandler serves sources' ingest URLs, /ingest/{mask_id}: POST (or PUT) is a webhook from a
// provider, GET (or HEAD) a provider's URL check. Mount it beside the API:
//
//	mux.Handle("/ingest/", api.IngestHandler())
//
// A POST is verified (401 and nothing created on failure), turned into an event (headers forwarded,
// body byte for byte) and published through Publish, so it is answered only after the event and its
// deliveries are committed. A provider's retry with the same idempotency values creates nothing and
// gets the same answer.
func (s *Server) IngestHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ingest/{maskID}", s.ingest)
	mux.HandleFunc("/ingest/", func(w http.ResponseWriter, r *http.Request) {
		s.inc.unknownMask.Add(1)
		writeJSON(w, http.StatusNotFound, "no source at this URL", nil)
	})
	return s.recoverer(mux)
}

// sourceCounters counts one source's ingest outcomes on this node.
type sourceCounters struct {
	projectID, sourceID string
	// accepted requests created an event; duplicates repeated an idempotency key; verifyFailed
	// were refused with 401, rejected with another 4xx (size, not JSON); failed could not commit.
	accepted, duplicates, verifyFailed, rejected, failed atomic.Uint64
}

// IngestStats is a snapshot of this node's ingest counters (for metrics).
type IngestStats struct {
	// UnknownMask counts requests to an ingest URL that names no source (404).
	UnknownMask uint64
	Sources     []SourceStats
}

// SourceStats is one source's counters: Accepted requests created an event, Duplicates repeated
// an idempotency key, VerifyFailed were refused with 401, Rejected with another 4xx, Failed could
// not be committed (5xx).
type SourceStats struct {
	ProjectID, SourceID                                  string
	Accepted, Duplicates, VerifyFailed, Rejected, Failed uint64
}

// IngestStats returns the ingest counters of live sources, ordered by id.
func (s *Server) IngestStats() IngestStats {
	out := IngestStats{UnknownMask: s.inc.unknownMask.Load()}
	s.inc.stats.Range(func(k, v any) bool {
		c := v.(*sourceCounters)
		if s.st.Source(c.projectID, c.sourceID) == nil {
			s.inc.stats.Delete(k) // deleted: its series go with it
			return true
		}
		out.Sources = append(out.Sources, SourceStats{ProjectID: c.projectID, SourceID: c.sourceID,
			Accepted: c.accepted.Load(), Duplicates: c.duplicates.Load(), VerifyFailed: c.verifyFailed.Load(),
			Rejected: c.rejected.Load(), Failed: c.failed.Load()})
		return true
	})
	sort.Slice(out.Sources, func(i, j int) bool { return out.Sources[i].SourceID < out.Sources[j].SourceID })
	return out
}

func (s *Server) sourceStats(src *model.Source) *sourceCounters {
	if v, ok := s.inc.stats.Load(src.UID); ok {
		return v.(*sourceCounters)
	}
	v, _ := s.inc.stats.LoadOrStore(src.UID, &sourceCounters{projectID: src.ProjectID, sourceID: src.UID})
	return v.(*sourceCounters)
}

// compiledSource returns src compiled, once per source version.
func (s *Server) compiledSource(src *model.Source) (*incoming.Source, error) {
	if v, ok := s.inc.sources.Load(src.UID); ok {
		if e := v.(*sourceEntry); e.updatedAt.Equal(src.UpdatedAt) {
			return e.c, e.err
		}
	}
	c, err := incoming.Compile(src)
	s.inc.sources.Store(src.UID, &sourceEntry{pid: src.ProjectID, updatedAt: src.UpdatedAt, c: c, err: err})
	s.sweepCaches()
	return c, err
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	src := s.st.SourceByMask(r.PathValue("maskID"))
	if src != nil && src.Type != model.SourceHTTP {
		src = nil // a broker source is consumed, never posted to
	}
	if src == nil {
		s.inc.unknownMask.Add(1)
		writeJSON(w, http.StatusNotFound, "no source at this URL", nil)
		return
	}
	stats := s.sourceStats(src)
	cs, err := s.compiledSource(src)
	if err != nil {
		stats.failed.Add(1)
		s.log.Error("ingest: stored source does not compile", "source", src.UID, "err", err)
		writeJSON(w, http.StatusInternalServerError, "internal error", nil)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.ingestCheck(w, r, src)
		return
	case http.MethodPost, http.MethodPut:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT")
		writeJSON(w, http.StatusMethodNotAllowed, "ingest URLs take POST (webhooks) and GET (URL checks)", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxPayloadBytes))
	if err != nil {
		stats.rejected.Add(1)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, "request body exceeds the "+strconv.FormatInt(mbe.Limit, 10)+"-byte limit", nil)
			return
		}
		writeJSON(w, http.StatusBadRequest, "could not read the request body", nil)
		return
	}
	req := &incoming.Request{Method: r.Method, URL: requestBase(r) + r.URL.RequestURI(), Header: r.Header, Body: body}
	if err := cs.Verify(req, s.clock.Now()); err != nil {
		stats.verifyFailed.Add(1)
		s.log.Debug("ingest: verification failed", "source", src.UID, "err", err)
		writeJSON(w, http.StatusUnauthorized, "verification failed: "+strings.TrimPrefix(err.Error(), "incoming: "), nil)
		return
	}
	if len(body) == 0 {
		stats.rejected.Add(1)
		writeJSON(w, http.StatusBadRequest, "empty request body: nothing to publish", nil)
		return
	}
	x, err := cs.Extract(req)
	if err != nil {
		stats.rejected.Add(1)
		if errors.Is(err, incoming.ErrNotJSON) {
			writeJSON(w, http.StatusBadRequest, "the body is not JSON (a source with allow_non_json accepts it as raw bytes)", nil)
			return
		}
		writeJSON(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "incoming: "), nil)
		return
	}
	in := &PublishRequest{EventType: x.EventType, Data: body, CustomHeaders: x.Headers, IdempotencyKey: x.IdempotencyKey, SourceID: src.UID}
	if err := in.validate(modeBroadcast); err != nil {
		stats.rejected.Add(1)
		s.writeErr(w, r, err)
		return
	}
	p, err := s.Publish(r.Context(), src.ProjectID, in)
	if err != nil {
		if code, _, ok := ClientError(err); ok && code < 500 {
			stats.rejected.Add(1)
		} else {
			stats.failed.Add(1)
		}
		s.writeErr(w, r, err)
		return
	}
	if p.Duplicate {
		stats.duplicates.Add(1)
		w.Header().Set("Idempotent-Replayed", "true")
	} else {
		stats.accepted.Add(1)
		if s.cfg.OnPublish != nil {
			s.cfg.OnPublish(src.ProjectID)
		}
	}
	w.Header().Set("X-Sluice-Event-Id", p.Event.UID)
	if cr := src.CustomResponse; cr != nil && (cr.Body != "" || cr.Status != 0) {
		writeCustom(w, cr)
		return
	}
	msg := "Event received"
	if p.Duplicate {
		msg = "Event already received; nothing was created"
	}
	writeJSON(w, http.StatusOK, msg, map[string]any{"event_id": p.Event.UID, "event_type": p.Event.EventType, "matched_endpoints": p.Matched})
}

// ingestCheck answers a provider's GET on the ingest URL. It creates nothing and verifies nothing
// (providers check the URL before they sign anything): it echoes hub.challenge (Meta's
// subscription check) and otherwise gives the source's custom response or a plain 200.
func (s *Server) ingestCheck(w http.ResponseWriter, r *http.Request, src *model.Source) {
	if c := r.URL.Query().Get("hub.challenge"); c != "" && len(c) <= 1024 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, c)
		return
	}
	if cr := src.CustomResponse; cr != nil && (cr.Body != "" || cr.Status != 0) {
		writeCustom(w, cr)
		return
	}
	writeJSON(w, http.StatusOK, "Source "+src.Name+" is ready", nil)
}

func writeCustom(w http.ResponseWriter, cr *model.CustomResponse) {
	ct := cr.ContentType
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	code := cr.Status
	if code == 0 {
		code = http.StatusOK
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, cr.Body)
}
