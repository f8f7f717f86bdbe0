package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// Customer portal links and owner scoping.
//
// A portal link's token (pt_…) authenticates as a third role beside the root and project keys: it
// sees one owner's endpoints, events and deliveries inside one project. Enforcement has two layers,
// both here:
//
//   - Routes: wrap refuses a portal token (403) on every route not in portalRoutes. A route added
//     later is closed to portal tokens until someone decides otherwise.
//   - Resources: the routes in portalRoutes reach endpoints and deliveries only through the scoped
//     helpers below (Server.endpoint and Server.delivery answer 404 for another owner's; lists go
//     through queryDeliveries, queryEvents and pageEndpoints, restricted to the owner's endpoints).
//
// api/portal_test.go walks every registered route with owner A's token against owner B's ids.

// portalRoutes are the route patterns a portal token may use (ServeMux patterns, as registered).
var portalRoutes = map[string]bool{}

func init() {
	const p = "/api/v1/projects/{projectID}"
	for _, r := range []string{
		"GET /api/v1/portal",
		"GET " + p + "/endpoints",
		"POST " + p + "/endpoints",
		"GET " + p + "/endpoints/{endpointID}",
		"PUT " + p + "/endpoints/{endpointID}",
		"DELETE " + p + "/endpoints/{endpointID}",
		"PUT " + p + "/endpoints/{endpointID}/pause",
		"POST " + p + "/endpoints/{endpointID}/activate",
		"PUT " + p + "/endpoints/{endpointID}/expire_secret",
		"GET " + p + "/events",
		"GET " + p + "/events/{eventID}",
		"PUT " + p + "/events/{eventID}/replay",
		"GET " + p + "/eventdeliveries",
		"POST " + p + "/eventdeliveries/batchretry",
		"GET " + p + "/eventdeliveries/{deliveryID}",
		"PUT " + p + "/eventdeliveries/{deliveryID}/resend",
		"GET " + p + "/eventdeliveries/{deliveryID}/deliveryattempts",
		"GET " + p + "/eventdeliveries/{deliveryID}/deliveryattempts/{attemptID}",
		"GET " + p + "/stats/deliveries",
	} {
		portalRoutes[r] = true
	}
}

// allowRoute refuses a portal token on routes outside portalRoutes.
func (a *access) allowRoute(r *http.Request) error {
	if a.portal != nil && !portalRoutes[r.Pattern] {
		return errf(http.StatusForbidden, "a portal link cannot use this route: it manages only owner %q's endpoints and deliveries", a.portal.OwnerID)
	}
	return nil
}

// owns reports whether the caller may see and act on endpoint e: a key always, a portal token only
// on its owner's endpoints.
func (a *access) owns(e *model.Endpoint) bool {
	return a.portal == nil || e.OwnerID == a.portal.OwnerID
}

// endpointScope returns the endpoints a listing is restricted to: the portal owner's, or those of
// the owner a key asked for (?ownerId=); scoped is false when the listing covers the whole project.
func (s *Server) endpointScope(a *access, q url.Values) (ids []string, set map[string]bool, scoped bool) {
	owner := q.Get("ownerId")
	if a.portal != nil {
		if owner != "" && owner != a.portal.OwnerID {
			return nil, map[string]bool{}, true
		}
		owner = a.portal.OwnerID
	}
	if owner == "" {
		return nil, nil, false
	}
	set = map[string]bool{}
	for _, e := range s.st.Endpoints(a.project.UID) {
		if e.OwnerID == owner {
			ids = append(ids, e.UID)
			set[e.UID] = true
		}
	}
	return ids, set, true
}

// queryDeliveries lists deliveries as the caller may see them, with the scope (?ownerId=, portal
// owner) and payload search (?q=) applied.
func (s *Server) queryDeliveries(a *access, q url.Values, f raftstore.DeliveryFilter) ([]*model.Delivery, string, error) {
	ids, _, scoped := s.endpointScope(a, q)
	return s.st.QueryDeliveries(a.project.UID, raftstore.DeliveryQuery{
		DeliveryFilter: f, Endpoints: ids, ByEndpoints: scoped, Search: q.Get("q"),
	})
}

