package api

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/dispatcher"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// ---- projects ----

type projectInput struct {
	Name   *string              `json:"name"`
	Type   *string              `json:"type"`
	Config *model.ProjectConfig `json:"config"`
}

func (in *projectInput) apply(p *model.Project) error {
	if in.Name != nil {
		p.Name = strings.TrimSpace(*in.Name)
	}
	if in.Type != nil {
		p.Type = *in.Type
	}
	if in.Config != nil {
		p.Config = *in.Config
	}
	if p.Name == "" {
		return errf(http.StatusBadRequest, "name: required")
	}
	if p.Type != model.ProjectOutgoing && p.Type != model.ProjectIncoming {
		return errf(http.StatusBadRequest, "type: must be %q or %q, not %q", model.ProjectOutgoing, model.ProjectIncoming, p.Type)
	}
	if st := p.Config.Strategy; st != nil {
		if err := validateStrategy("config.strategy", st); err != nil {
			return err
		}
	}
	if rl := p.Config.RateLimit; rl != nil && (rl.Count < 0 || rl.Duration < 0) {
		return errf(http.StatusBadRequest, "config.ratelimit: count and duration must be >= 0")
	}
	if m := p.Config.MetaEvent; m != nil {
		if err := validateURL("config.meta_event.url", m.URL); err != nil {
			return err
		}
		for _, t := range m.EventTypes {
			if t != model.MetaEndpointDisabled && t != model.MetaDeliveryFailed {
				return errf(http.StatusBadRequest, "config.meta_event.event_types: %q is not %q or %q", t, model.MetaEndpointDisabled, model.MetaDeliveryFailed)
			}
		}
	}
	if sig := p.Config.Signature; sig != nil {
		dc := dispatcher.SignatureConfig{Header: sig.Header}
		for _, v := range sig.Versions {
			dc.Versions = append(dc.Versions, dispatcher.SignatureVersion{Hash: v.Hash, Encoding: v.Encoding})
		}
		if err := dc.Validate(); err != nil {
			return errf(http.StatusBadRequest, "config.signature: %v", err)
		}
	}
	if p.Config.DisableEndpointAfter < 0 {
		return errf(http.StatusBadRequest, "config.disable_endpoint_after: must be >= 0")
	}
	return nil
}

type createdProject struct {
	*model.Project
	APIKey apiKeyOut `json:"api_key"`
}

type apiKeyOut struct {
	UID string `json:"uid"`
	Key string `json:"key"`
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request, _ *access) error {
	var in projectInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	p := model.Project{UID: model.NewID(now), Type: model.ProjectOutgoing, CreatedAt: now, UpdatedAt: now}
	if err := in.apply(&p); err != nil {
		return err
	}
	secret, key := NewKey(now, model.RoleProject, p.UID)
	if _, err := s.propose(r, raftstore.CmdPutProject, raftstore.PutProject{Project: p, Key: key, Create: true}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, "Project created successfully (the API key is shown only once)",
		createdProject{Project: &p, APIKey: apiKeyOut{UID: key.UID, Key: secret}})
	return nil
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request, a *access) error {
	var out []*model.Project
	if a.isRoot() {
		out = s.st.Projects()
	} else if p := s.st.Project(a.key.ProjectID); p != nil {
		out = []*model.Project{p}
	}
	if out == nil {
		out = []*model.Project{}
	}
	writeJSON(w, http.StatusOK, "Projects fetched successfully", out)
	return nil
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request, a *access) error {
	writeJSON(w, http.StatusOK, "Project fetched successfully", a.project)
	return nil
}

func (s *Server) updateProject(w http.ResponseWriter, r *http.Request, a *access) error {
	var in projectInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	p := *a.project
	if err := in.apply(&p); err != nil {
		return err
	}
	p.UpdatedAt = s.clock.Now().UTC()
	if _, err := s.propose(r, raftstore.CmdPutProject, raftstore.PutProject{Project: p}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, "Project updated successfully", &p)
	return nil
}

