package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// ProposePath is the internal route followers forward writes to.
const ProposePath = "/internal/v1/propose"

// forwardedHeader marks a request one node already forwarded, so a stale view of the leader cannot
// bounce it around the cluster.
const forwardedHeader = "X-Sluice-Forwarded-By"

// Authenticator resolves an API key (satisfied by *api.Server).
type Authenticator interface {
	Authenticate(key string) *model.APIKey
}

// ServerInfo is one row of `sluice cluster list`.
type ServerInfo struct {
	ID           string    `json:"id"`
	RaftAddr     string    `json:"raft_addr"`
	HTTPAddr     string    `json:"http_addr,omitempty"`
	Region       string    `json:"region,omitempty"`
	Voter        bool      `json:"voter"`
	Leader       bool      `json:"leader"`
	Live         bool      `json:"live"`
	LastContact  time.Time `json:"last_contact,omitzero"`
	AppliedIndex uint64    `json:"applied_index,omitempty"`
	Version      string    `json:"version,omitempty"`
	// Codec is the newest command encoding the node applies (see docs/operations.md, upgrades).
	Codec int `json:"codec"`
}

// Register adds the internal and admin routes to mux. All need the root key.
func (m *Member) Register(mux *http.ServeMux, auth Authenticator) {
	root := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			k := auth.Authenticate(tok)
			if k == nil || k.Role != model.RoleRoot {
				reply(w, http.StatusUnauthorized, "cluster administration needs the root key", nil)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST "+ProposePath, root(m.servePropose))
	mux.HandleFunc("GET /api/v1/cluster", root(m.serveList))
	mux.HandleFunc("POST /api/v1/cluster/servers", root(m.onLeader(m.serveAdd)))
	mux.HandleFunc("DELETE /api/v1/cluster/servers/{id}", root(m.onLeader(m.serveRemove)))
	mux.HandleFunc("POST /api/v1/cluster/transfer-leader", root(m.onLeader(m.serveTransfer)))
	mux.HandleFunc("POST /api/v1/cluster/snapshot", root(m.serveSnapshot))
}

func reply(w http.ResponseWriter, code int, msg string, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"status": code < 400, "message": msg, "data": data})
}

func (m *Member) servePropose(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		reply(w, http.StatusBadRequest, "read forwarded command: "+err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(m.st.ServeForwarded(r.Context(), body))
}

// Servers describes the cluster as this node sees it.
func (m *Member) Servers() ([]ServerInfo, error) {
	srvs, err := m.st.Servers()
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, id := range m.st.LiveNodes() {
		live[id] = true
	}
	out := make([]ServerInfo, 0, len(srvs))
	for _, sv := range srvs {
		si := ServerInfo{ID: sv.ID, RaftAddr: sv.RaftAddr, Voter: sv.Voter, Leader: sv.Leader, Live: live[sv.ID]}
		if n := m.st.Node(sv.ID); n != nil {
			si.HTTPAddr, si.Region, si.LastContact, si.AppliedIndex = n.HTTPAddr, n.Region, n.UpdatedAt, n.AppliedIndex
			si.Version, si.Codec = n.Version, n.Codec
		}
		if sv.ID == m.cfg.Self.ID {
			si.AppliedIndex = m.st.AppliedIndex()
		}
		out = append(out, si)
	}
	return out, nil
}

func (m *Member) serveList(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("consistent") == "true" && !m.st.IsLeader() {
		m.toLeader(w, r)
		return
	}
	srvs, err := m.Servers()
	if err != nil {
		reply(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	reply(w, http.StatusOK, "Cluster fetched successfully", srvs)
}

// AddRequest is the body of POST /api/v1/cluster/servers.
type AddRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Voter    *bool  `json:"voter,omitempty"` // default true
}

func (m *Member) serveAdd(w http.ResponseWriter, r *http.Request) {
	var in AddRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		reply(w, http.StatusBadRequest, "invalid JSON: "+err.Error(), nil)
		return
	}
	if in.ID == "" || in.RaftAddr == "" {
		reply(w, http.StatusBadRequest, "id and raft_addr are required", nil)
		return
	}
	voter := in.Voter == nil || *in.Voter
	if err := m.st.AddServer(in.ID, in.RaftAddr, voter); err != nil {
		m.fail(w, err)
		return
	}
	reply(w, http.StatusOK, fmt.Sprintf("server %s added", in.ID), nil)
}

func (m *Member) serveRemove(w http.ResponseWriter, r *http.Request) {
	if err := m.st.RemoveServer(r.PathValue("id")); err != nil {
		m.fail(w, err)
		return
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdDeleteNode, raftstore.DeleteRef{ID: r.PathValue("id")}, nil)
	if err == nil {
		m.st.Propose(r.Context(), cmd)
	}
	reply(w, http.StatusOK, fmt.Sprintf("server %s removed", r.PathValue("id")), nil)
}

func (m *Member) serveTransfer(w http.ResponseWriter, r *http.Request) {
	var in struct {
		To string `json:"to"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil && !errors.Is(err, io.EOF) {
			reply(w, http.StatusBadRequest, "invalid JSON: "+err.Error(), nil)
			return
		}
	}
	if err := m.st.TransferLeadership(in.To); err != nil {
		m.fail(w, err)
		return
	}
	reply(w, http.StatusOK, "leadership transferred", map[string]string{"leader": m.st.LeaderID()})
}

func (m *Member) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := m.st.Snapshot(); err != nil {
		m.fail(w, err)
		return
	}
	reply(w, http.StatusOK, "snapshot taken", map[string]any{"node": m.cfg.Self.ID, "applied_index": m.st.AppliedIndex()})
}

func (m *Member) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, raftstore.ErrNotFound):
		reply(w, http.StatusNotFound, err.Error(), nil)
	case errors.Is(err, raftstore.ErrNotLeader):
		reply(w, http.StatusServiceUnavailable, "no leader right now; retry", nil)
	default:
		reply(w, http.StatusInternalServerError, err.Error(), nil)
	}
}

// onLeader runs h on the leader: a follower proxies the request there and returns its answer.
func (m *Member) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m.st.IsLeader() {
			h(w, r)
			return
		}
		m.toLeader(w, r)
	}
}

// toLeader proxies r to the leader's HTTP listener.
func (m *Member) toLeader(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(forwardedHeader) != "" {
		reply(w, http.StatusServiceUnavailable, "no leader reachable right now; retry", nil)
		return
	}
	n := m.st.Node(m.st.LeaderID())
	if n == nil || n.HTTPAddr == "" {
		reply(w, http.StatusServiceUnavailable, "no leader known right now; retry", nil)
		return
	}
	target := &url.URL{Scheme: "http", Host: n.HTTPAddr}
	p := httputil.NewSingleHostReverseProxy(target)
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		reply(w, http.StatusBadGateway, fmt.Sprintf("forward to leader %s: %v", n.HTTPAddr, err), nil)
	}
	r.Header.Set(forwardedHeader, m.cfg.Self.ID)
	p.ServeHTTP(w, r)
}

// LeaderWrites wraps the API on every node: on a follower, writes (any method but GET and HEAD) and
// GETs with ?consistent=true are proxied to the leader and its answer returned, so validation sees
// the latest state and the client never has to find the leader itself. Other reads are served
// from the local state.
func (m *Member) LeaderWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if !m.st.IsLeader() && (!read || r.URL.Query().Get("consistent") == "true") {
			m.toLeader(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
