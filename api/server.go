package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// Config configures the API. Zero values take the defaults.
type Config struct {
	// MaxPayloadBytes caps request bodies (413 above it). Default 1 MiB.
	MaxPayloadBytes int64
	// WriteTimeout bounds how long a write waits to commit. Default 10 s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
	Clock        clock.Clock
	// OnPublish, when set, is called after each new event published over HTTP (for metrics).
	OnPublish func(projectID string)
	// Series, when set, is this node's per-minute delivery series, shown by GET …/stats/deliveries.
	Series *DeliverySeries
	// Brokers validates broker sources (kafka, nats, ...) when they are saved; nil: this node
	// accepts none.
	Brokers BrokerChecker
}

// BrokerChecker validates a broker source's settings (broker.Registry).
type BrokerChecker interface {
	Check(src *model.Source) error
}

// Server serves the REST API from a replicated store.
type Server struct {
	cfg   Config
	st    *raftstore.Store
	log   *slog.Logger
	clock clock.Clock
	mux   *http.ServeMux
	inc   incomingState // sources, compiled filters, ingest counters (filters.go)
}

// New builds the API server.
func New(st *raftstore.Store, cfg Config) *Server {
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = 1 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	s := &Server{cfg: cfg, st: st, log: cfg.Logger, clock: cfg.Clock, mux: http.NewServeMux()}
	s.routes()
	return s
}

// Handler is the API's root handler.
func (s *Server) Handler() http.Handler { return s.recoverer(s.mux) }

// Mux lets the binary add routes (metrics, health, UI) beside the API.
func (s *Server) Mux() *http.ServeMux { return s.mux }

type handler func(w http.ResponseWriter, r *http.Request, a *access) error

func (s *Server) routes() {
	const p = "/api/v1/projects/{projectID}"
	root := func(h handler) http.HandlerFunc { return s.wrap(h, false, true) }
	proj := func(h handler) http.HandlerFunc { return s.wrap(h, true, false) }
	any := func(h handler) http.HandlerFunc { return s.wrap(h, false, false) }

	s.mux.HandleFunc("POST /api/v1/projects", root(s.createProject))
	s.mux.HandleFunc("GET /api/v1/projects", any(s.listProjects))
	s.mux.HandleFunc("GET "+p, proj(s.getProject))
	s.mux.HandleFunc("PUT "+p, proj(s.updateProject))
	s.mux.HandleFunc("DELETE "+p, root(s.deleteProject))

	s.mux.HandleFunc("POST "+p+"/endpoints", proj(s.createEndpoint))
	s.mux.HandleFunc("GET "+p+"/endpoints", proj(s.listEndpoints))
	s.mux.HandleFunc("GET "+p+"/endpoints/{endpointID}", proj(s.getEndpoint))
	s.mux.HandleFunc("PUT "+p+"/endpoints/{endpointID}", proj(s.updateEndpoint))
	s.mux.HandleFunc("DELETE "+p+"/endpoints/{endpointID}", proj(s.deleteEndpoint))
	s.mux.HandleFunc("PUT "+p+"/endpoints/{endpointID}/pause", proj(s.pauseEndpoint))
	s.mux.HandleFunc("POST "+p+"/endpoints/{endpointID}/activate", proj(s.activateEndpoint))
	s.mux.HandleFunc("PUT "+p+"/endpoints/{endpointID}/expire_secret", proj(s.expireSecret))

	s.mux.HandleFunc("POST "+p+"/subscriptions", proj(s.createSubscription))
	s.mux.HandleFunc("GET "+p+"/subscriptions", proj(s.listSubscriptions))
	s.mux.HandleFunc("GET "+p+"/subscriptions/{subscriptionID}", proj(s.getSubscription))
	s.mux.HandleFunc("PUT "+p+"/subscriptions/{subscriptionID}", proj(s.updateSubscription))
	s.mux.HandleFunc("DELETE "+p+"/subscriptions/{subscriptionID}", proj(s.deleteSubscription))
	s.mux.HandleFunc("POST "+p+"/subscriptions/test_filter", proj(s.testFilter))

	s.mux.HandleFunc("POST "+p+"/sources", proj(s.createSource))
	s.mux.HandleFunc("GET "+p+"/sources", proj(s.listSources))
	s.mux.HandleFunc("GET "+p+"/sources/{sourceID}", proj(s.getSource))
	s.mux.HandleFunc("PUT "+p+"/sources/{sourceID}", proj(s.updateSource))
	s.mux.HandleFunc("DELETE "+p+"/sources/{sourceID}", proj(s.deleteSource))
	s.mux.HandleFunc("GET "+p+"/sources/{sourceID}/dead_letters", proj(s.listDeadLetters))
	s.mux.HandleFunc("DELETE "+p+"/sources/{sourceID}/dead_letters", proj(s.dropDeadLetters))

	s.mux.HandleFunc("POST "+p+"/events", proj(s.publishHandler(modeEndpoint)))
	s.mux.HandleFunc("POST "+p+"/events/fanout", proj(s.publishHandler(modeFanout)))
	s.mux.HandleFunc("POST "+p+"/events/broadcast", proj(s.publishHandler(modeBroadcast)))
	s.mux.HandleFunc("GET "+p+"/events", proj(s.listEvents))
	s.mux.HandleFunc("GET "+p+"/events/{eventID}", proj(s.getEvent))
	s.mux.HandleFunc("PUT "+p+"/events/{eventID}/replay", proj(s.replayEvent))

	s.mux.HandleFunc("GET "+p+"/eventdeliveries", proj(s.listDeliveries))
	s.mux.HandleFunc("POST "+p+"/eventdeliveries/batchretry", proj(s.batchRetry))
	s.mux.HandleFunc("GET "+p+"/eventdeliveries/{deliveryID}", proj(s.getDelivery))
	s.mux.HandleFunc("PUT "+p+"/eventdeliveries/{deliveryID}/resend", proj(s.resendDelivery))
	s.mux.HandleFunc("GET "+p+"/eventdeliveries/{deliveryID}/deliveryattempts", proj(s.listAttempts))
	s.mux.HandleFunc("GET "+p+"/eventdeliveries/{deliveryID}/deliveryattempts/{attemptID}", proj(s.getAttempt))

	s.mux.HandleFunc("GET "+p+"/meta-events", proj(s.listMetaEvents))
	s.mux.HandleFunc("GET "+p+"/meta-events/{metaEventID}", proj(s.getMetaEvent))

	s.portalLinkRoutes(p)

	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), nil)
	})
}