func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request, a *access) error {
	ref := raftstore.DeleteRef{ProjectID: a.project.UID, At: s.clock.Now().UTC()}
	if _, err := s.propose(r, raftstore.CmdDeleteProject, ref, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Project deleted successfully", nil)
	return nil
}

// ---- endpoints ----

type endpointInput struct {
	URL               *string              `json:"url"`
	Name              *string              `json:"name"`
	Description       *string              `json:"description"`
	OwnerID           *string              `json:"owner_id"`
	Secret            *string              `json:"secret"`
	HTTPTimeout       *int                 `json:"http_timeout"`
	RateLimit         *int                 `json:"rate_limit"`
	RateLimitDuration *int                 `json:"rate_limit_duration"`
	SupportEmail      *string              `json:"support_email"`
	Status            *string              `json:"status"`
	Strategy          *model.RetryStrategy `json:"strategy"`
	Headers           map[string]string    `json:"headers"`
	EgressPool        *string              `json:"egress_pool"`
	Region            *string              `json:"region"`
	SignatureScheme   *string              `json:"signature_scheme"`
	AdvancedSigs      *bool                `json:"advanced_signatures"`
	Authentication    *model.EndpointAuth  `json:"authentication"`
	TLS               *model.EndpointTLS   `json:"tls"`
}

const maxHTTPTimeoutSeconds = 300

func (in *endpointInput) apply(e *model.Endpoint, create bool) error {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	set(&e.URL, in.URL)
	set(&e.Name, in.Name)
	set(&e.Description, in.Description)
	set(&e.OwnerID, in.OwnerID)
	set(&e.SupportEmail, in.SupportEmail)
	set(&e.EgressPool, in.EgressPool)
	set(&e.Region, in.Region)
	if in.HTTPTimeout != nil {
		e.HTTPTimeout = *in.HTTPTimeout
	}
	if in.RateLimit != nil {
		e.RateLimit = *in.RateLimit
	}
	if in.RateLimitDuration != nil {
		e.RateLimitDuration = *in.RateLimitDuration
	}
	if in.Strategy != nil {
		e.Strategy = in.Strategy
	}
	if in.Headers != nil {
		e.Headers = in.Headers
	}
	if in.Status != nil {
		if !create {
			return errf(http.StatusBadRequest, "status: change it with the pause and activate actions")
		}
		e.Status = *in.Status
	}
	if err := validateURL("url", e.URL); err != nil {
		return err
	}
	if e.Name == "" {
		e.Name = e.URL
	}
	if e.HTTPTimeout < 0 || e.HTTPTimeout > maxHTTPTimeoutSeconds {
		return errf(http.StatusBadRequest, "http_timeout: must be between 0 (default 30) and %d seconds", maxHTTPTimeoutSeconds)
	}
	if e.RateLimit < 0 || e.RateLimitDuration < 0 {
		return errf(http.StatusBadRequest, "rate_limit and rate_limit_duration: must be >= 0")
	}
	if e.RateLimit > 0 && e.RateLimitDuration == 0 {
		e.RateLimitDuration = 1
	}
	if e.Status != model.EndpointActive && e.Status != model.EndpointPaused {
		return errf(http.StatusBadRequest, "status: must be %q or %q", model.EndpointActive, model.EndpointPaused)
	}
	if e.Strategy != nil {
		if err := validateStrategy("strategy", e.Strategy); err != nil {
			return err
		}
	}
	for k, v := range e.Headers {
		if err := validateHeader("headers", k, v); err != nil {
			return err
		}
	}
	if in.SignatureScheme != nil {
		e.SignatureScheme = strings.TrimSpace(*in.SignatureScheme)
	}
	if in.AdvancedSigs != nil {
		e.AdvancedSignatures = *in.AdvancedSigs
	}
	if err := dispatcher.ValidateScheme(e.SignatureScheme); err != nil {
		return errf(http.StatusBadRequest, "signature_scheme: %v", err)
	}
	if in.Authentication != nil {
		if in.Authentication.Type == "" {
			e.Authentication = nil // {"type": ""} removes it
		} else {
			e.Authentication = in.Authentication
		}
	}
	if e.Authentication != nil {
		if err := dispatcherAuth(e.Authentication).Validate(); err != nil {
			return errf(http.StatusBadRequest, "authentication: %v", err)
		}
	}
	if in.TLS != nil {
		if in.TLS.ClientCert == "" && in.TLS.ClientKey == "" && in.TLS.CACert == "" {
			e.TLS = nil
		} else {
			e.TLS = in.TLS
		}
	}
	if e.TLS != nil {
		if err := (&dispatcher.ClientTLS{CertPEM: e.TLS.ClientCert, KeyPEM: e.TLS.ClientKey, CAPEM: e.TLS.CACert}).Validate(); err != nil {
			return errf(http.StatusBadRequest, "tls: %v", err)
		}
	}
	scheme := effectiveScheme(e)
	if in.Secret != nil {
		sec := strings.TrimSpace(*in.Secret)
		if sec == "" {
			return errf(http.StatusBadRequest, "secret: must not be empty (omit it to have one generated)")
		}
		if len(e.Secrets) > 0 {
			return errf(http.StatusBadRequest, "secret: cannot be changed by an update; rotate it with expire_secret")
		}
		sc, err := newSecretFor(scheme, sec, e.UpdatedAt)
		if err != nil {
			return err
		}
		e.Secrets = []model.Secret{sc}
	}
	if len(e.Secrets) > 0 && !secretsFit(scheme, e.Secrets) {
		// The scheme changed to one whose key format the old secrets do not have (e.g. to
		// standard, which needs whsec_): they cannot sign any more, so a fresh one replaces them.
		e.Secrets = nil
	}
	if len(e.Secrets) == 0 {
		sc, err := newSecretFor(scheme, "", e.UpdatedAt)
		if err != nil {
			return err
		}
		e.Secrets = []model.Secret{sc}
	}
	return nil
}

// effectiveScheme is the endpoint's signature scheme, honouring Convoy's advanced_signatures flag.
func effectiveScheme(e *model.Endpoint) string {
	if e.SignatureScheme == "" && e.AdvancedSignatures {
		return dispatcher.SchemeAdvanced
	}
	if e.SignatureScheme == "" {
		return dispatcher.SchemeSimple
	}
	return e.SignatureScheme
}

func dispatcherAuth(a *model.EndpointAuth) *dispatcher.Auth {
	out := &dispatcher.Auth{Type: a.Type}
	if a.APIKey != nil {
		out.HeaderName, out.HeaderValue = a.APIKey.HeaderName, a.APIKey.HeaderValue
	}
	if a.BasicAuth != nil {
		out.Username, out.Password = a.BasicAuth.Username, a.BasicAuth.Password
	}
	return out
}

// newSecretFor validates value (or generates one when empty) in the key format scheme needs.
func newSecretFor(scheme, value string, now time.Time) (model.Secret, error) {
	sc := model.Secret{UID: model.NewID(now), CreatedAt: now}
	var err error
	switch {
	case value != "":
		sc.Value = value
	case scheme == dispatcher.SchemeStandard:
		sc.Value, err = dispatcher.GenerateStandardSecret()
	case scheme == dispatcher.SchemeStandardEd25519:
		sc.Value, sc.PublicKey, err = dispatcher.GenerateEd25519Key()
	default:
		sc.Value = newSecret()
	}
	if err != nil {
		return sc, err
	}
	if err := dispatcher.ValidateSecret(scheme, sc.Value); err != nil {
		return sc, errf(http.StatusBadRequest, "secret: %v", err)
	}
	if scheme == dispatcher.SchemeStandardEd25519 && sc.PublicKey == "" {
		if sc.PublicKey, err = dispatcher.Ed25519PublicKey(sc.Value); err != nil {
			return sc, errf(http.StatusBadRequest, "secret: %v", err)
		}
	}
	return sc, nil
}

func secretsFit(scheme string, ss []model.Secret) bool {
	for _, sc := range ss {
		if dispatcher.ValidateSecret(scheme, sc.Value) != nil {
			return false
		}
	}
	return true
}

// publicEndpoint is what the API shows of an endpoint: credentials it was given (mTLS key, basic
// auth password, API-key value, ed25519 private keys) are never returned after creation.
func publicEndpoint(e *model.Endpoint) *model.Endpoint {
	out := *e
	if e.TLS != nil {
		t := *e.TLS
		if t.ClientKey != "" {
			t.ClientKey = dispatcher.Redacted
		}
		out.TLS = &t
	}
	if a := e.Authentication; a != nil {
		c := *a
		if a.APIKey != nil {
			k := *a.APIKey
			k.HeaderValue = dispatcher.Redacted
			c.APIKey = &k
		}
		if a.BasicAuth != nil {
			b := *a.BasicAuth
			b.Password = dispatcher.Redacted
			c.BasicAuth = &b
		}
		out.Authentication = &c
	}
	out.Secrets = make([]model.Secret, len(e.Secrets))
	for i, sc := range e.Secrets {
		if sc.PublicKey != "" {
			sc.Value = ""
		}
		out.Secrets[i] = sc
	}
	return &out
}

// expireSecret rotates an endpoint's secret: a new one (given or generated) is added and the live
// ones expire after `expiration` hours, so receivers see signatures with both until then.
func (s *Server) expireSecret(w http.ResponseWriter, r *http.Request, a *access) error {
	cur, err := s.endpoint(r, a)
	if err != nil {
		return err
	}
	var in struct {
		Secret     string `json:"secret"`
		Expiration *int   `json:"expiration"`
	}
	if r.ContentLength != 0 {
		if err := s.decodeBody(w, r, &in); err != nil {
			return err
		}
	}
	hours := 0
	if in.Expiration != nil {
		hours = *in.Expiration
	}
	if hours < 0 || hours > 24*30 {
		return errf(http.StatusBadRequest, "expiration: hours must be between 0 and 720")
	}
	now := s.clock.Now().UTC()
	e := *cur
	e.UpdatedAt = now
	sc, err := newSecretFor(effectiveScheme(&e), strings.TrimSpace(in.Secret), now)
	if err != nil {
		return err
	}
	until := now.Add(time.Duration(hours) * time.Hour)
	var keep []model.Secret
	for _, old := range e.Secrets {
		if old.ExpiresAt != nil && !old.ExpiresAt.After(now) {
			continue // already expired: drop it
		}
		if old.ExpiresAt == nil || old.ExpiresAt.After(until) {
			old.ExpiresAt = &until
		}
		keep = append(keep, old)
	}
	e.Secrets = append(keep, sc)
	if _, err := s.propose(r, raftstore.CmdPutEndpoint, raftstore.PutEndpoint{Endpoint: e}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, "Endpoint secret rotated", publicEndpoint(&e))
	return nil
}

func newSecret() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validateURL(field, raw string) error {
	if raw == "" {
		return errf(http.StatusBadRequest, "%s: required", field)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return errf(http.StatusBadRequest, "%s: %q is not an absolute http(s) URL", field, raw)
	}
	if u.User != nil {
		return errf(http.StatusBadRequest, "%s: credentials in the URL are not allowed; use endpoint authentication", field)
	}
	return nil
}

func validateStrategy(field string, st *model.RetryStrategy) error {
	switch st.Type {
	case "exponential", "linear", "default", "":
	default:
		return errf(http.StatusBadRequest, "%s.type: must be \"exponential\", \"linear\" or \"default\", not %q", field, st.Type)
	}
	if st.Duration < 0 || st.Duration > 86400 {
		return errf(http.StatusBadRequest, "%s.duration: must be between 0 and 86400 seconds", field)
	}
	if st.RetryCount < 0 || st.RetryCount > 100 {
		return errf(http.StatusBadRequest, "%s.retry_count: must be between 0 and 100", field)
	}
	return nil
}

// validateHeader refuses names that are not HTTP tokens and values that could split a request.
func validateHeader(field, name, value string) error {
	if name == "" || len(name) > 256 {
		return errf(http.StatusBadRequest, "%s: header name %q is empty or too long", field, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errf(http.StatusBadRequest, "%s: header name %q has invalid character %q", field, name, c)
		}
	}
	if len(value) > 8192 || strings.ContainsAny(value, "\r\n\x00") || !utf8.ValidString(value) {
		return errf(http.StatusBadRequest, "%s: header %q has an invalid value", field, name)
	}
	return nil
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request, a *access) error {
	var in endpointInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	if err := a.scopeEndpointInput(&in); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	e := model.Endpoint{UID: model.NewID(now), ProjectID: a.project.UID, Status: model.EndpointActive, CreatedAt: now, UpdatedAt: now}
	if err := in.apply(&e, true); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutEndpoint, raftstore.PutEndpoint{Endpoint: e, Create: true}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, "Endpoint created successfully", publicEndpoint(&e))
	return nil
}

