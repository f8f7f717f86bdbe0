package broker

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/clock"
	"github.com/sluice-gw/sluice/model"
)

// Config configures a Manager. Zero values take the documented defaults.
type Config struct {
	// Registry holds the drivers; sources of other types are not consumed.
	Registry Registry
	// Sources lists every broker source of every project (raftstore.Store.BrokerSources).
	Sources func() []*model.Source
	// Leading reports whether this node should consume: the leader, once caught up. Consumers run
	// on one node at a time, and publishes from the leader need no forwarding.
	Leading func() bool
	// Publisher is the publish path (api.Server).
	Publisher Publisher
	// MaxPublishBytes caps a message body (the node's publish limit; default 1 MiB).
	MaxPublishBytes int
	// Interval is how often the wanted consumers are recomputed without a Poke (default 1 s).
	Interval time.Duration
	// RetryMin and RetryMax bound the backoff of publishes Sluice could not commit (default 50 ms
	// and 5 s); consumer restarts back off from RetryMin×20 (1 s) up to RetryMax.
	RetryMin, RetryMax time.Duration
	Clock              clock.Clock
	Logger             *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxPublishBytes <= 0 {
		c.MaxPublishBytes = 1 << 20
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager runs one consumer per broker source while this node leads, and none otherwise.
type Manager struct {
	cfg  Config
	poke chan struct{}

	mu      sync.Mutex // guards running and stats
	running map[string]*run
	stats   map[string]*sourceStats // by source uid; kept after a consumer stops, dropped with the source
}

type sourceStats struct {
	src   *model.Source
	stats *Stats
}

// run is one source's consumer loop; the Manager owns it and stops it by cancel, then waits done.
type run struct {
	src    *model.Source
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a manager; Run starts it.
func NewManager(cfg Config) *Manager {
	cfg.setDefaults()
	return &Manager{cfg: cfg, poke: make(chan struct{}, 1), running: map[string]*run{}, stats: map[string]*sourceStats{}}
}

// Poke makes the manager recompute its consumers now (after a source or leadership change).
func (m *Manager) Poke() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Run keeps the consumers in step with the sources and leadership until ctx ends, then stops them
// all and returns.
func (m *Manager) Run(ctx context.Context) {
	t := m.cfg.Clock.NewTimer(m.cfg.Interval)
	defer t.Stop()
	for {
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			m.stopAll()
			return
		case <-m.poke:
		case <-t.C():
			t.Reset(m.cfg.Interval)
		}
	}
}

// reconcile starts consumers for wanted sources, stops the others, and restarts those whose
// settings changed.
func (m *Manager) reconcile(ctx context.Context) {
	want := map[string]*model.Source{}
	all := m.cfg.Sources()
	if m.cfg.Leading() {
		for _, s := range all {
			if m.cfg.Registry[s.Type] != nil {
				want[s.UID] = s
			}
		}
	}
	exists := map[string]bool{}
	for _, s := range all {
		exists[s.UID] = true
	}
	m.mu.Lock()
	var stop []*run
	for id, r := range m.running {
		if w := want[id]; w == nil || !w.UpdatedAt.Equal(r.src.UpdatedAt) {
			stop = append(stop, r)
			delete(m.running, id)
		}
	}
	for id := range m.stats {
		if !exists[id] {
			delete(m.stats, id)
		}
	}
	m.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		<-r.done
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, src := range want {
		if m.running[id] != nil {
			continue
		}
		st := m.stats[id]
		if st == nil {
			st = &sourceStats{stats: &Stats{}}
			st.stats.Lag.Store(-1)
			m.stats[id] = st
		}
		st.src = src
		rctx, cancel := context.WithCancel(ctx)
		r := &run{src: src, cancel: cancel, done: make(chan struct{})}
		m.running[id] = r
		go m.consume(rctx, r, st.stats)
	}
}

// consume runs a source's consumer until ctx ends, restarting it with backoff after errors.
func (m *Manager) consume(ctx context.Context, r *run, stats *Stats) {
	defer close(r.done)
	log := m.cfg.Logger.With("source", r.src.UID, "project", r.src.ProjectID, "type", r.src.Type)
	h := &handler{
		src: r.src, pub: m.cfg.Publisher, clock: m.cfg.Clock, log: log, maxBytes: m.cfg.MaxPublishBytes,
		retryMin: m.cfg.RetryMin, retryMax: m.cfg.RetryMax, stats: stats,
		sem: make(chan struct{}, Workers(r.src)),
	}
	backoff := m.cfg.RetryMin * 20
	for ctx.Err() == nil {
		c, err := m.cfg.Registry[r.src.Type].Open(r.src, log)
		if err == nil {
			log.Info("broker: consumer starting")
			stats.Running.Store(true)
			started := m.cfg.Clock.Now()
			err = c.Run(ctx, h)
			stats.Running.Store(false)
			if ctx.Err() != nil {
				log.Info("broker: consumer stopped")
				return
			}
			if m.cfg.Clock.Now().Sub(started) > time.Minute {
				backoff = m.cfg.RetryMin * 20 // it ran a good while: this failure is fresh
			}
		}
		stats.Restarts.Add(1)
		log.Warn("broker: consumer failed, restarting", "err", err, "in", backoff)
		if h.wait(ctx, &backoff) != nil {
			return
		}
	}
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	runs := m.running
	m.running = map[string]*run{}
	m.mu.Unlock()
	for _, r := range runs {
		r.cancel()
	}
	for _, r := range runs {
		<-r.done
	}
}

// SourceStats is a snapshot of one source's counters on this node.
type SourceStats struct {
	SourceID, ProjectID, Type           string
	Running                             bool
	Published, Duplicates, DeadLettered uint64
	Retries, Restarts                   uint64
	Lag                                 int64
}

// Stats returns every source's counters seen on this node, ordered by source id.
func (m *Manager) Stats() []SourceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SourceStats, 0, len(m.stats))
	for id, s := range m.stats {
		out = append(out, SourceStats{
			SourceID: id, ProjectID: s.src.ProjectID, Type: s.src.Type, Running: s.stats.Running.Load(),
			Published: s.stats.Published.Load(), Duplicates: s.stats.Duplicates.Load(),
			DeadLettered: s.stats.DeadLettered.Load(), Retries: s.stats.Retries.Load(),
			Restarts: s.stats.Restarts.Load(), Lag: s.stats.Lag.Load(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SourceID < out[j].SourceID })
	return out
}