// queryEvents lists events as the caller may see them: restricted to events delivered to the
// scope's endpoints (or to ?endpointId=), with payload search (?q=). For a portal token, each
// event's matched endpoints are cut to the owner's.
func (s *Server) queryEvents(a *access, q url.Values, f raftstore.EventFilter) ([]*model.Event, string, error) {
	ids, set, scoped := s.endpointScope(a, q)
	if eid := q.Get("endpointId"); eid != "" {
		e := s.st.Endpoint(a.project.UID, eid)
		if e == nil || !a.owns(e) || scoped && !set[eid] {
			return nil, "", nil
		}
		ids, set, scoped = []string{eid}, map[string]bool{eid: true}, true
	}
	evs, next, err := s.st.QueryEvents(a.project.UID, raftstore.EventQuery{
		EventFilter: f, Endpoints: ids, ByEndpoints: scoped, Search: q.Get("q"),
	})
	if a.portal != nil {
		for i, ev := range evs {
			evs[i] = redactEvent(ev, set)
		}
	}
	return evs, next, err
}

// redactEvent cuts an event's matched endpoints to those in own (another owner's endpoint ids are
// not the portal user's business).
func redactEvent(ev *model.Event, own map[string]bool) *model.Event {
	out := *ev
	out.Endpoints = []string{}
	for _, e := range ev.Endpoints {
		if own[e] {
			out.Endpoints = append(out.Endpoints, e)
		}
	}
	if out.EndpointID != "" && !own[out.EndpointID] {
		out.EndpointID = ""
	}
	return &out
}

// maxVisibilityScan bounds how many of an event's deliveries are read to decide whether a portal
// owner may see it.
const maxVisibilityScan = 10000

// event returns the path's event if the caller may see it: for a portal token, only events
// delivered to the owner's endpoints (others are 404), with other owners' endpoints cut out.
func (s *Server) event(r *http.Request, a *access) (*model.Event, error) {
	evid, err := pathID(r, "eventID")
	if err != nil {
		return nil, err
	}
	ev, err := s.st.Event(a.project.UID, evid)
	if err != nil || a.portal == nil {
		return ev, err
	}
	_, own, _ := s.endpointScope(a, nil)
	ok, err := s.st.EventDeliveredTo(a.project.UID, evid, own, maxVisibilityScan)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errf(http.StatusNotFound, "event %s not found", evid)
	}
	return redactEvent(ev, own), nil
}

// ownTargets keeps the targets a caller may create deliveries for (a portal owner's endpoints).
func (a *access) ownTargets(s *Server, ts []raftstore.Target) []raftstore.Target {
	if a.portal == nil {
		return ts
	}
	out := ts[:0:0]
	for _, t := range ts {
		if e := s.st.Endpoint(a.project.UID, t.EndpointID); e != nil && a.owns(e) {
			out = append(out, t)
		}
	}
	return out
}

// scopeEndpointInput pins a portal user's endpoint writes to their owner id.
func (a *access) scopeEndpointInput(in *endpointInput) error {
	if a.portal == nil {
		return nil
	}
	owner := a.portal.OwnerID
	if in.OwnerID != nil && strings.TrimSpace(*in.OwnerID) != owner {
		return errf(http.StatusForbidden, "owner_id: a portal link manages only owner %q's endpoints", owner)
	}
	in.OwnerID = &owner
	return nil
}

// endpointRow is an endpoint in a listing, with its delivery health.
type endpointRow struct {
	*model.Endpoint
	Health model.EndpointHealth `json:"health"`
}