func (s *Server) endpoint(r *http.Request, a *access) (*model.Endpoint, error) {
	eid, err := pathID(r, "endpointID")
	if err != nil {
		return nil, err
	}
	e := s.st.Endpoint(a.project.UID, eid)
	if e == nil || !a.owns(e) {
		return nil, errf(http.StatusNotFound, "endpoint %s not found", eid)
	}
	return e, nil
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request, a *access) error {
	page, err := s.pageEndpoints(a, r.URL.Query())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Endpoints fetched successfully", page)
	return nil
}

// endpointOut is an endpoint with its delivery health (success rate, last error).
type endpointOut struct {
	*model.Endpoint
	Health model.EndpointHealth `json:"health"`
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request, a *access) error {
	e, err := s.endpoint(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Endpoint fetched successfully", endpointOut{Endpoint: publicEndpoint(e), Health: s.st.EndpointHealth(e.ProjectID, e.UID)})
	return nil
}

func (s *Server) listMetaEvents(w http.ResponseWriter, r *http.Request, a *access) error {
	page, err := parsePage(r.URL.Query().Get("perPage"), "")
	if err != nil {
		return err
	}
	ms, err := s.st.MetaEvents(a.project.UID, page.Limit, false)
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []*model.MetaEvent{}
	}
	writeJSON(w, http.StatusOK, "Meta events fetched successfully", pageData{Content: ms, Pagination: pagination{PerPage: page.Limit}})
	return nil
}

