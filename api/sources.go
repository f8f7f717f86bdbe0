package api

import (
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
}

func (in *sourceInput) apply(src *model.Source) error {
	if in.Name != nil {
		src.Name = strings.TrimSpace(*in.Name)
	}
	if in.Type != nil {
		src.Type = *in.Type
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
	if src.Type != model.SourceHTTP {
		return errf(http.StatusBadRequest, "type: only %q sources exist", model.SourceHTTP)
	}
	if src.Provider != "" && src.Verifier.Type == "" {
		src.Verifier.Type = "hmac"
	}
	_, err := incoming.Compile(src)
	return configError(err)
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
	URL string `json:"url"`
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

func incomingOnly(a *access) error {
	if a.project.Type != model.ProjectIncoming {
		return errf(http.StatusBadRequest, "sources exist only in incoming projects (this project is %s)", a.project.Type)
	}
	return nil
}

func (s *Server) createSource(w http.ResponseWriter, r *http.Request, a *access) error {
	if err := incomingOnly(a); err != nil {
		return err
	}
	var in sourceInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	src := model.Source{UID: model.NewID(now), ProjectID: a.project.UID, MaskID: s.newMaskID(), CreatedAt: now, UpdatedAt: now}
	if err := in.apply(&src); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutSource, raftstore.PutSource{Source: src, Create: true}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, "Source created successfully", publicSource(r, &src))
	return nil
}

func (s *Server) source(r *http.Request, a *access) (*model.Source, error) {
	if err := incomingOnly(a); err != nil {
		return nil, err
	}
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
	if err := incomingOnly(a); err != nil {
		return err
	}
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
	if err := in.apply(&src); err != nil {
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