// access is who is calling and, for project routes, the project they may act on.
type access struct {
	key     *model.APIKey
	project *model.Project
	// portal is set for a portal token: only this owner's endpoints and deliveries (see portal.go).
	portal *model.PortalLink
}

func (a *access) isRoot() bool { return a.key.Role == model.RoleRoot }

// wrap authenticates the request and, for project routes, resolves and authorises the project.
func (s *Server) wrap(h handler, projectRoute, rootOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.authenticate(r)
		if err == nil {
			err = a.allowRoute(r)
		}
		if err == nil && rootOnly && !a.isRoot() {
			err = errf(http.StatusForbidden, "this operation needs the root key")
		}
		if err == nil && projectRoute {
			err = s.resolveProject(r, a)
		}
		if err == nil {
			err = h(w, r, a)
		}
		if err != nil {
			s.writeErr(w, r, err)
		}
	}
}

func (s *Server) authenticate(r *http.Request) (*access, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return nil, errf(http.StatusUnauthorized, "missing API key: send Authorization: Bearer <key>")
	}
	k := s.st.APIKey(sha256.Sum256([]byte(strings.TrimSpace(tok))))
	if k == nil {
		return s.authenticatePortal(strings.TrimSpace(tok))
	}
	return &access{key: k}, nil
}

func (s *Server) resolveProject(r *http.Request, a *access) error {
	pid, err := pathID(r, "projectID")
	if err != nil {
		return err
	}
	if !a.isRoot() && a.key.ProjectID != pid {
		return errf(http.StatusForbidden, "this key is not authorised for project %s", pid)
	}
	p := s.st.Project(pid)
	if p == nil {
		return errf(http.StatusNotFound, "project %s not found", pid)
	}
	a.project = p
	return nil
}

// pathID reads a path parameter that must be an ID; a malformed one is a 404 (no such resource).
func pathID(r *http.Request, name string) (string, error) {
	raw := r.PathValue(name)
	id, err := model.ParseID(raw)
	if err != nil {
		return "", errf(http.StatusNotFound, "%s %q not found", strings.TrimSuffix(name, "ID"), raw)
	}
	return id, nil
}

// propose commits a command within the write timeout.
func (s *Server) propose(r *http.Request, typ raftstore.CmdType, body any, blob []byte) (raftstore.Result, error) {
	cmd, err := raftstore.NewCommand(typ, body, blob)
	if err != nil {
		return raftstore.Result{}, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.st.Propose(ctx, cmd)
	if err != nil {
		return res, err
	}
	return res, res.Err
}

// NewKey returns a new API key (256 random bits behind a readable prefix) and its stored form.
func NewKey(now time.Time, role, projectID string) (string, *model.APIKey) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	secret := "sk_" + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	return secret, &model.APIKey{UID: model.NewID(now), Hash: h[:], Role: role, ProjectID: projectID, CreatedAt: now}
}

// EnsureRootKey makes the stored root key match configured (when set), or creates one when none
// exists. It returns a newly generated key so the caller can print it once; "" otherwise. Call it
// on the leader.
func EnsureRootKey(ctx context.Context, st *raftstore.Store, configured string, now time.Time) (string, error) {
	var secret string
	var k *model.APIKey
	switch {
	case configured != "":
		if cur := st.APIKey(sha256.Sum256([]byte(configured))); cur != nil && cur.Role == model.RoleRoot {
			return "", nil
		}
		h := sha256.Sum256([]byte(configured))
		k = &model.APIKey{UID: model.NewID(now), Hash: h[:], Role: model.RoleRoot, CreatedAt: now}
	case st.HasRootKey():
		return "", nil
	default:
		secret, k = NewKey(now, model.RoleRoot, "")
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdPutAPIKey, k, nil)
	if err != nil {
		return "", err
	}
	res, err := st.Propose(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return "", fmt.Errorf("api: store root key: %w", err)
	}
	return secret, nil
}

// ClientError reports whether err is the caller's fault (a 4xx) and its message, so other protocols
// can answer with the same words as the HTTP API.
func ClientError(err error) (code int, msg string, ok bool) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.code, ae.msg, ae.code < 500
	case errors.Is(err, raftstore.ErrNotFound):
		return http.StatusNotFound, trimPrefix(err), true
	}
	return 0, "", false
}

// Authenticate returns the key record for a presented API key, or nil.
func (s *Server) Authenticate(key string) *model.APIKey {
	return s.st.APIKey(sha256.Sum256([]byte(strings.TrimSpace(key))))
}
