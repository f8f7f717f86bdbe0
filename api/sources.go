package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/sluice-gw/sluice/dispatcher"
	"github.com/sluice-gw/sluice/incoming"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// ---- sources (incoming projects) ----

// sourceInput is the body of source create and update (Convoy's shape). On update, omitted fields
// keep their values; a verifier credential sent back as "[redacted]" keeps the stored one.
type sourceInput struct {
	Name              *string                  `json:"name"`
	Type              *string                  `json:"type"`
	Provider          *string                  `json:"provider"`
	Verifier          *model.SourceVerifier    `json:"verifier"`
	CustomResponse    *model.CustomResponse    `json:"custom_response"`
	IdempotencyKeys   *[]string                `json:"idempotency_keys"`
	ForwardHeaders    *[]string                `json:"forward_headers"`
	EventTypeLocation *model.EventTypeLocation `json:"event_type_location"`
	AllowNonJSON      *bool                    `json:"allow_non_json"`
	Broker            *model.BrokerConfig      `json:"broker"`
}

func (in *sourceInput) apply(src *model.Source, projectType string, brokers BrokerChecker) error {
	oldType := src.Type
	if in.Name != nil {
		src.Name = strings.TrimSpace(*in.Name)
	}
	if in.Type != nil {
		src.Type = strings.ToLower(strings.TrimSpace(*in.Type))
		if oldType != "" && src.Type != oldType {
			return errf(http.StatusBadRequest, "type: a source's type cannot change (%s); create a new source", oldType)
		}
	}
	if in.Provider != nil {
		src.Provider = strings.ToLower(strings.TrimSpace(*in.Provider))
	}
	if in.Verifier != nil {
		v := *in.Verifier
		keepRedacted(&v, &src.Verifier)
		src.Verifier = v
	}
	if in.CustomResponse != nil {
		src.CustomResponse = in.CustomResponse
		if *in.CustomResponse == (model.CustomResponse{}) {
			src.CustomResponse = nil
		}
	}
	if in.IdempotencyKeys != nil {
		src.IdempotencyKeys = *in.IdempotencyKeys
	}
	if in.ForwardHeaders != nil {
		src.ForwardHeaders = *in.ForwardHeaders
	}
	if in.EventTypeLocation != nil {
		src.EventTypeLocation = in.EventTypeLocation
		if *in.EventTypeLocation == (model.EventTypeLocation{}) {
			src.EventTypeLocation = nil
		}
	}
	if in.AllowNonJSON != nil {
		src.AllowNonJSON = *in.AllowNonJSON
	}
	if src.Name == "" {
		return errf(http.StatusBadRequest, "name: required")
	}
	if len(src.Name) > 255 {
		return errf(http.StatusBadRequest, "name: longer than 255 bytes")
	}
	if src.Type == "" {
		src.Type = model.SourceHTTP
	}
	if model.IsBrokerSource(src.Type) {
		return in.applyBroker(src, projectType, brokers)
	}
	if src.Type != model.SourceHTTP {
		return errf(http.StatusBadRequest, "type: %q is not a source type (http, kafka, nats, amqp, sqs, pubsub)", src.Type)
	}
	if projectType != model.ProjectIncoming {
		return errf(http.StatusBadRequest, "type: http sources exist only in incoming projects (this project is %s); outgoing projects take broker sources", projectType)
	}
	if in.Broker != nil {
		return errf(http.StatusBadRequest, "broker: only broker sources (kafka, nats, amqp, sqs, pubsub) have broker settings")
	}
	if src.Provider != "" && src.Verifier.Type == "" {
		src.Verifier.Type = "hmac"
	}
	_, err := incoming.Compile(src)
	return configError(err)
}