// pageEndpoints lists the endpoints the caller may see, newest first, a page at a time (perPage,
// next_page_cursor), filtered by ?ownerId= and ?q= (name or URL), each with its health.
func (s *Server) pageEndpoints(a *access, q url.Values) (pageData, error) {
	page, err := parsePage(q.Get("perPage"), q.Get("next_page_cursor"))
	if err != nil {
		return pageData{}, err
	}
	if q.Get("perPage") == "" {
		page.Limit = 100
	}
	owner, search := q.Get("ownerId"), strings.ToLower(q.Get("q"))
	all := s.st.Endpoints(a.project.UID) // ordered by id, oldest first
	out := []endpointRow{}
	next := ""
	for i := len(all) - 1; i >= 0; i-- {
		e := all[i]
		if page.Cursor != "" && e.UID >= page.Cursor {
			continue
		}
		if !a.owns(e) || owner != "" && e.OwnerID != owner {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(e.Name), search) && !strings.Contains(strings.ToLower(e.URL), search) {
			continue
		}
		if len(out) == page.Limit {
			next = out[len(out)-1].UID
			break
		}
		out = append(out, endpointRow{Endpoint: publicEndpoint(e), Health: s.st.EndpointHealth(e.ProjectID, e.UID)})
	}
	return pageData{Content: out, Pagination: pagination{PerPage: page.Limit, HasNextPage: next != "", NextPageCursor: next}}, nil
}

// ---- portal links (project keys and root) ----

const (
	defaultPortalTTL = 30 * 24 * time.Hour
	maxPortalTTL     = 366 * 24 * time.Hour
	portalPrefix     = "pt_"
)

