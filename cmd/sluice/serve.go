package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/cluster"
	"github.com/sluice-gw/sluice/dispatcher"
	"github.com/sluice-gw/sluice/ingest"
	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/netpool"
	"github.com/sluice-gw/sluice/raftstore"
	"github.com/sluice-gw/sluice/ui"
)

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func serve(args []string) error {
	var cfg serveConfig
	if err := parseServe(args, &cfg); err != nil {
		return err
	}
	log, err := newLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log)
}

// run starts a node and blocks until ctx ends, then shuts down gracefully. The HTTP listener opens
// first so /healthz and /readyz answer (not ready) while the store is still opening.
func run(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
	}
	var h swapHandler
	srv := &http.Server{Handler: &h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	srvErr := make(chan error, 2)
	go func() { srvErr <- srv.Serve(ln) }()
	defer srv.Close()

	node, err := startNode(cfg, log)
	if err != nil {
		return err
	}
	defer node.close()
	h.set(node.handler())

	if cfg.TCPAddr != "" {
		tcp, err := ingest.NewServer(ingest.Config{
			Addr:            cfg.TCPAddr,
			MaxPublishBytes: int(cfg.MaxPayloadBytes),
			Logger:          log,
			OnPublish:       func(pid string) { eventsIngested(pid, "tcp").Inc() },
		}, node.api, node.api)
		if err != nil {
			return err
		}
		if err := tcp.Start(ctx); err != nil {
			return fmt.Errorf("listen on --tcp-addr %s: %w", cfg.TCPAddr, err)
		}
		// Deferred after node.close, so it runs first: in-flight publishes commit before the
		// store closes.
		defer tcp.Stop()
		if cfg.TCPTLSAddr != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TCPTLSCert, cfg.TCPTLSKey)
			if err != nil {
				return fmt.Errorf("--tcp-tls-cert/--tcp-tls-key: %w", err)
			}
			term, err := ingest.ServeTLS(cfg.TCPTLSAddr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
				tcp.Addr().String(), log)
			if err != nil {
				return err
			}
			defer term.Close()
		}
	}

	if cfg.MetricsAddr != "" {
		oln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen on --metrics-addr %s: %w", cfg.MetricsAddr, err)
		}
		ops := &http.Server{Handler: node.opsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { srvErr <- ops.Serve(oln) }()
		defer ops.Close()
	}
	log.Info("sluice serving", "version", version, "http_addr", ln.Addr().String(), "tcp_addr", cfg.TCPAddr, "raft_addr", cfg.RaftAddr,
		"node_id", cfg.NodeID, "data_dir", cfg.DataDir)

	engineCtx, stopEngine := context.WithCancel(context.Background())
	engineDone := make(chan struct{})
	go func() { defer close(engineDone); node.engine.Run(engineCtx) }()
	defer func() { stopEngine(); <-engineDone }()
	// Broker consumers stop before the engine and the store: their in-flight publishes finish or
	// are left unacknowledged for the broker to redeliver.
	brokerCtx, stopBrokers := context.WithCancel(context.Background())
	waitBrokers := node.startBrokers(brokerCtx)
	defer func() { stopBrokers(); waitBrokers() }()
	clusterCtx, stopCluster := context.WithCancel(context.Background())
	clusterDone := make(chan struct{})
	go func() { defer close(clusterDone); node.runCluster(clusterCtx) }()
	defer func() { stopCluster(); <-clusterDone }()

	if cfg.Bootstrap {
		if err := node.ensureRootKey(ctx, cfg.RootKey); err != nil {
			log.Error("root key not stored; retrying when this node leads", "err", err)
		}
	}

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	return nil
}

// swapHandler answers "starting" until the node's handler is set.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/healthz" {
		fmt.Fprintf(w, `{"status":"ok","version":%q}`+"\n", version)
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.URL.Path == "/readyz" {
		fmt.Fprint(w, `{"ready":false,"store_open":false}`+"\n")
		return
	}
	fmt.Fprint(w, `{"status":false,"message":"starting: the store is not open yet"}`+"\n")
}

// node is one running Sluice process: the store, the API and the delivery engine.
type node struct {
	cfg    serveConfig
	log    *slog.Logger
	store  *raftstore.Store
	api    *api.Server
	pool   *netpool.Pool
	engine *dispatcher.Engine
	// eng is read by the store's hooks, which may fire before the engine exists.
	eng    atomic.Pointer[dispatcher.Engine]
	series endpointSeries
	mail   *mailer
	member *cluster.Member

	// deliveries is the per-minute series the dashboard charts (see dashboard.go).
	deliveries *api.DeliverySeries
	// registry holds the broker drivers; brokers runs their consumers (set by startBrokers).
	registry broker.Registry
	brokers  atomic.Pointer[broker.Manager] // read by the leadership hook, which may fire first
}