func (s *Server) getMetaEvent(w http.ResponseWriter, r *http.Request, a *access) error {
	m, err := s.st.MetaEvent(a.project.UID, r.PathValue("metaEventID"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Meta event fetched successfully", m)
	return nil
}

func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request, a *access) error {
	cur, err := s.endpoint(r, a)
	if err != nil {
		return err
	}
	var in endpointInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	if err := a.scopeEndpointInput(&in); err != nil {
		return err
	}
	e := *cur
	e.UpdatedAt = s.clock.Now().UTC()
	if err := in.apply(&e, false); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutEndpoint, raftstore.PutEndpoint{Endpoint: e}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, "Endpoint updated successfully", publicEndpoint(&e))
	return nil
}

func (s *Server) setEndpointStatus(w http.ResponseWriter, r *http.Request, a *access, status string) error {
	cur, err := s.endpoint(r, a)
	if err != nil {
		return err
	}
	e := *cur
	e.Status, e.UpdatedAt = status, s.clock.Now().UTC()
	if cur.Status != status {
		if _, err := s.propose(r, raftstore.CmdPutEndpoint, raftstore.PutEndpoint{Endpoint: e}, nil); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusAccepted, "Endpoint status updated successfully", publicEndpoint(&e))
	return nil
}

func (s *Server) pauseEndpoint(w http.ResponseWriter, r *http.Request, a *access) error {
	return s.setEndpointStatus(w, r, a, model.EndpointPaused)
}