// portalLinkOut is a link as the API shows it: never its hash; its token only at creation.
type portalLinkOut struct {
	UID       string     `json:"uid"`
	ProjectID string     `json:"project_id"`
	OwnerID   string     `json:"owner_id"`
	Name      string     `json:"name,omitempty"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	Active    bool       `json:"active"`
	Token     string     `json:"token,omitempty"`
	URL       string     `json:"url,omitempty"`
}

func (s *Server) linkOut(l *model.PortalLink) portalLinkOut {
	return portalLinkOut{UID: l.UID, ProjectID: l.ProjectID, OwnerID: l.OwnerID, Name: l.Name,
		ExpiresAt: l.ExpiresAt, RevokedAt: l.RevokedAt, CreatedAt: l.CreatedAt, Active: l.Usable(s.clock.Now())}
}

func (s *Server) portalLinkRoutes(p string) {
	proj := func(h handler) http.HandlerFunc { return s.wrap(h, true, false) }
	any := func(h handler) http.HandlerFunc { return s.wrap(h, false, false) }
	s.mux.HandleFunc("POST "+p+"/portal-links", proj(s.createPortalLink))
	s.mux.HandleFunc("GET "+p+"/portal-links", proj(s.listPortalLinks))
	s.mux.HandleFunc("GET "+p+"/portal-links/{linkID}", proj(s.getPortalLink))
	s.mux.HandleFunc("PUT "+p+"/portal-links/{linkID}/revoke", proj(s.revokePortalLink))
	s.mux.HandleFunc("GET /api/v1/portal", any(s.portalSession))
	s.mux.HandleFunc("GET "+p+"/stats/deliveries", proj(s.deliveryStats))
}

func (s *Server) createPortalLink(w http.ResponseWriter, r *http.Request, a *access) error {
	var in struct {
		OwnerID   string `json:"owner_id"`
		Name      string `json:"name"`
		ExpiresIn *int64 `json:"expires_in"` // seconds
	}
	if err := s.decodeBody(w, r, &in); err != nil {
		return err
	}
	in.OwnerID, in.Name = strings.TrimSpace(in.OwnerID), strings.TrimSpace(in.Name)
	if in.OwnerID == "" || len(in.OwnerID) > 255 {
		return errf(http.StatusBadRequest, "owner_id: required, at most 255 bytes")
	}
	if len(in.Name) > 255 {
		return errf(http.StatusBadRequest, "name: at most 255 bytes")
	}
	ttl := defaultPortalTTL
	if in.ExpiresIn != nil {
		ttl = time.Duration(*in.ExpiresIn) * time.Second
		if *in.ExpiresIn < 60 || ttl > maxPortalTTL {
			return errf(http.StatusBadRequest, "expires_in: seconds from 60 to %d", int64(maxPortalTTL/time.Second))
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	token := portalPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	now := s.clock.Now().UTC()
	l := model.PortalLink{UID: model.NewID(now), ProjectID: a.project.UID, OwnerID: in.OwnerID, Name: in.Name,
		Hash: h[:], ExpiresAt: now.Add(ttl), CreatedAt: now}
	if _, err := s.propose(r, raftstore.CmdPutPortalLink, raftstore.PutPortalLink{Link: l}, nil); err != nil {
		return err
	}
	out := s.linkOut(&l)
	out.Token = token
	out.URL = portalURL(r, token)
	writeJSON(w, http.StatusCreated, "Portal link created (the token is shown only once)", out)
	return nil
}

// portalURL is where the link opens the dashboard. The token travels in the fragment, which browsers
// never send to servers or put in Referer headers.
func portalURL(r *http.Request, token string) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/ui/#portal=" + token
}

func (s *Server) listPortalLinks(w http.ResponseWriter, r *http.Request, a *access) error {
	q := r.URL.Query()
	page, err := parsePage(q.Get("perPage"), q.Get("next_page_cursor"))
	if err != nil {
		return err
	}
	ls, next, err := s.st.PortalLinks(a.project.UID, q.Get("ownerId"), page)
	if err != nil {
		return err
	}
	out := make([]portalLinkOut, len(ls))
	for i, l := range ls {
		out[i] = s.linkOut(l)
	}
	writeJSON(w, http.StatusOK, "Portal links fetched successfully", pageData{Content: out,
		Pagination: pagination{PerPage: page.Limit, HasNextPage: next != "", NextPageCursor: next}})
	return nil
}

func (s *Server) portalLink(r *http.Request, a *access) (*model.PortalLink, error) {
	lid, err := pathID(r, "linkID")
	if err != nil {
		return nil, err
	}
	return s.st.PortalLink(a.project.UID, lid)
}

func (s *Server) getPortalLink(w http.ResponseWriter, r *http.Request, a *access) error {
	l, err := s.portalLink(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Portal link fetched successfully", s.linkOut(l))
	return nil
}

func (s *Server) revokePortalLink(w http.ResponseWriter, r *http.Request, a *access) error {
	l, err := s.portalLink(r, a)
	if err != nil {
		return err
	}
	ref := raftstore.RevokePortalLink{ProjectID: a.project.UID, ID: l.UID, At: s.clock.Now().UTC()}
	if _, err := s.propose(r, raftstore.CmdRevokePortalLink, ref, nil); err != nil {
		return err
	}
	if l, err = s.st.PortalLink(a.project.UID, l.UID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Portal link revoked", s.linkOut(l))
	return nil
}

// portalSession tells a portal token who it is: the project (name and type only) and the owner.
func (s *Server) portalSession(w http.ResponseWriter, r *http.Request, a *access) error {
	if a.portal == nil {
		return errf(http.StatusForbidden, "this route is for portal links; API keys use /api/v1/projects")
	}
	p := s.st.Project(a.portal.ProjectID)
	if p == nil {
		return errf(http.StatusNotFound, "project %s not found", a.portal.ProjectID)
	}
	writeJSON(w, http.StatusOK, "Portal session", map[string]any{
		"link":    s.linkOut(a.portal),
		"project": map[string]string{"uid": p.UID, "name": p.Name, "type": p.Type},
	})
	return nil
}

// authenticatePortal resolves a token that is not an API key as a portal link.
func (s *Server) authenticatePortal(tok string) (*access, error) {
	if !strings.HasPrefix(tok, portalPrefix) {
		return nil, errf(http.StatusUnauthorized, "invalid API key")
	}
	l, err := s.st.PortalLinkByToken(sha256.Sum256([]byte(tok)))
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, errf(http.StatusUnauthorized, "invalid or revoked portal link")
	}
	if !l.Usable(s.clock.Now()) {
		return nil, errf(http.StatusUnauthorized, "this portal link expired at %s; ask for a new one", l.ExpiresAt.Format(time.RFC3339))
	}
	return &access{key: &model.APIKey{Role: model.RolePortal, ProjectID: l.ProjectID}, portal: l}, nil
}
