package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// Config configures a Member. Zero values take the defaults.
type Config struct {
	// Self is how this node registers: ID, RaftAddr (advertised), HTTPAddr (reachable by peers),
	// Region, EgressIPs, Version.
	Self model.Node
	// Key is the root API key, used to authenticate node-to-node calls.
	Key string
	// HeartbeatInterval is how often this node heartbeats through the log. Default 1 s.
	HeartbeatInterval time.Duration
	// Lease is how long a node stays live without a heartbeat. Default 5 s.
	Lease  time.Duration
	Clock  clock.Clock
	Logger *slog.Logger
	// Client makes node-to-node HTTP calls. Default: a client with a 30 s timeout.
	Client *http.Client
}

// Member is this node's membership: heartbeats, the leader's live-set monitor, ownership.
type Member struct {
	cfg Config
	st  *raftstore.Store

	// lastOK is when this node's last heartbeat committed (unix nanos); a node whose heartbeats fail
	// past the lease stops dispatching (it may be cut off from the leader).
	lastOK atomic.Int64

	mu        sync.Mutex // guards lastHeard
	lastHeard map[string]time.Time
}

// New returns a member; set its Forwarder on the store's config before opening the store (see
// Forwarder) and call Run once the store is open.
func New(cfg Config) *Member {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Member{cfg: cfg, lastHeard: map[string]time.Time{}}
}

// Self is how this node registers.
func (m *Member) Self() model.Node { return m.cfg.Self }

// Attach gives the member its store (which needs the member as Forwarder before it opens).
func (m *Member) Attach(st *raftstore.Store) { m.st = st }

// Run heartbeats and, while leading, maintains the live set, until ctx ends.
func (m *Member) Run(ctx context.Context) {
	t := m.cfg.Clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		m.heartbeat(ctx)
		if m.st.IsLeader() {
			m.monitor(ctx)
		}
		t.Reset(m.cfg.HeartbeatInterval)
	}
}

func (m *Member) heartbeat(ctx context.Context) {
	self := m.cfg.Self
	self.UpdatedAt = m.cfg.Clock.Now().UTC()
	self.AppliedIndex = m.st.AppliedIndex()
	cmd, err := raftstore.NewCommand(raftstore.CmdPutNode, &self, nil)
	if err != nil {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, m.cfg.Lease)
	defer cancel()
	res, err := m.st.Propose(hctx, cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			m.cfg.Logger.Debug("heartbeat not committed", "err", err)
		}
		return
	}
	m.lastOK.Store(m.cfg.Clock.Now().UnixNano())
}

// Healthy reports whether this node's heartbeats are committing: a node that cannot reach a leader
// for a lease must assume its endpoints have moved and stop delivering them.
func (m *Member) Healthy() bool {
	last := m.lastOK.Load()
	return last != 0 && m.cfg.Clock.Now().Sub(time.Unix(0, last)) < m.cfg.Lease
}

// ObserveHeartbeats is fed from the FSM's effects: the leader notes when it last heard each node.
func (m *Member) ObserveHeartbeats(ids []string) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	for _, id := range ids {
		m.lastHeard[id] = now
	}
	m.mu.Unlock()
}

// LeaderChanged resets the monitor's view when this node gains leadership: every registered node gets
// a full lease to show up before it is declared gone.
func (m *Member) LeaderChanged(leader bool) {
	if !leader {
		return
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	for _, n := range m.st.Nodes() {
		m.lastHeard[n.ID] = now
	}
	m.mu.Unlock()
}

// monitor proposes the live set when it differs from the replicated one: the voters and non-voters
// of the Raft configuration that heartbeated within the lease (the leader itself always).
func (m *Member) monitor(ctx context.Context) {
	servers, err := m.st.Servers()
	if err != nil {
		return
	}
	now := m.cfg.Clock.Now()
	var live []string
	m.mu.Lock()
	for _, sv := range servers {
		if sv.ID == m.cfg.Self.ID || (m.st.Node(sv.ID) != nil && now.Sub(m.lastHeard[sv.ID]) < m.cfg.Lease) {
			live = append(live, sv.ID)
		}
	}
	m.mu.Unlock()
	slices.Sort(live)
	if slices.Equal(live, m.st.LiveNodes()) {
		return
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdSetLive, raftstore.SetLive{Nodes: live, At: now.UTC()}, nil)
	if err != nil {
		return
	}
	if _, err := m.st.Propose(ctx, cmd); err != nil {
		m.cfg.Logger.Warn("record live nodes", "live", live, "err", err)
		return
	}
	m.cfg.Logger.Info("live nodes changed", "live", live)
}

// Owner returns the node that delivers an endpoint: the highest rendezvous score among the live
// nodes of the endpoint's region (any live node when it pins none). "" when no live node qualifies:
// its deliveries wait. Before any live set is recorded, the leader owns everything.
func (m *Member) Owner(ep *model.Endpoint) string {
	live := m.st.LiveNodes()
	if len(live) == 0 {
		return m.st.LeaderID()
	}
	best, bestScore := "", uint64(0)
	for _, id := range live {
		if ep.Region != "" {
			n := m.st.Node(id)
			if n == nil || n.Region != ep.Region {
				continue
			}
		}
		h := fnv.New64a()
		io.WriteString(h, id)
		h.Write([]byte{0})
		io.WriteString(h, ep.UID)
		if s := h.Sum64(); best == "" || s > bestScore {
			best, bestScore = id, s
		}
	}
	return best
}

// Owns reports whether this node delivers the endpoint.
func (m *Member) Owns(projectID, endpointID string) bool {
	ep := m.st.Endpoint(projectID, endpointID)
	return ep != nil && m.Owner(ep) == m.cfg.Self.ID
}

// Dispatching reports whether this node should deliver at all: it is live (or, before any live set
// exists, it leads) and its heartbeats are committing.
func (m *Member) Dispatching() bool {
	live := m.st.LiveNodes()
	if len(live) == 0 {
		return m.st.IsLeader()
	}
	return slices.Contains(live, m.cfg.Self.ID) && (m.st.IsLeader() || m.Healthy())
}

// Forward implements raftstore.Forwarder over HTTP: POST the command to the leader's internal API.
func (m *Member) Forward(ctx context.Context, leaderID string, cmd []byte) ([]byte, error) {
	n := m.st.Node(leaderID)
	if n == nil || n.HTTPAddr == "" {
		return nil, fmt.Errorf("cluster: leader %s has not registered an HTTP address yet", leaderID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.HTTPAddr+ProposePath, bytes.NewReader(cmd))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+m.cfg.Key)
	resp, err := m.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cluster: forward to %s: %w", n.HTTPAddr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("cluster: read reply from %s: %w", n.HTTPAddr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster: leader %s answered %d: %s", n.HTTPAddr, resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

var _ raftstore.Forwarder = (*Member)(nil)