func (s *Server) activateEndpoint(w http.ResponseWriter, r *http.Request, a *access) error {
	return s.setEndpointStatus(w, r, a, model.EndpointActive)
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request, a *access) error {
	e, err := s.endpoint(r, a)
	if err != nil {
		return err
	}
	ref := raftstore.DeleteRef{ProjectID: a.project.UID, ID: e.UID, At: s.clock.Now().UTC()}
	if _, err := s.propose(r, raftstore.CmdDeleteEndpoint, ref, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Endpoint deleted successfully", nil)
	return nil
}

// ---- subscriptions ----

type subscriptionInput struct {
	Name         *string             `json:"name"`
	Type         *string             `json:"type"`
	EndpointID   *string             `json:"endpoint_id"`
	SourceID     *string             `json:"source_id"`
	FilterConfig *model.FilterConfig `json:"filter_config"`
}

func (s *Server) applySubscription(in *subscriptionInput, sub *model.Subscription) error {
	if in.Name != nil {
		sub.Name = strings.TrimSpace(*in.Name)
	}
	if in.Type != nil && *in.Type != "api" {
		return errf(http.StatusBadRequest, "type: only \"api\" subscriptions exist in outgoing projects")
	}
	if in.EndpointID != nil {
		eid, err := model.ParseID(*in.EndpointID)
		if err != nil || s.st.Endpoint(sub.ProjectID, eid) == nil {
			return errf(http.StatusBadRequest, "endpoint_id: endpoint %q not found", *in.EndpointID)
		}
		sub.EndpointID = eid
	}
	if in.FilterConfig != nil {
		sub.FilterConfig = *in.FilterConfig
	}
	if sub.EndpointID == "" {
		return errf(http.StatusBadRequest, "endpoint_id: required")
	}
	if len(sub.FilterConfig.EventTypes) == 0 {
		sub.FilterConfig.EventTypes = []string{"*"}
	}
	for _, t := range sub.FilterConfig.EventTypes {
		if err := validateEventType("filter_config.event_types", t); err != nil {
			return err
		}
	}
	if sub.Name == "" {
		sub.Name = sub.EndpointID
	}
	return s.applySubscriptionRouting(in, sub)
}

func validateEventType(field, t string) error {
	if t == "" || len(t) > 255 || strings.ContainsAny(t, "\r\n\x00") || !utf8.ValidString(t) {
		return errf(http.StatusBadRequest, "%s: %q must be 1-255 printable characters", field, t)
	}
	return nil
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, a *access) error {
	var in subscriptionInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	sub := model.Subscription{UID: model.NewID(now), ProjectID: a.project.UID, Type: "api", CreatedAt: now, UpdatedAt: now}
	if err := s.applySubscription(&in, &sub); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutSubscription, raftstore.PutSubscription{Subscription: sub, Create: true}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, "Subscription created successfully", &sub)
	return nil
}

