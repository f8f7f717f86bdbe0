package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/api"
	"github.com/sluice-gw/sluice/dispatcher"
	"github.com/sluice-gw/sluice/netpool"
	"github.com/sluice-gw/sluice/raftstore"
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

// run starts a node and blocks until ctx ends, then shuts down gracefully.
func run(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	node, err := startNode(cfg, log)
	if err != nil {
		return err
	}
	defer node.close()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: node.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	log.Info("sluice serving", "version", version, "http_addr", ln.Addr().String(), "raft_addr", cfg.RaftAddr,
		"node_id", cfg.NodeID, "data_dir", cfg.DataDir)

	engineCtx, stopEngine := context.WithCancel(context.Background())
	engineDone := make(chan struct{})
	go func() { defer close(engineDone); node.engine.Run(engineCtx) }()
	defer func() { stopEngine(); <-engineDone }()

	if err := node.ensureRootKey(ctx, cfg.RootKey); err != nil {
		log.Error("root key not stored; retrying when this node leads", "err", err)
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

// node is one running Sluice process: the store, the API and the delivery engine.
type node struct {
	cfg    serveConfig
	log    *slog.Logger
	store  *raftstore.Store
	api    *api.Server
	pool   *netpool.Pool
	engine *dispatcher.Engine
	// eng is read by the store's hooks, which may fire before the engine exists.
	eng atomic.Pointer[dispatcher.Engine]
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
	n := &node{cfg: cfg, log: log}
	ips, err := parseIPs(cfg.EgressIPs)
	if err != nil {
		return nil, err
	}
	pcfg := netpool.DefaultConfig()
	pcfg.EgressIPs = ips
	pcfg.UserAgent = "Sluice/" + version
	if n.pool, err = netpool.New(pcfg); err != nil {
		return nil, err
	}
	st, err := raftstore.Open(raftstore.Config{
		Observe: func(e raftstore.Effects) {
			if eng := n.eng.Load(); eng != nil {
				eng.Observe(e)
			}
		},
		OnLeadership: func(leader bool) {
			if eng := n.eng.Load(); eng != nil {
				eng.SetActive(leader)
			}
		},
		NodeID:            cfg.NodeID,
		DataDir:           cfg.DataDir,
		RaftAddr:          cfg.RaftAddr,
		AdvertiseAddr:     cfg.AdvertiseRaft,
		Bootstrap:         true,
		FastElections:     true,
		SnapshotThreshold: cfg.SnapshotEvery,
		Logger:            log,
		Stats:             &raftstore.Stats{OnBatch: observeBatch, OnCommit: observeCommit},
	})
	if err != nil {
		return nil, err
	}
	n.store = st
	n.api = api.New(st, api.Config{MaxPayloadBytes: cfg.MaxPayloadBytes, Logger: log,
		OnPublish: func(projectID string) { eventsIngested(projectID, "http").Inc() }})
	dcfg := dispatcher.DefaultConfig()
	dcfg.Workers = cfg.Workers
	dcfg.UserAgent = "Sluice/" + version
	dcfg.Logger = log
	n.engine, err = dispatcher.NewEngine(dispatcher.EngineConfig{Dispatcher: dcfg, Logger: log}, st, n.pool)
	if err != nil {
		st.Close()
		return nil, err
	}
	n.eng.Store(n.engine)
	n.engine.SetActive(st.IsLeader() && st.Ready())
	return n, nil
}

func (n *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", n.api.Handler())
	mux.HandleFunc("GET /metrics", n.metricsHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"ok","version":%q}`+"\n", version)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !n.store.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"ready":false,"store_open":true,"has_leader":false,"applied_index":%d}`+"\n", n.store.AppliedIndex())
			return
		}
		fmt.Fprintf(w, `{"ready":true,"store_open":true,"has_leader":true,"applied_index":%d}`+"\n", n.store.AppliedIndex())
	})
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