func parseIPs(list string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--egress-ips: %q is not an IP address", s)
		}
		out = append(out, a)
	}
	return out, nil
}

func startNode(cfg serveConfig, log *slog.Logger) (*node, error) {
	n := &node{cfg: cfg, log: log, mail: newMailer(cfg.SMTP, log), registry: brokerRegistry()}
	ips, err := parseIPs(cfg.EgressIPs)
	if err != nil {
		return nil, err
	}
	pcfg := netpool.DefaultConfig()
	pcfg.EgressIPs = ips
	// Keep as many idle connections per host as requests may be in flight, or many endpoints on one
	// host churn through new connections.
	pcfg.MaxIdleConnsPerHost = cfg.Workers
	pcfg.StdlibHTTP1 = cfg.EgressStdHTTP1
	// The SSRF guard is always on: deliveries to loopback, private, link-local, multicast and other
	// non-public addresses are refused at dial time unless an allowed CIDR opens them.
	pcfg.BlockPrivate = true
	for _, c := range strings.Split(cfg.EgressAllow, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("--egress-allow-cidrs: %q is not a CIDR (e.g. 127.0.0.0/8)", c)
		}
		pcfg.AllowCIDRs = append(pcfg.AllowCIDRs, p)
	}
	if cfg.EgressProxy != "" {
		u, err := url.Parse(cfg.EgressProxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--egress-proxy: %q is not an http(s) proxy URL", cfg.EgressProxy)
		}
		pcfg.Proxy = u
	}
	pcfg.UserAgent = "Sluice/" + version
	if n.pool, err = netpool.New(pcfg); err != nil {
		return nil, err
	}
	advRaft := cfg.AdvertiseRaft
	if advRaft == "" {
		advRaft = cfg.RaftAddr
	}
	n.member = cluster.New(cluster.Config{
		Self: model.Node{ID: cfg.NodeID, RaftAddr: advRaft, HTTPAddr: cfg.AdvertiseHTTP, Region: cfg.Region,
			EgressIPs: strings.FieldsFunc(cfg.EgressIPs, func(r rune) bool { return r == ',' || r == ' ' }), Version: version, Codec: raftstore.CodecVersion},
		Key:    cfg.RootKey,
		Logger: log,
	})
	st, err := raftstore.Open(raftstore.Config{
		Forwarder:    n.member,
		TrailingLogs: cfg.TrailingLogs,
		Observe: func(e raftstore.Effects) {
			if len(e.Heartbeats) > 0 {
				n.member.ObserveHeartbeats(e.Heartbeats)
			}
			if eng := n.eng.Load(); eng != nil {
				eng.Observe(e)
			}
		},
		OnLeadership: func(leader bool) {
			leaderChanges.Inc()
			n.member.LeaderChanged(leader)
			if eng := n.eng.Load(); eng != nil {
				eng.SetLeader(leader)
				eng.SetActive(n.member.Dispatching())
			}
			if b := n.brokers.Load(); b != nil {
				b.Poke()
			}
		},
		NodeID:            cfg.NodeID,
		DataDir:           cfg.DataDir,
		RaftAddr:          cfg.RaftAddr,
		AdvertiseAddr:     cfg.AdvertiseRaft,
		Bootstrap:         cfg.Bootstrap,
		FastElections:     true,
		SnapshotThreshold: cfg.SnapshotEvery,
		MinFreeDisk:       cfg.MinFreeDiskMB << 20,
		Logger:            log,
		Stats:             &raftstore.Stats{OnBatch: observeBatch, OnCommit: observeCommit},
	})
	if err != nil {
		return nil, err
	}
	n.store = st
	n.member.Attach(st)
	n.deliveries = api.NewDeliverySeries()
	n.api = api.New(st, api.Config{MaxPayloadBytes: cfg.MaxPayloadBytes, Logger: log, Series: n.deliveries, Brokers: n.registry,
		OnPublish: func(projectID string) { eventsIngested(projectID, "http").Inc() }})
	dcfg := dispatcher.DefaultConfig()
	dcfg.Workers = cfg.Workers
	dcfg.Breaker = dispatcher.BreakerConfig{FailureThreshold: cfg.BreakerFailures, Cooldown: cfg.BreakerCooldown}
	dcfg.UserAgent = "Sluice/" + version
	dcfg.Logger = log
	n.engine, err = dispatcher.NewEngine(dispatcher.EngineConfig{
		Dispatcher:       dcfg,
		Logger:           log,
		OnResult:         n.observeResult,
		OnEndpointChange: n.endpointChanged,
		Owns:             n.member.Owns,
	}, st, n.pool)
	if err != nil {
		st.Close()
		return nil, err
	}
	n.eng.Store(n.engine)
	n.deliveries.Lanes = func() []dispatcher.LaneStats { return n.engine.Dispatcher().Stats().Lanes }
	n.engine.SetLeader(st.IsLeader() && st.Ready())
	n.engine.SetActive(n.member.Dispatching())
	return n, nil
}