func (s *Server) subscription(r *http.Request, a *access) (*model.Subscription, error) {
	sid, err := pathID(r, "subscriptionID")
	if err != nil {
		return nil, err
	}
	sub := s.st.Subscription(a.project.UID, sid)
	if sub == nil {
		return nil, errf(http.StatusNotFound, "subscription %s not found", sid)
	}
	return sub, nil
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, a *access) error {
	out := []*model.Subscription{}
	eid := r.URL.Query().Get("endpointId")
	for _, sub := range s.st.Subscriptions(a.project.UID) {
		if eid == "" || sub.EndpointID == eid {
			out = append(out, sub)
		}
	}
	writeJSON(w, http.StatusOK, "Subscriptions fetched successfully", pageData{Content: out, Pagination: pagination{PerPage: len(out)}})
	return nil
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, a *access) error {
	sub, err := s.subscription(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Subscription fetched successfully", sub)
	return nil
}

func (s *Server) updateSubscription(w http.ResponseWriter, r *http.Request, a *access) error {
	cur, err := s.subscription(r, a)
	if err != nil {
		return err
	}
	var in subscriptionInput
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	sub := *cur
	sub.UpdatedAt = s.clock.Now().UTC()
	if err := s.applySubscription(&in, &sub); err != nil {
		return err
	}
	if _, err := s.propose(r, raftstore.CmdPutSubscription, raftstore.PutSubscription{Subscription: sub}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, "Subscription updated successfully", &sub)
	return nil
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request, a *access) error {
	sub, err := s.subscription(r, a)
	if err != nil {
		return err
	}
	ref := raftstore.DeleteRef{ProjectID: a.project.UID, ID: sub.UID, At: s.clock.Now().UTC()}
	if _, err := s.propose(r, raftstore.CmdDeleteSubscription, ref, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Subscription deleted successfully", nil)
	return nil
}