// applyBroker validates a broker source. The HTTP-only settings must be absent: a broker message
// is trusted as the broker delivered it (the broker authenticates its producers).
func (in *sourceInput) applyBroker(src *model.Source, projectType string, brokers BrokerChecker) error {
	if in.Broker != nil {
		b := *in.Broker
		model.KeepBrokerSecrets(&b, src.Broker, dispatcher.Redacted)
		src.Broker = &b
	}
	switch {
	case src.Provider != "" || src.Verifier.Type != "" && src.Verifier.Type != "noop":
		return errf(http.StatusBadRequest, "verifier, provider: broker sources are not verified per message (the broker authenticates producers)")
	case src.CustomResponse != nil || len(src.IdempotencyKeys) > 0 || len(src.ForwardHeaders) > 0 || src.EventTypeLocation != nil || src.AllowNonJSON:
		return errf(http.StatusBadRequest, "custom_response, idempotency_keys, forward_headers, event_type_location, allow_non_json: only http sources have these; see broker")
	case brokers == nil:
		return errf(http.StatusBadRequest, "type: this node consumes no brokers")
	}
	src.Verifier = model.SourceVerifier{Type: "noop"}
	if src.Broker != nil {
		if id := src.Broker.EndpointID; id != "" {
			if _, err := model.ParseID(id); err != nil {
				return errf(http.StatusBadRequest, "broker.endpoint_id: %q is not an endpoint id", id)
			}
		}
	}
	if err := brokers.Check(src); err != nil {
		return errf(http.StatusBadRequest, "%s", err.Error())
	}
	_ = projectType // broker sources may feed incoming and outgoing projects alike
	return nil
}

// keepRedacted puts back stored credentials where an update sent the redacted placeholder.
func keepRedacted(v, old *model.SourceVerifier) {
	if v.HMac != nil && v.HMac.Secret == dispatcher.Redacted && old.HMac != nil {
		h := *v.HMac
		h.Secret = old.HMac.Secret
		v.HMac = &h
	}
	if v.BasicAuth != nil && v.BasicAuth.Password == dispatcher.Redacted && old.BasicAuth != nil {
		b := *v.BasicAuth
		b.Password = old.BasicAuth.Password
		v.BasicAuth = &b
	}
	if v.APIKey != nil && v.APIKey.HeaderValue == dispatcher.Redacted && old.APIKey != nil {
		k := *v.APIKey
		k.HeaderValue = old.APIKey.HeaderValue
		v.APIKey = &k
	}
}

// sourceOut is a source as the API shows it: credentials redacted, and its ingest URL.
type sourceOut struct {
	*model.Source
	URL string `json:"url,omitempty"` // http sources only
}

func publicSource(r *http.Request, src *model.Source) sourceOut {
	out := *src
	if h := src.Verifier.HMac; h != nil {
		c := *h
		c.Secret = dispatcher.Redacted
		out.Verifier.HMac = &c
	}
	if b := src.Verifier.BasicAuth; b != nil {
		c := *b
		c.Password = dispatcher.Redacted
		out.Verifier.BasicAuth = &c
	}
	if k := src.Verifier.APIKey; k != nil {
		c := *k
		c.HeaderValue = dispatcher.Redacted
		out.Verifier.APIKey = &c
	}
	if src.Broker != nil {
		out.Broker = model.RedactBroker(src.Broker, dispatcher.Redacted)
	}
	if model.IsBrokerSource(src.Type) {
		return sourceOut{Source: &out}
	}
	return sourceOut{Source: &out, URL: requestBase(r) + "/ingest/" + src.MaskID}
}

// requestBase is the scheme and host the caller reached this node at.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
		host = h
	}
	return scheme + "://" + host
}

func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// newMaskID returns a random, URL-safe, unguessable mask id (128 bits) not yet in use.
func (s *Server) newMaskID() string {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic("BUG: crypto/rand failed: " + err.Error())
		}
		m := base64.RawURLEncoding.EncodeToString(b[:])
		if s.st.SourceByMask(m) == nil {
			return m
		}
	}
}

func (s *Server) createSource(w http.ResponseWriter, r *http.Request, a *access) error {
	var in sourceInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	src := model.Source{UID: model.NewID(now), ProjectID: a.project.UID, MaskID: s.newMaskID(), CreatedAt: now, UpdatedAt: now}
	if err := in.apply(&src, a.project.Type, s.cfg.Brokers); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutSource, raftstore.PutSource{Source: src, Create: true}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, "Source created successfully", publicSource(r, &src))
	return nil
}