// endpointChanged runs on the FSM goroutine (while this node dispatches): alerts for disabled
// endpoints, and metric series removal for deleted ones.
func (n *node) endpointChanged(c raftstore.EndpointChange) {
	if c.Deleted {
		n.series.drop(c.EndpointID)
		n.deliveries.Drop(c.EndpointID)
		return
	}
	if c.Status == model.EndpointDisabled && n.store.IsLeader() {
		n.mail.endpointDisabled(n.store.Endpoint(c.ProjectID, c.EndpointID), c.Reason)
	}
}

// addOps registers the operational routes (metrics, health, readiness) on mux.
func (n *node) addOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /metrics", n.metricsHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"ok","version":%q}`+"\n", version)
	})
	mux.HandleFunc("GET /readyz", n.readyz)
}

func (n *node) readyz(w http.ResponseWriter, r *http.Request) {
	q, qcap := n.store.Backlog()
	detail := map[string]any{
		"store_open":     true,
		"has_leader":     n.store.HasLeader(),
		"is_leader":      n.store.IsLeader(),
		"caught_up":      n.store.Ready(),
		"applied_index":  n.store.AppliedIndex(),
		"proposer_queue": q,
		"overloaded":     q*10 >= qcap*9,
	}
	ready := n.store.Ready() && q*10 < qcap*9
	detail["ready"] = ready
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(detail)
}

func (n *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", n.member.LeaderWrites(n.api.Handler()))
	mux.Handle("/ui/", ui.Handler("/ui/"))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	mux.Handle("/ingest/", n.member.LeaderWrites(n.api.IngestHandler()))
	n.member.Register(mux, n.api)
	n.addOps(mux)
	return mux
}

// runCluster heartbeats, keeps this node's share of dispatch in step with the live set and its own
// health, and joins a cluster when asked. It returns when ctx ends.
func (n *node) runCluster(ctx context.Context) {
	go n.member.Run(ctx)
	if n.cfg.Join != "" {
		go n.join(ctx)
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.engine.SetActive(n.member.Dispatching())
		}
	}
}

// join asks the cluster (through any member) to add this node as a voter, until it is in.
func (n *node) join(ctx context.Context) {
	body, _ := json.Marshal(cluster.AddRequest{ID: n.cfg.NodeID, RaftAddr: n.member.Self().RaftAddr})
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.Join+"/api/v1/cluster/servers", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+n.cfg.RootKey)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				n.log.Info("joined cluster", "via", n.cfg.Join)
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
		}
		n.log.Warn("join cluster: retrying", "via", n.cfg.Join, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// opsHandler serves the separate --metrics-addr listener, with pprof when enabled.
func (n *node) opsHandler() http.Handler {
	mux := http.NewServeMux()
	n.addOps(mux)
	if n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// ensureRootKey waits for leadership (a single node elects itself at once) and makes sure a root key
// exists, printing a generated one exactly once.
func (n *node) ensureRootKey(ctx context.Context, configured string) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.store.WaitLeader(wctx); err != nil {
		return err
	}
	key, err := api.EnsureRootKey(wctx, n.store, configured, time.Now().UTC())
	if err != nil {
		return err
	}
	if key != "" {
		fmt.Fprintf(os.Stdout, "\nGenerated root API key (shown once; set SLUICE_ROOT_KEY to choose your own):\n\n    %s\n\n", key)
		n.log.Info("generated a root API key and printed it to stdout")
	}
	return nil
}

func (n *node) close() {
	n.pool.Close()
	if err := n.store.Close(); err != nil {
		n.log.Error("close store", "err", err)
	}
}