func (s *Server) source(r *http.Request, a *access) (*model.Source, error) {
	sid, err := pathID(r, "sourceID")
	if err != nil {
		return nil, err
	}
	src := s.st.Source(a.project.UID, sid)
	if src == nil {
		return nil, errf(http.StatusNotFound, "source %s not found", sid)
	}
	return src, nil
}

func (s *Server) listSources(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	provider, search := q.Get("provider"), strings.ToLower(q.Get("q"))
	out := []sourceOut{}
	for _, src := range s.st.Sources(a.project.UID) {
		if provider != "" && src.Provider != provider {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(src.Name), search) {
			continue
		}
		out = append(out, publicSource(r, src))
	}
	writeJSON(w, http.StatusOK, "Sources fetched successfully", pageData{Content: out, Pagination: pagination{PerPage: len(out)}})
	return nil
}

func (s *Server) getSource(w http.ResponseWriter, r *http.Request, a *access) error {
	src, err := s.source(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Source fetched successfully", publicSource(r, src))
	return nil
}

func (s *Server) updateSource(w http.ResponseWriter, r *http.Request, a *access) error {
	cur, err := s.source(r, a)
	if err != nil {
		return err
	}
	var in sourceInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	src := *cur
	src.UpdatedAt = s.clock.Now().UTC()
	if err := in.apply(&src, a.project.Type, s.cfg.Brokers); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutSource, raftstore.PutSource{Source: src}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, "Source updated successfully", publicSource(r, &src))
	return nil
}

func (s *Server) deleteSource(w http.ResponseWriter, r *http.Request, a *access) error {
	src, err := s.source(r, a)
	if err != nil {
		return err
	}
	ref := raftstore.DeleteRef{ProjectID: a.project.UID, ID: src.UID, At: s.clock.Now().UTC()}
	res, err := s.propose(r, raftstore.CmdDeleteSource, ref, nil)
	if err != nil {
		return err
	}
	s.inc.sources.Delete(src.UID)
	writeJSON(w, http.StatusOK, "Source deleted successfully", map[string]int{"deleted_subscriptions": res.Count})
	return nil
}

// ---- dead letters of broker sources ----

// RecordDeadLetters commits records of broker messages that could not become events, choosing
// their ids and times. The broker consumer calls it before it acknowledges them.
func (s *Server) RecordDeadLetters(ctx context.Context, letters []model.DeadLetter) error {
	now := s.clock.Now().UTC()
	for i := range letters {
		letters[i].UID = model.NewID(now)
		letters[i].CreatedAt = now
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdPutDeadLetters, raftstore.PutDeadLetters{Letters: letters}, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.st.Propose(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	return err
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request, a *access) error {
	src, err := s.source(r, a)
	if err != nil {
		return err
	}
	page, err := parsePage(r.URL.Query().Get("perPage"), r.URL.Query().Get("next_page_cursor"))
	if err != nil {
		return err
	}
	letters, err := s.st.DeadLetters(a.project.UID, src.UID, page.Cursor, page.Limit+1)
	if err != nil {
		return err
	}
	pg := pagination{PerPage: page.Limit}
	if len(letters) > page.Limit {
		letters = letters[:page.Limit]
		pg.HasNextPage, pg.NextPageCursor = true, letters[len(letters)-1].UID
	}
	if letters == nil {
		letters = []*model.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, "Dead letters fetched successfully", pageData{Content: letters, Pagination: pg})
	return nil
}

func (s *Server) dropDeadLetters(w http.ResponseWriter, r *http.Request, a *access) error {
	src, err := s.source(r, a)
	if err != nil {
		return err
	}
	ref := raftstore.DeleteRef{ProjectID: a.project.UID, ID: src.UID, At: s.clock.Now().UTC()}
	if _, err := s.propose(r, raftstore.CmdDropDeadLetters, ref, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Dead letters deleted successfully", nil)
	return nil
}
